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
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import orjson

from ..fileio import fsync_dir, write_all, write_atomic

_COMPACT_AT = 32 * 1024 * 1024
_COMPACT_EVERY = 3600.0  # seconds: so that expired sources are forgotten on a quiet collector too


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
        path = self._journal_path(self.generation)
        if path.exists():
            for line in path.read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a record a crash or a full disk cut short: never acknowledged
                self._apply(record)

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
        """Snapshot and start a new generation; returns the sources forgotten for ``ttl``.

        Raises `OSError` with the old generation still in use: the new journal file exists
        before the snapshot that names it, and the old one is kept until both are in place."""
        expired: list[str] = []
        if ttl is not None:
            horizon = time.time() - ttl
            expired = [src for src, seen in self.last_seen.items() if seen < horizon]
        high_water = {src: end for src, end in self.high_water.items() if src not in expired}
        last_seen = {src: t for src, t in self.last_seen.items() if src not in expired}
        generation = self.generation + 1
        new_path = self._journal_path(generation)
        handle = open(new_path, "wb", buffering=0)  # noqa: SIM115 - lives until the next compaction
        try:
            write_atomic(
                self.snapshot_path,
                orjson.dumps(
                    {
                        "generation": generation,
                        "high_water": high_water,
                        "last_seen": last_seen,
                        "sizes": live_sizes,
                    }
                ),
            )
            fsync_dir(self.dir)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                new_path.unlink()
            raise
        old = self._journal_path(self.generation)
        if self._handle is not None:
            self._handle.close()
        self._handle = handle
        self.generation = generation
        self.high_water, self.last_seen, self.sizes = high_water, last_seen, dict(live_sizes)
        self._bytes = self._size = 0
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
        self.compacted_at = time.monotonic()
        return expired

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
