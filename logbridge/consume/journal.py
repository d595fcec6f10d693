"""A writer's crash-safe state: staging sizes and the stream sequences whose lines are staged.

One append-only journal per state dir, like the collector's (`logbridge.collector.journal`),
with three kinds of records, each ``\\n`` + JSON in one unbuffered ``write``::

    {"claimed": [812, 813]}                         claims taken, lines not staged yet
    {"files": {"store/…/events-….ndjson": 40960},   a batch staged: the files' sizes after it,
     "seqs": {"812": ["$JS.ACK.…", [["store/…", 0, 20480]]], …}}
                                                    and per message its ack subject and bytes
    {"done": [812, 813]}                            acknowledged (JetStream confirmed)

A message is *pending* from its ``files``/``seqs`` record until its ``done`` record: its lines
are staged (and durable: the record is written after the appends, fsynced under ``durability:
fsync``) but JetStream may not know yet. At restart, recovery cuts staging files back to the
journaled sizes (bytes of a batch never journaled go: its messages are delivered again) and
acknowledges every pending message itself, through the ack subject it journaled.

A torn record (a crash mid-write) is alone on its line and skipped. The journal is compacted
into ``state.json`` at start and whenever it passes ``compact_bytes``: the staged sizes of
files not yet published, the pending messages and the claims not yet staged.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..fileio import append_or_cut, journal_generations, write_beside

# A message's staged bytes: (journal key, start, end) for each destination it went to.
Ranges = list[tuple[str, int, int]]


@dataclass
class Pending:
    reply: str  # the ack subject of the delivery that staged it
    ranges: Ranges


class WriterJournal:
    def __init__(self, state_dir: Path, *, compact_bytes: int = 32 * 1024 * 1024):
        self.dir = state_dir
        self.compact_bytes = compact_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_path = self.dir / "state.json"
        self.sizes: dict[str, int] = {}
        self.pending: dict[int, Pending] = {}
        self.claimed: set[int] = set()  # claimed, not staged (or staged by a batch never journaled)
        self.generation = 0
        self._handle: Any = None
        self._size = 0

    def _path(self, generation: int) -> Path:
        return self.dir / f"journal-{generation:08d}.wal"

    def _generations(self) -> list[int]:
        return journal_generations(self.dir)

    def load(self) -> None:
        if self.snapshot_path.exists():
            snap = orjson.loads(self.snapshot_path.read_bytes())
            self.generation = int(snap.get("generation", 0))
            self.sizes = dict(snap.get("sizes", {}))
            self.claimed = {int(s) for s in snap.get("claimed", [])}
            for seq, (reply, ranges) in snap.get("pending", {}).items():
                self.pending[int(seq)] = Pending(reply, [tuple(r) for r in ranges])  # type: ignore[misc]
        generations = self._generations()
        for generation in generations:
            if generation < self.generation:
                continue
            for line in self._path(generation).read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    self._apply(orjson.loads(line))
                except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
                    continue  # torn by a crash: never acted on
        if generations:
            self.generation = max(self.generation, generations[-1])

    def _apply(self, record: dict[str, Any]) -> None:
        for seq in record.get("claimed", ()):
            self.claimed.add(int(seq))
        files = record.get("files")
        if files:
            self.sizes.update(files)
        for seq, (reply, ranges) in (record.get("seqs") or {}).items():
            s = int(seq)
            self.pending[s] = Pending(reply, [tuple(r) for r in ranges])  # type: ignore[misc]
            self.claimed.discard(s)
        for seq in record.get("done", ()):
            self.pending.pop(int(seq), None)
            self.claimed.discard(int(seq))

    def append(self, record: dict[str, Any]) -> None:
        """One record to the OS (`fsync` makes it durable). Raises `OSError` with the journal as
        it was (or a torn record that `load` skips)."""
        data = b"\n" + orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS)
        append_or_cut(self._handle.fileno(), data, self._size)
        self._size += len(data)
        self._apply(orjson.loads(data))

    def fsync(self) -> None:
        os.fsync(self._handle.fileno())

    @property
    def wants_compaction(self) -> bool:
        return self._size > self.compact_bytes

    def compact(self, live_sizes: dict[str, int]) -> None:
        """A new generation from a snapshot of the live state (writer's own thread; the state is
        small: what is staged and not published, what is not acknowledged)."""
        generation = self.generation + 1
        handle = open(self._path(generation), "wb", buffering=0)  # noqa: SIM115 - lives until the next compaction
        self.sizes = dict(live_sizes)
        snapshot = {
            "generation": generation,
            "sizes": self.sizes,
            "pending": {str(s): [p.reply, p.ranges] for s, p in self.pending.items()},
            "claimed": sorted(self.claimed),
        }
        try:
            write_beside(self.snapshot_path, lambda fh: fh.write(orjson.dumps(snapshot)))
        except OSError:
            handle.close()
            self._path(generation).unlink(missing_ok=True)
            raise
        if self._handle is not None:
            self._handle.close()
        self._handle = handle
        self.generation = generation
        self._size = 0
        for old in self._generations():
            if old < generation:
                with contextlib.suppress(FileNotFoundError):
                    self._path(old).unlink()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
