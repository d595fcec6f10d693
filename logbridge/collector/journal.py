"""The collector's crash-safe state: idempotence high-water marks and acknowledged sizes.

One append-only NDJSON journal, one record per acknowledged batch::

    {"src": "shipper-a:9f..", "end": 8192, "files": {"store/generic/default/2026/…/events-….ndjson": 40960}}

A batch is acknowledged only after its record is in the journal (flushed, or fsynced under
``durability: fsync``), and the record is written only after the batch's lines are in the
staging files. So after a SIGKILL, start-up recovery cuts every staging file back to its last
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

_COMPACT_AT = 32 * 1024 * 1024
_COMPACT_EVERY = 3600.0  # seconds: so that expired sources are forgotten on a quiet collector too


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write temp, fsync, rename over, fsync the directory: never a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


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
        self._bytes = 0

    def _journal_path(self, generation: int) -> Path:
        return self.dir / f"journal-{generation:08d}.wal"

    def load(self) -> None:
        """Read the snapshot and replay the journal; a torn last record is ignored."""
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
                    break  # the record a crash cut short: its batch was never acknowledged
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
        """Snapshot and start a new generation; returns the sources forgotten for ``ttl``."""
        expired: list[str] = []
        if ttl is not None:
            horizon = time.time() - ttl
            expired = [src for src, seen in self.last_seen.items() if seen < horizon]
            for src in expired:
                self.high_water.pop(src, None)
                self.last_seen.pop(src, None)
        old = self._journal_path(self.generation)
        if self._handle is not None:
            self._handle.close()
        self.generation += 1
        self.sizes = dict(live_sizes)
        write_atomic(
            self.snapshot_path,
            orjson.dumps(
                {
                    "generation": self.generation,
                    "high_water": self.high_water,
                    "last_seen": self.last_seen,
                    "sizes": self.sizes,
                }
            ),
        )
        self._handle = open(self._journal_path(self.generation), "ab")  # noqa: SIM115
        self._bytes = 0
        fsync_dir(self.dir)
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
        self.compacted_at = time.monotonic()
        return expired

    def record(self, src: str | None, end: int | None, files: dict[str, int]) -> None:
        """Append one batch's record (buffered; `flush` makes it visible to the OS)."""
        rec: dict[str, Any] = {"files": files}
        if src is not None and end is not None:
            rec["src"] = src
            rec["end"] = end
            rec["t"] = int(time.time())
        data = orjson.dumps(rec) + b"\n"
        self._handle.write(data)
        self._bytes += len(data)
        self._apply(rec)

    def flush(self) -> None:
        self._handle.flush()

    def fsync(self) -> None:
        os.fsync(self._handle.fileno())

    @property
    def wants_compaction(self) -> bool:
        return self._bytes > _COMPACT_AT or time.monotonic() - self.compacted_at > _COMPACT_EVERY

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
