"""The collector's crash-safe state: idempotence high-water marks and acknowledged sizes.

One append-only journal, one record per acknowledged batch::

    {"src": "node-a/shipper-a/9f..", "end": 8192, "files": {"store/generic/default/2026/…/events-….ndjson": 40960}}

``src`` is the idempotence key: the token name and the sender's source id (the bare source id
when the collector has no tokens). A batch is acknowledged only after its record is in the
journal (written to the OS, or fsynced under ``durability: fsync``), and the record is written
only after the batch's lines are in the staging files.

Each record is written unbuffered as ``\n`` + JSON, in one ``write``; a write that fails (a full
disk) is cut back off. Should even that fail, the torn record is alone on its line — every
record *starts* a line — so replay skips it and still reads every record after it.

So after a SIGKILL, start-up recovery cuts every staging file back to its last
journaled size: the lines of a batch that was never acknowledged disappear (the sender retries
it) and the lines of every acknowledged batch stay — nothing lost, nothing twice.

The journal is compacted into ``state.json`` (temp file, fsync, rename, directory fsync) at
start, whenever it grows past a bound, and hourly. Compaction forgets the high-water marks of
sources not seen for ``ttl`` (shippers make one source per file: without this the state of a
long-lived collector would only grow).

A compaction is three steps, so that the slow one never holds up the writer thread:
`begin_compaction` (writer thread, quick: copy the state, switch appends to generation N+1),
`write_snapshot` (any thread: expire, serialize and write ``state.json`` naming N+1, fsync, then
delete the older generations) and `finish_compaction` (writer thread: forget the expired sources
that no record refreshed meanwhile). Records appended while the snapshot is written go to N+1,
and `load` replays every generation from the snapshot's on, in order: a crash at any point of a
compaction loses nothing, whichever snapshot is on disk.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..fileio import fsync_dir, write_all, write_atomic

_COMPACT_AT = 32 * 1024 * 1024
_COMPACT_EVERY = 3600.0  # seconds: so that expired sources are forgotten on a quiet collector too


@dataclass
class Snapshot:
    """The state as of a generation's first record, copied for `Journal.write_snapshot`."""

    generation: int
    high_water: dict[str, int]
    last_seen: dict[str, float]
    sizes: dict[str, int]


class Journal:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = self.dir / "state.json"
        self.high_water: dict[str, int] = {}
        self.last_seen: dict[str, float] = {}  # source → epoch seconds of its last batch
        self.sizes: dict[str, int] = {}
        self.compacted_at = time.monotonic()
        self.generation = 0
        self._handle: Any = None
        self._bytes = 0  # written since the last compaction
        self._size = 0  # the current journal file's size

    def _journal_path(self, generation: int) -> Path:
        return self.dir / f"journal-{generation:08d}.wal"

    def load(self) -> None:
        """Read the snapshot and replay the journal; torn records are skipped."""
        if self.snapshot_path.exists():
            snap = orjson.loads(self.snapshot_path.read_bytes())
            self.high_water = dict(snap.get("high_water", {}))
            now = time.time()
            seen = snap.get("last_seen", {})
            self.last_seen = {src: float(seen.get(src, now)) for src in self.high_water}
            self.sizes = dict(snap.get("sizes", {}))
            self.generation = int(snap.get("generation", 0))
        generations = self._generations()
        for generation in generations:
            if generation < self.generation:
                continue  # already in the snapshot (a crash came before its deletion)
            for line in self._journal_path(generation).read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a record a crash or a full disk cut short: never acknowledged
                self._apply(record)
        if generations:
            # Appends continue after the newest generation, never before one already on disk.
            self.generation = max(self.generation, generations[-1])

    def _generations(self) -> list[int]:
        found = []
        for path in self.dir.glob("journal-*.wal"):
            digits = path.name[len("journal-") : -len(".wal")]
            if digits.isdigit():
                found.append(int(digits))
        return sorted(found)

    def _apply(self, record: dict[str, Any]) -> None:
        src = record.get("src")
        if src is not None:
            end = record["end"]
            if end > self.high_water.get(src, 0):
                self.high_water[src] = end
            self.last_seen[src] = record.get("t", time.time())
        files = record.get("files")
        if files:
            self.sizes.update(files)

    def open(self, live_sizes: dict[str, int] | None = None) -> None:
        """Start a new journal generation from a fresh snapshot."""
        self.compact(live_sizes or {})

    def compact(self, live_sizes: dict[str, int], ttl: float | None = None) -> list[str]:
        """All three steps at once (at start); returns the sources forgotten for ``ttl``.

        Raises `OSError`; whatever step failed, `load` still finds every record."""
        snapshot = self.begin_compaction(live_sizes)
        return self.finish_compaction(snapshot, self.write_snapshot(snapshot, ttl))

    def begin_compaction(self, live_sizes: dict[str, int]) -> Snapshot:
        """Switch appends to a new generation and copy the state as of its start (writer thread).

        Raises `OSError` with the old generation still in use."""
        generation = self.generation + 1
        handle = open(self._journal_path(generation), "wb", buffering=0)  # noqa: SIM115 - lives until the next compaction
        if self._handle is not None:
            self._handle.close()
        self._handle = handle
        self.generation = generation
        self._bytes = self._size = 0
        self.compacted_at = time.monotonic()
        # Sizes only serve a restart's recovery: from here on, what is staged now and what the
        # new generation's records add.
        self.sizes = dict(live_sizes)
        return Snapshot(generation, dict(self.high_water), dict(self.last_seen), dict(live_sizes))

    def write_snapshot(self, snapshot: Snapshot, ttl: float | None = None) -> list[str]:
        """Write ``state.json`` for ``snapshot`` and delete the generations before it; returns the
        sources expired for ``ttl``. Touches only ``snapshot`` and files: any thread. Raises `OSError`."""
        expired: list[str] = []
        high_water, last_seen = snapshot.high_water, snapshot.last_seen
        if ttl is not None:
            horizon = time.time() - ttl
            expired = [src for src, seen in last_seen.items() if seen < horizon]
            if expired:
                gone = set(expired)
                high_water = {src: end for src, end in high_water.items() if src not in gone}
                last_seen = {src: t for src, t in last_seen.items() if src not in gone}
        write_atomic(
            self.snapshot_path,
            orjson.dumps(
                {
                    "generation": snapshot.generation,
                    "high_water": high_water,
                    "last_seen": last_seen,
                    "sizes": snapshot.sizes,
                }
            ),
        )
        fsync_dir(self.dir)
        for generation in self._generations():
            if generation < snapshot.generation:
                with contextlib.suppress(FileNotFoundError):
                    self._journal_path(generation).unlink()
        return expired

    def finish_compaction(self, snapshot: Snapshot, expired: list[str]) -> list[str]:
        """Forget the expired sources no record refreshed since `begin_compaction` (writer
        thread); returns them. A refreshed one stays: its record is in the new generation."""
        forgotten = []
        for src in expired:
            if self.last_seen.get(src) == snapshot.last_seen.get(src):
                self.high_water.pop(src, None)
                self.last_seen.pop(src, None)
                forgotten.append(src)
        return forgotten

    def append(self, records: list[tuple[str | None, int | None, dict[str, int]]]) -> None:
        """Write batch records ``(src, end, files)`` to the OS in one write; `fsync` makes them
        durable. Raises `OSError` with the journal as it was (or, if even the cut fails, with a
        torn record that replay skips)."""
        now = int(time.time())
        recs = []
        for src, end, files in records:
            rec: dict[str, Any] = {"files": files}
            if src is not None and end is not None:
                rec["src"] = src
                rec["end"] = end
                rec["t"] = now
            recs.append(rec)
        data = b"".join(b"\n" + orjson.dumps(rec) for rec in recs)
        fd = self._handle.fileno()
        try:
            write_all(fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            raise
        self._size += len(data)
        self._bytes += len(data)
        for rec in recs:
            self._apply(rec)

    def fsync(self) -> None:
        os.fsync(self._handle.fileno())

    @property
    def wants_compaction(self) -> bool:
        return self._bytes > _COMPACT_AT or time.monotonic() - self.compacted_at > _COMPACT_EVERY

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
