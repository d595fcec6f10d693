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
import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..fileio import append_or_cut, journal_generations, write_beside

_COMPACT_AT = 32 * 1024 * 1024
_COMPACT_EVERY = 3600.0  # seconds: so that expired sources are forgotten on a quiet collector too


@dataclass
class Snapshot:
    """What a compaction writes: the state as of the last snapshot (``high_water``, ``last_seen``:
    the journal's own dicts, handed over, not copied) and the records since (``new_*``)."""

    generation: int
    high_water: dict[str, int]
    last_seen: dict[str, float]
    new_high_water: dict[str, int]
    new_last_seen: dict[str, float]
    sizes: dict[str, int]


class Journal:
    """The journal of one state dir. Its state is two layers: the *base* (as of the last
    snapshot begun) and the *delta* (the current generation's records). A compaction takes both
    and the writer thread starts a fresh delta, so it copies nothing: the compaction merges the
    delta into the base on its own thread, which alone touches the base until `finish_compaction`."""

    def __init__(
        self, state_dir: Path, *, compact_bytes: int = _COMPACT_AT, compact_every: float = _COMPACT_EVERY
    ):
        self.dir = state_dir
        self.compact_bytes = compact_bytes
        self.compact_every = compact_every
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = self.dir / "state.json"
        self._base_high_water: dict[str, int] = {}
        self._base_last_seen: dict[str, float] = {}  # source → epoch seconds of its last batch
        self._high_water: dict[str, int] = {}  # the delta
        self._last_seen: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        self.compacted_at = time.monotonic()
        self.generation = 0
        self._handle: Any = None
        self._bytes = 0  # written since the last compaction
        self._size = 0  # the current journal file's size

    @property
    def high_water(self) -> dict[str, int]:
        """Every mark (a merged copy; not while a compaction runs: its thread owns the base)."""
        merged = dict(self._base_high_water)
        for src, end in self._high_water.items():
            if end > merged.get(src, 0):
                merged[src] = end
        return merged

    @property
    def last_seen(self) -> dict[str, float]:
        return {**self._base_last_seen, **self._last_seen}

    def _journal_path(self, generation: int) -> Path:
        return self.dir / f"journal-{generation:08d}.wal"

    def load(self) -> None:
        """Read the snapshot and replay the journal; torn records are skipped."""
        if self.snapshot_path.exists():
            snap = orjson.loads(self.snapshot_path.read_bytes())
            self._base_high_water = dict(snap.get("high_water", {}))
            now = time.time()
            seen = snap.get("last_seen", {})
            self._base_last_seen = {src: float(seen.get(src, now)) for src in self._base_high_water}
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
        return journal_generations(self.dir)

    def _apply(self, record: dict[str, Any]) -> None:
        src = record.get("src")
        if src is not None:
            end = record["end"]
            if end > self._high_water.get(src, 0):
                self._high_water[src] = end
            self._last_seen[src] = record.get("t", time.time())
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
        """Switch appends to a new generation and hand the state over (writer thread; copies
        nothing). Raises `OSError` with the old generation still in use."""
        generation = self.generation + 1
        handle = open(self._journal_path(generation), "wb", buffering=0)  # noqa: SIM115 - lives until the next compaction
        if self._handle is not None:
            self._handle.close()
        self._handle = handle
        self.generation = generation
        self._bytes = self._size = 0
        self.compacted_at = time.monotonic()
        snapshot = Snapshot(
            generation,
            self._base_high_water,
            self._base_last_seen,
            self._high_water,
            self._last_seen,
            dict(live_sizes),
        )
        self._high_water, self._last_seen = {}, {}
        # Sizes only serve a restart's recovery: from here on, what is staged now and what the
        # new generation's records add.
        self.sizes = dict(live_sizes)
        return snapshot

    def write_snapshot(self, snapshot: Snapshot, ttl: float | None = None) -> list[str]:
        """Merge, expire, write ``state.json`` and delete the generations before it; returns the
        sources expired for ``ttl``. Touches only ``snapshot`` (whose base it updates in place)
        and files: its own thread. Every step is a Python loop or a small C call, so the GIL is
        never held for long (one ``orjson.dumps`` of 200k sources holds it ~40 ms). Raises `OSError`."""
        high_water, last_seen = snapshot.high_water, snapshot.last_seen
        for src, end in snapshot.new_high_water.items():
            if end > high_water.get(src, 0):
                high_water[src] = end
        for src, seen in snapshot.new_last_seen.items():
            last_seen[src] = seen
        snapshot.new_high_water, snapshot.new_last_seen = {}, {}  # merged: never twice
        expired: list[str] = []
        if ttl is not None:
            horizon = time.time() - ttl
            expired = [src for src, seen in last_seen.items() if seen < horizon]
            for src in expired:
                high_water.pop(src, None)
                last_seen.pop(src, None)

        def fill(fh: BinaryIO) -> None:
            fh.write(b'{"generation":%d,"high_water":' % snapshot.generation)
            _write_map(fh, high_water)
            fh.write(b',"last_seen":')
            _write_map(fh, last_seen)
            fh.write(b',"sizes":')
            _write_map(fh, snapshot.sizes)
            fh.write(b"}")

        write_beside(self.snapshot_path, fill)
        for generation in self._generations():
            if generation < snapshot.generation:
                with contextlib.suppress(FileNotFoundError):
                    self._journal_path(generation).unlink()
        return expired

    def finish_compaction(self, snapshot: Snapshot, expired: list[str] | None) -> list[str]:
        """The base is the journal's again (writer thread); returns the expired sources no record
        refreshed since `begin_compaction` (a refreshed one is in the new generation)."""
        self._base_high_water, self._base_last_seen = snapshot.high_water, snapshot.last_seen
        if snapshot.new_high_water or snapshot.new_last_seen:  # the snapshot was not written
            self._merge_back(snapshot)
        return [src for src in expired or () if src not in self._last_seen]

    def _merge_back(self, snapshot: Snapshot) -> None:
        for src, end in snapshot.new_high_water.items():
            if end > self._base_high_water.get(src, 0):
                self._base_high_water[src] = end
        self._base_last_seen.update(snapshot.new_last_seen)

    def append(
        self, records: list[tuple[str | None, int | None, dict[str, int]]], now: float | None = None
    ) -> None:
        """Write batch records ``(src, end, files)`` to the OS in one write; `fsync` makes them
        durable. Raises `OSError` with the journal as it was (or, if even the cut fails, with a
        torn record that replay skips)."""
        now = int(time.time() if now is None else now)
        recs = []
        for src, end, files in records:
            rec: dict[str, Any] = {"files": files}
            if src is not None and end is not None:
                rec["src"] = src
                rec["end"] = end
                rec["t"] = now
            recs.append(rec)
        data = b"".join(b"\n" + orjson.dumps(rec) for rec in recs)
        append_or_cut(self._handle.fileno(), data, self._size)
        self._size += len(data)
        self._bytes += len(data)
        for rec in recs:
            self._apply(rec)

    def fsync(self) -> None:
        os.fsync(self._handle.fileno())

    @property
    def wants_compaction(self) -> bool:
        return self._bytes > self.compact_bytes or time.monotonic() - self.compacted_at > self.compact_every

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


_MAP_CHUNK = 4096


def _write_map(fh: BinaryIO, mapping: dict[str, Any]) -> None:
    """``orjson.dumps(mapping)`` written in slices, each a short hold of the GIL."""
    fh.write(b"{")
    items = iter(mapping.items())
    first = True
    while chunk := dict(itertools.islice(items, _MAP_CHUNK)):
        if not first:
            fh.write(b",")
        fh.write(orjson.dumps(chunk)[1:-1])
        first = False
    fh.write(b"}")
