"""Live numbers for the operator page, gathered at one call per stored batch.

`LiveStats.record` runs on the writer thread right after a batch is stored (never for a refused
or duplicate one) and works per batch, not per event: a few dict updates, and the last lines of
the batch as the sinks got them (already joined, one ``bytes`` per partition) copied to a ring.
Everything that parses — the recent events, a node's lag, the dead letter's latest reasons —
waits until the page asks (`recent`, `nodes`), on the event loop. A lock guards the state: the
writer thread writes it, the event loop reads it.

Everything is bounded whatever the senders choose: node labels (`MAX_NODES`, the least recently
seen dropped first; labels cut to `MAX_LABEL`), topics (`MAX_TOPICS`, the rest counted under
`OTHER_TOPIC`), the ring (``recent_events`` lines and `RECENT_BYTES`; of each batch at most
`BATCH_BYTES`: the last lines of each partition), the dead letter's latest records (`DEAD_KEEP`).
"""

from __future__ import annotations

import collections
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .. import envelope
from .ingest import Prepared

MAX_NODES = 1000
MAX_TOPICS = 200
MAX_LABEL = 200
OTHER_TOPIC = "(other topics)"
RECENT_BYTES = 8 * 1024 * 1024  # the whole ring, whatever recent_events says
BATCH_BYTES = 64 * 1024  # kept of one batch, shared among its pieces
MIN_SHARE = 4 * 1024  # a piece's share however many pieces: a few lines at least
DEAD_KEEP = 20
DEAD_LINE_BYTES = 16 * 1024  # of a dead-letter record (its raw line may be a megabyte): the start
DEAD_FIELD_CHARS = 300
RATE_WINDOW = 10  # seconds the ingest rate is averaged over
MINUTE = 60


@dataclass(slots=True)
class _Batch:
    """What the ring keeps of one stored batch: the last lines of each of its pieces (one piece
    per route and partition), copied into one buffer of at most `BATCH_BYTES`."""

    data: bytes
    spans: list[tuple[int, int, int]]  # (route index, start, end) of each piece in ``data``
    events: int  # about how many events it holds (`keep`)

    @classmethod
    def keep(cls, pieces: list[tuple[int, bytes]], events: int) -> _Batch | None:
        """Copied, not referenced: holding on to the sinks' buffers (a quarter of a megabyte
        for a 1000-event batch) until the next batch cost the allocator ~10 % of the collector's
        CPU (bench/collector.py --ui-cost). Lines are not counted here (``bytes.count`` would
        read every kept byte): ``events`` of the batch scaled by the share of bytes kept."""
        if len(pieces) == 1 and len(pieces[0][1]) <= MIN_SHARE:  # a small batch (one event): as is
            route, data = pieces[0]
            return cls(data, [(route, 0, len(data))], max(1, events))
        share = max(MIN_SHARE, BATCH_BYTES // len(pieces))
        parts: list[bytes] = []
        spans: list[tuple[int, int, int]] = []
        total: dict[int, int] = {}
        kept: dict[int, int] = {}
        at = 0
        for route, data in pieces:
            part = tail(data, share)
            total[route] = total.get(route, 0) + len(data)
            if part:
                parts.append(part)
                spans.append((route, at, at + len(part)))
                at += len(part)
                kept[route] = kept.get(route, 0) + len(part)
        if not parts:
            return None
        fraction = max(kept[route] / total[route] for route in kept)
        return cls(b"".join(parts), spans, max(1, math.ceil(events * fraction)))

    def pieces(self) -> list[tuple[int, bytes]]:
        return [(route, self.data[start:end]) for route, start, end in self.spans]

    @property
    def last_line(self) -> bytes:
        data = self.data
        return data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]


@dataclass(slots=True)
class _Node:
    label: str
    address: str
    last_seen: float
    events: int
    batches: int
    last_line: bytes | None  # the last line of its last batch: how old it was gives the lag
    last_received: float


class LiveStats:
    """What the operator page shows that Prometheus counters cannot: rates over the last seconds,
    who was seen when, the latest events and dead-letter reasons."""

    def __init__(self, recent_events: int = 500, stale_after: float = 300.0):
        self.recent_events = recent_events
        self.stale_after = stale_after
        self.started = time.time()
        self._lock = threading.Lock()
        self._seconds: collections.deque[tuple[int, dict[str, int]]] = collections.deque()
        self._totals: dict[str, int] = {}
        self._nodes: collections.OrderedDict[str, _Node] = collections.OrderedDict()
        self._ring: collections.deque[_Batch] = collections.deque()
        self._ring_events = 0
        self._ring_bytes = 0
        self._dead_reasons: dict[str, int] = {}
        self._dead_latest: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=DEAD_KEEP)

    # ------------------------------------------------------------------ writer thread

    def record(self, prepared: Prepared) -> None:
        """One stored batch (writer thread)."""
        received = prepared.received
        pieces = [(key[0], data) for key, data in prepared.chunks.items()]
        if prepared.to_publish:
            pieces += [(key[0], data) for key, data in prepared.to_publish.items()]
        if prepared.tails:
            pieces += [(key[0], data) for key, data in prepared.tails.items()]
        kept = _Batch.keep(pieces, prepared.result.accepted) if pieces else None
        ctx = prepared.ctx
        label = (ctx.node or ctx.orig_address)[:MAX_LABEL]
        with self._lock:
            self._count_topics(int(received), prepared.topic_counts)
            self._see_node(label, ctx.orig_address, received, prepared.result.accepted, kept)
            if kept is not None:
                self._keep_recent(kept)
            if prepared.dead:
                reasons = self._dead_reasons
                for reason, n in prepared.result.reasons.items():
                    reasons[reason] = reasons.get(reason, 0) + n
                if prepared.unrouted:
                    reasons["unrouted"] = reasons.get("unrouted", 0) + prepared.unrouted
                self._dead_latest.extend(
                    (received, line[:DEAD_LINE_BYTES]) for line in prepared.dead[-DEAD_KEEP:]
                )

    def _count_topics(self, second: int, counts: dict[str, int]) -> None:
        if not counts:
            return
        seconds = self._seconds
        if not seconds or second > seconds[-1][0]:
            seconds.append((second, {}))
            while seconds[0][0] <= second - MINUTE:
                seconds.popleft()
        bucket = seconds[-1][1]  # a batch received a moment before the newest counts with it
        totals = self._totals
        for topic, n in counts.items():
            if topic not in totals and len(totals) >= MAX_TOPICS:
                topic = OTHER_TOPIC
            bucket[topic] = bucket.get(topic, 0) + n
            totals[topic] = totals.get(topic, 0) + n

    def _see_node(self, label: str, address: str, received: float, events: int, kept: _Batch | None) -> None:
        nodes = self._nodes
        node = nodes.get(label)
        if node is None:
            if len(nodes) >= MAX_NODES:
                nodes.popitem(last=False)
            node = nodes[label] = _Node(label, address, received, 0, 0, None, received)
        else:
            nodes.move_to_end(label)
        node.address = address
        if received > node.last_seen:
            node.last_seen = received
        node.events += events
        node.batches += 1
        if kept is not None:
            node.last_line = kept.last_line
            node.last_received = received

    def _keep_recent(self, batch: _Batch) -> None:
        ring = self._ring
        ring.append(batch)
        self._ring_events += batch.events
        self._ring_bytes += len(batch.data)
        while len(ring) > 1 and (
            self._ring_events - ring[0].events >= self.recent_events or self._ring_bytes > RECENT_BYTES
        ):
            old = ring.popleft()
            self._ring_events -= old.events
            self._ring_bytes -= len(old.data)

    # --------------------------------------------------------------------- readers

    def topics(self, now: float | None = None) -> dict[str, Any]:
        """Events per second over the last `RATE_WINDOW` seconds, per topic; the last minute's
        count and the total since start."""
        now = time.time() if now is None else now
        with self._lock:
            buckets = [(second, dict(counts)) for second, counts in self._seconds]
            totals = dict(self._totals)
        window: dict[str, int] = {}
        minute: dict[str, int] = {}
        for second, counts in buckets:
            age = now - second
            for topic, n in counts.items():
                if age < MINUTE:
                    minute[topic] = minute.get(topic, 0) + n
                if age < RATE_WINDOW:
                    window[topic] = window.get(topic, 0) + n
        rows = [
            {
                "topic": topic,
                "events_per_s": round(window.get(topic, 0) / RATE_WINDOW, 2),
                "last_minute": minute.get(topic, 0),
                "total": total,
            }
            for topic, total in sorted(totals.items())
        ]
        return {
            "window_s": RATE_WINDOW,
            "events_per_s": round(sum(window.values()) / RATE_WINDOW, 2),
            "total": sum(totals.values()),
            "topics": rows,
        }

    def nodes(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every node seen, most recently seen first: when, how many events, and its lag — how
        old the last event of its last batch was when it arrived (a sender catching up on a
        backlog shows a big one); ``stale`` once it has been silent for ``stale_after``."""
        now = time.time() if now is None else now
        with self._lock:
            nodes = [
                (n.label, n.address, n.last_seen, n.events, n.batches, n.last_line, n.last_received)
                for n in reversed(self._nodes.values())
            ]
        rows = []
        for label, address, last_seen, events, batches, last_line, last_received in nodes:
            lag = None
            if last_line is not None:
                when = _line_epoch(last_line)
                if when is not None:
                    lag = round(max(0.0, last_received - when), 3)
            silent = max(0.0, now - last_seen)
            rows.append(
                {
                    "node": label,
                    "address": address,
                    "last_seen": envelope.format_timestamp(last_seen),
                    "silent_s": round(silent, 1),
                    "lag_s": lag,
                    "events": events,
                    "batches": batches,
                    "stale": silent >= self.stale_after,
                }
            )
        return rows

    def dead_letter(self) -> dict[str, Any]:
        """Dead-letter lines by reason since start, and the latest ones (fields cut short)."""
        with self._lock:
            reasons = dict(self._dead_reasons)
            latest = list(self._dead_latest)
        return {
            "total": sum(reasons.values()),
            "by_reason": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
            "latest": [_dead_summary(received, line) for received, line in reversed(latest)],
        }

    def recent(self, limit: int, text: str = "") -> list[dict[str, Any]]:
        """The latest ``limit`` stored lines (newest first) whose JSON holds ``text`` (ignoring
        ASCII case); lines of one batch come in the order the sinks got them."""
        with self._lock:
            batches = list(self._ring)
        needle = text.lower().encode()
        found: list[dict[str, Any]] = []
        for batch in reversed(batches):
            if needle and needle not in batch.data.lower():
                continue  # the usual case for a filter: no line of the batch has it
            lines = _batch_lines(batch.pieces())
            for line in reversed(lines):
                if needle and needle not in line.lower():
                    continue
                try:
                    found.append(orjson.loads(line))
                except orjson.JSONDecodeError:  # a line cut by a tail: not shown
                    continue
                if len(found) >= limit:
                    return found
        return found


def tail(data: bytes, limit: int = BATCH_BYTES) -> bytes:
    """The whole lines at the end of ``data`` within ``limit`` bytes (a slice only when over)."""
    if len(data) <= limit:
        return data
    start = data.find(b"\n", len(data) - limit - 1) + 1
    return data[start:] if 0 < start < len(data) else b""


def _batch_lines(pieces: list[tuple[int, bytes]]) -> list[bytes]:
    """A batch's lines, each once: a line routed to two destinations is in both routes' pieces, so
    a line is kept as many times as the route that holds it most often does."""
    by_route: dict[int, list[bytes]] = {}
    for route, data in pieces:
        by_route.setdefault(route, []).extend(data.splitlines())
    ordered = sorted(by_route.values(), key=len, reverse=True)
    if len(ordered) <= 1:
        return ordered[0] if ordered else []
    lines = ordered[0]
    lines = list(lines)
    have = collections.Counter(lines)
    for other in ordered[1:]:
        need = collections.Counter(other)
        for line in _missing(other, need, have):
            lines.append(line)
    return lines


def _missing(
    lines: Iterable[bytes], need: collections.Counter[bytes], have: collections.Counter[bytes]
) -> Iterable[bytes]:
    for line in lines:
        if need[line] > have[line]:
            have[line] += 1
            yield line


def _line_epoch(line: bytes) -> float | None:
    try:
        stored = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(stored, dict) or not isinstance(stored.get("clientEvent"), dict):
        return None
    return envelope.stored_event_epoch(stored)


def _dead_summary(received: float, line: bytes) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:  # cut at DEAD_LINE_BYTES: its first fields (`dead_line`) are whole
        found = _DEAD_HEAD.match(line)
        record = orjson.loads(found.group(0) + b"}") if found else {}
        rest = line[found.end() if found else 0 :]
        record["raw"] = rest.removeprefix(b',"raw":"').decode("utf-8", "replace")
    if not isinstance(record, dict):
        record = {}
    raw = record.get("raw")
    if raw is None and "storedLine" in record:
        raw = record["storedLine"]
    if raw is None:
        raw = record.get("rawObject", record.get("rawBase64"))
    if raw is not None and not isinstance(raw, str):
        raw = orjson.dumps(raw).decode()
    return {
        "received": envelope.format_timestamp(received),
        "reason": _short(record.get("reason")),
        "detail": _short(record.get("detail")),
        "node": _short(record.get("node")),
        "address": _short(record.get("origAddress")),
        "raw": _short(raw),
    }


# The fields `ingest.dead_line` writes first, before the raw line: "reason", "detail", then
# "origAddress", "serverTimestamp" and maybe "node" (plain JSON strings).
_DEAD_HEAD = re.compile(
    rb'\{"reason":"(?:[^"\\]|\\.)*","detail":"(?:[^"\\]|\\.)*"(?:,"\w+":"(?:[^"\\]|\\.)*")*'
)


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= DEAD_FIELD_CHARS else text[:DEAD_FIELD_CHARS] + "…"
