"""The writer's store side: messages → partitions → the collector's filesystem sinks → journal.

No NATS here (the loop in `logbridge.consume.runner` does that); everything here runs on one
thread at a time, the store thread. A message becomes, for each destination that takes its
topic and routing key, one chunk of stored lines for one partition (or several, re-rendered
line by line when the destination's partition keys are not the collector's), appended
*separately*: each message's bytes are one range per staging file, journaled with its stream
sequence, so that recovery can keep or drop exactly one message's lines.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog

from .. import envelope
from ..collector.core import DEAD_LETTER
from ..collector.ingest import _render
from ..errors import BadMessage, StorageUnavailable
from ..fileio import write_beside
from ..sinks.base import Receipt
from ..sinks.filesystem import FilesystemSink
from ..sinks.nats import EVENTS, PARTITION, TOPIC
from ..sinks.partition import PartitionPaths
from .config import WriterConfig
from .journal import Ranges, WriterJournal

log = structlog.get_logger("logbridge.consume")

REQUIRED_HEADERS = (PARTITION, TOPIC, EVENTS)


@dataclass
class Planned:
    """One message, routed: the chunks to append, or why it goes to the dead letter."""

    seq: int
    reply: str
    chunks: list[tuple[FilesystemSink, str, bytes]] = field(default_factory=list)
    events: int = 0
    dead: str | None = None  # the dead-letter reason


class StoreWriter:
    def __init__(self, config: WriterConfig):
        self.config = config
        self.state_dir = config.resolved_state_dir()
        self.fsync = config.durability == "fsync"
        staging = self.state_dir / "staging"
        self.routes = [
            (dest, FilesystemSink.from_config(dest, staging, key=f"destinations[{i}] ({dest.name})"))
            for i, dest in enumerate(config.destinations)
        ]
        self.dead_letter = FilesystemSink(
            DEAD_LETTER,
            config.dead_letter,
            staging / DEAD_LETTER,
            partitions=PartitionPaths("%Y/%m/%d/%H"),
            event_time=False,
            max_age=min(60.0, *(d.roll.max_age for d in config.destinations)),
            key="dead_letter",
        )
        self.sinks = [sink for _, sink in self.routes] + [self.dead_letter]
        self.journal = WriterJournal(self.state_dir, compact_bytes=config.journal.compact_bytes)
        # Receipts of messages staged and journaled but not yet acknowledged by JetStream: a
        # staging file is rolled (and so published) only once every message in it is acked.
        self._unacked: dict[int, list[Receipt]] = {}
        self._acked: list[Receipt] = []  # acked, waiting for an earlier message of their file

    # ---------------------------------------------------------------------------- routing

    def plan(self, seq: int, reply: str, headers: Mapping[str, str] | None, data: bytes) -> Planned:
        """Route one message (any thread: reads only configuration)."""
        planned = Planned(seq, reply)
        try:
            self._plan(planned, headers or {}, data)
        except BadMessage as exc:
            planned.chunks = []
            planned.dead = exc.reason
            planned.chunks.append((self.dead_letter, "", _dead_record(exc, seq, headers, data)))
        return planned

    def _plan(self, planned: Planned, headers: Mapping[str, str], data: bytes) -> None:
        missing = [h for h in REQUIRED_HEADERS if h not in headers]
        if missing:
            raise BadMessage("missing-headers", f"no {', '.join(missing)} header")
        try:
            events = int(headers[EVENTS])
        except ValueError:
            raise BadMessage("bad-headers", f"{EVENTS}: {headers[EVENTS]!r} is not a number") from None
        if not data.endswith(b"\n") or data.count(b"\n") != events:
            raise BadMessage(
                "bad-body", f"the body is not {events} lines each ending in a newline ({EVENTS}: {events})"
            )
        first = _stored_line(data[: data.index(b"\n")], 1)
        topic, routing_key = first["topic"], first.get("routingKey")
        header_partition = headers[PARTITION]
        planned.events = events
        for dest, sink in self.routes:
            if not dest.accepts(topic, routing_key):
                continue
            if _partition_of(sink, first) == header_partition:
                # The destination renders this message's partition as the collector did: the
                # same partition keys (checked on each message's first line).
                planned.chunks.append((sink, header_partition, data))
            else:
                planned.chunks.extend((sink, p, chunk) for p, chunk in _rerender(sink, data))
        if not planned.chunks:
            raise BadMessage(
                "unrouted", f"no destination takes topic {topic!r} with routing key {routing_key!r}"
            )

    # ------------------------------------------------------------------------- writing

    def claimed(self, seqs: Sequence[int]) -> None:
        """Journal claims about to be taken (store thread)."""
        self.journal.append({"claimed": list(seqs)})

    def write(self, messages: Sequence[Planned]) -> None:
        """Append every message, journal the batch (sizes, sequences, ack subjects) and make it
        durable as ``durability`` says. Raises `StorageUnavailable` with nothing of the batch
        left in the staging files."""
        receipts: list[Receipt] = []
        staged: dict[str, Any] = {}
        files: dict[str, int] = {}
        now = time.time()
        try:
            for message in messages:
                ranges: Ranges = []
                for sink, partition, data in message.chunks:
                    if sink is self.dead_letter:
                        partition = sink.partitions.render("", None, now)
                    receipt = sink.append(partition, data)
                    receipts.append(receipt)
                    assert receipt.journal_key is not None
                    ranges.append((receipt.journal_key, receipt.before, receipt.size))
                    files[receipt.journal_key] = receipt.size
                staged[str(message.seq)] = [message.reply, ranges]
            if self.fsync:
                for synced in {r.sink for r in receipts}:
                    synced.sync()
            self.journal.append({"files": files, "seqs": staged})
            if self.fsync:
                self.journal.fsync()
        except (StorageUnavailable, OSError) as exc:
            for receipt in reversed(receipts):
                receipt.sink.rollback(receipt)
            if isinstance(exc, OSError):
                exc = StorageUnavailable(f"cannot write the writer journal: {exc.strerror or exc}")
            raise exc from None
        i = 0
        for message in messages:
            n = len(message.chunks)
            self._unacked[message.seq] = receipts[i : i + n]
            i += n

    def done(self, seqs: Sequence[int]) -> None:
        """JetStream confirmed these acks: their lines may be published (store thread)."""
        if not seqs:
            return
        self.journal.append({"done": list(seqs)})
        if self.fsync:
            self.journal.fsync()
        for seq in seqs:
            self._acked.extend(self._unacked.pop(seq, ()))
        # A staging file is acknowledged (made publishable) only up to its first byte of a
        # message still unacked: a published file never holds a message JetStream may deliver again.
        first_unacked: dict[int, int] = {}
        for receipts in self._unacked.values():
            for r in receipts:
                first_unacked[id(r.handle)] = min(first_unacked.get(id(r.handle), r.before), r.before)
        waiting = []
        for receipt in self._acked:
            if receipt.size <= first_unacked.get(id(receipt.handle), receipt.size):
                receipt.sink.acknowledge((receipt,))
            else:
                waiting.append(receipt)
        self._acked = waiting

    def is_pending(self, seq: int) -> bool:
        return seq in self.journal.pending

    # ------------------------------------------------------------------------- recovery

    def load(self) -> None:
        self.journal.load()

    def drop(self, seqs: set[int]) -> None:
        """Before `recover`: remove the staged bytes of pending messages this writer no longer
        owns (its claim was released or expired: another writer writes them)."""
        cuts: dict[str, list[tuple[int, int]]] = {}
        for seq in seqs:
            pending = self.journal.pending.get(seq)
            if pending is None:
                continue
            for key, start, end in pending.ranges:
                cuts.setdefault(key, []).append((start, end))
        for key, ranges in cuts.items():
            path = self._staging_path(key)
            keep = self.journal.sizes.get(key, 0)
            if path is None or not path.exists():
                continue
            data = path.read_bytes()[:keep]
            out = io.BytesIO()
            pos = 0
            for start, end in sorted(ranges):
                out.write(data[pos:start])
                pos = max(pos, end)
            out.write(data[pos:])
            kept = out.getvalue()
            write_beside(path, lambda fh, b=kept: fh.write(b), durable=self.fsync)  # type: ignore[misc]
            self.journal.append({"files": {key: len(kept)}})
            log.warning(
                "recovery: dropped the lines of messages whose claim this writer lost",
                file=key,
                bytes=len(data) - len(kept),
            )
        if seqs:
            self.journal.append({"done": sorted(seqs)})

    def _staging_path(self, key: str) -> Path | None:
        name, _, relpath = key.partition("/")
        for sink in self.sinks:
            if sink.name == name:
                return sink.writer.staging_dir / relpath
        return None

    def recover(self) -> int:
        """Cut leftover staging files to their journaled sizes and publish them (after every
        pending message was acked or dropped); returns how many files went."""
        published = 0
        for sink in self.sinks:
            sink.recover(self.journal.sizes)
            published += sink.publish()
        return published

    def compact(self) -> None:
        # Every file not published yet, at its journaled size: a sink's acknowledged size lags
        # behind it while messages in the file wait for their acks (they are staged all the same).
        journaled = self.journal.sizes
        sizes: dict[str, int] = {}
        for sink in self.sinks:
            for key, acknowledged in sink.staged_sizes().items():
                sizes[key] = max(acknowledged, journaled.get(key, 0))
        self.journal.compact(sizes)

    # ------------------------------------------------------------------------ publishing

    def roll(self, force: bool = False) -> bool:
        now = time.monotonic()
        for sink in self.sinks:
            sink.roll(now, force=force)
        return any(s.wants_publish for s in self.sinks)

    def publish(self) -> int:
        return sum(sink.publish() for sink in self.sinks if sink.wants_publish)

    def staging_bytes(self) -> int:
        return sum(s.staging_bytes() for s in self.sinks)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.journal.close()


# ------------------------------------------------------------------------------ lines


def _stored_line(line: bytes, number: int) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadMessage("bad-line", f"line {number} is not JSON: {exc}") from None
    if not isinstance(obj, dict) or "clientEvent" not in obj or not isinstance(obj.get("topic"), str):
        raise BadMessage("bad-line", f"line {number} is not a stored line (clientEvent, topic)")
    return obj


def _partition_of(sink: FilesystemSink, line: dict[str, Any]) -> str:
    received = envelope.event_epoch(line.get("serverTimestamp"))
    if received is None:
        received = time.time()
    when = envelope.stored_event_epoch(line) if sink.event_time else received
    return _render(sink, line["topic"], line.get("routingKey"), when, received)


def _rerender(sink: FilesystemSink, data: bytes) -> list[tuple[str, bytes]]:
    """The message's lines by this destination's own partitions, in order."""
    buffers: dict[str, io.BytesIO] = {}
    for number, line in enumerate(data.split(b"\n")[:-1], 1):
        partition = _partition_of(sink, _stored_line(line, number))
        buf = buffers.get(partition)
        if buf is None:
            buffers[partition] = buf = io.BytesIO()
        buf.write(line)
        buf.write(b"\n")
    return [(p, b.getvalue()) for p, b in buffers.items()]


def _dead_record(exc: BadMessage, seq: int, headers: Mapping[str, str] | None, data: bytes) -> bytes:
    record: dict[str, Any] = {
        "reason": exc.reason,
        "detail": exc.detail,
        "streamSequence": seq,
        "headers": dict(headers or {}),
        "serverTimestamp": envelope.format_timestamp(time.time()),
        "writerPid": os.getpid(),
    }
    try:
        record["raw"] = data.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        record["rawBase64"] = base64.b64encode(data).decode("ascii")
    return orjson.dumps(record) + b"\n"
