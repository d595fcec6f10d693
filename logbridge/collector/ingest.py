"""Ingest: one request's items → stored lines grouped by (route, partition), and dead-letter lines.

Pure work (parse, unwrap, route, render partitions) on no shared mutable state but caches, so
it runs on any thread: the event loop for a small body, the ingest pool for a big one. What it
produces, a `Prepared`, is handed to the writer thread, which alone checks the range, appends,
journals and claims (`Collector.store`).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import envelope
from ..errors import EnvelopeError
from ..sinks.base import Destination, Partitioner, Publisher, Receipt
from ..sinks.config import DestinationBase
from .body import Invalid
from .config import Limits


@dataclass
class RequestContext:
    orig_address: str
    node: str | None = None
    header_topic: str | None = None
    header_routing_key: str | None = None
    token_name: str | None = None
    source: str | None = None
    range_start: int | None = None
    range_end: int | None = None

    @property
    def mark_key(self) -> str | None:
        """The idempotence key: the pair (token name, source), so that one token never sees nor
        moves another token's marks. Token names cannot hold ``/`` (config), so the pair is
        unambiguous; without tokens the key is the bare source."""
        if self.source is None:
            return None
        return self.source if self.token_name is None else f"{self.token_name}/{self.source}"


@dataclass
class IngestResult:
    accepted: int = 0
    invalid: int = 0
    duplicate: bool = False
    high_water: int | None = None  # set on a partial overlap (HTTP 409)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class Prepared:
    """One request, unwrapped and routed, waiting for the writer thread."""

    ctx: RequestContext
    received: float
    result: IngestResult = field(default_factory=IngestResult)
    # (route, partition) → its lines, joined here rather than on the writer thread ("\n" after each)
    chunks: dict[tuple[int, str], bytes] = field(default_factory=dict)
    # The same for publishers' routes, in the order the request first names each partition: the
    # service publishes them before the writer thread stores the rest (`published` set then).
    to_publish: dict[tuple[int, str], bytes] = field(default_factory=dict)
    published: bool = False
    dead: list[bytes] = field(default_factory=list)
    dead_chunk: bytes = b""
    # Chunks of a big batch already written to files of their own (`Collector.prestage`): the
    # writer thread adopts them, or discards them if the request is refused.
    prestaged: list[Receipt] = field(default_factory=list)
    # The last lines of each prestaged chunk, for the operator page's recent events (`LiveStats`),
    # kept only while it is on (`Collector.stats`).
    tails: dict[tuple[int, str], bytes] = field(default_factory=dict)
    dead_partition: str = ""
    topic_counts: dict[str, int] = field(default_factory=dict)
    out_counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (destination, topic) → lines
    unrouted: int = 0
    # Set when the range already looked stored: nothing was parsed, and the writer thread (which
    # alone decides) parses these items itself should the range turn out not to be stored.
    skipped: list[Any] | None = None


class Route:
    __slots__ = ("dest", "sink", "index", "publishes")

    def __init__(self, index: int, dest: DestinationBase, sink: Destination):
        self.index = index
        self.dest = dest
        self.sink = sink
        # A publisher's lines go to `Prepared.published`, handed over before the request is
        # answered; a staging sink's to `Prepared.chunks`, for the writer thread.
        self.publishes = isinstance(sink, Publisher)


class Ingest:
    """``ingest(items, ctx, received) → Prepared``; thread-safe (its caches are plain dicts)."""

    def __init__(
        self,
        routes: list[Route],
        limits: Limits,
        default_topic: str | None,
        dead_letter_paths: Partitioner,
    ):
        self.routes = routes
        self.limits = limits
        self.default_topic = default_topic
        self.dead_letter_paths = dead_letter_paths
        self._route_cache: dict[tuple[str, str | None, str | None], list[Route]] = {}
        # The fast path's plans, across batches: (logger, routing key, minute, what follows the
        # milliseconds, header routing key, token name) → `plan`'s answer.
        self.plans: dict[tuple[Any, ...], Any] = {}

    def routes_for(self, topic: str, routing_key: str | None, token_name: str | None) -> list[Route]:
        key = (topic, routing_key, token_name)
        routes = self._route_cache.get(key)
        if routes is None:
            routes = [
                r
                for r in self.routes
                if r.dest.accepts(topic, routing_key)
                and (r.dest.required_token is None or r.dest.required_token == token_name)
            ]
            if len(self._route_cache) > 100_000:
                self._route_cache.clear()
            self._route_cache[key] = routes
        return routes

    def plan(self, key: tuple[Any, Any, str, str], ctx: RequestContext) -> Any:
        """(topic, routing key, routes, each route's partition or None for one by receive time)
        for the fast path's events of ``key`` in requests like ``ctx``, or `_GENERAL`.

        Everything here is as `envelope.unwrap`, `stored_line` and the general path's routing
        do it for a log4j 1 envelope whose ``message`` is an object. It depends on the key
        alone: the time is the key's minute with seconds ``00.000``, which reads exactly when
        any usual ``SS.mmm`` does, in the same partition (`Partitioner` renders whole minutes)."""
        logger, event_routing_key, minute, suffix = key
        if type(logger) is not str or not logger.startswith(envelope.AUDIT_LOGGER_PREFIX):
            return _GENERAL
        topic = logger[len(envelope.AUDIT_LOGGER_PREFIX) :]
        if not topic.strip():
            return _GENERAL
        if type(event_routing_key) is str and event_routing_key.strip():
            routing_key: str | None = event_routing_key
        else:
            routing_key = _clean(ctx.header_routing_key)
        routes = self.routes_for(topic, routing_key, ctx.token_name)
        if not routes:
            return _GENERAL  # unrouted: dead-lettered there, with the stored line
        if any(route.sink.partitions.grain < 60 for route in routes):
            return _GENERAL  # a path by the second: one plan per minute would misplace them
        epoch = envelope.event_epoch(f"{minute}00.000{suffix}")
        partitions: list[str | None] = []
        for route in routes:
            partition = None
            if route.sink.event_time and epoch is not None:
                # A time no calendar of the zone can show (year 10000) goes to the receive time.
                with contextlib.suppress(ValueError, OverflowError, OSError):
                    partition = route.sink.partitions.render(topic, routing_key, epoch)
            partitions.append(partition)
        return (topic, routing_key, routes, partitions)

    def __call__(self, items: list[Any], ctx: RequestContext, received: float) -> Prepared:
        """The fast path: log4j 1 envelopes (DESIGN.md §2, envelope 1) of the common shape are
        unwrapped, timed and routed here with one cache lookup per event; every other item —
        another envelope, an odd field, a malformed line, anything over a limit — goes to
        `_Batch.general`, the general path, which gives the same stored lines and partitions
        for the common shape too (``tests/collector/test_fast_path.py`` holds them equal).

        The lookup key is (logger, routing key, time up to the minute's ``:``, what follows the
        milliseconds), for a time with log4j's seconds and milliseconds in place
        (``2020-02-19T16:05:02.441+0100``: ``02.441`` in ASCII digits, seconds below 60).
        Whether such a time reads, and its minute, depend on the key alone, and `Partitioner`
        renders by whole minutes: so the first event of a key computes the partitions with the
        general functions, for the rest of the batch.

        The seconds and milliseconds are checked once per key for the whole batch, not per
        event (`_Batch.usual_times`): should one be odd, the batch is run again checking each
        event, and those odd ones take the general path."""
        prepared = self._fast(items, ctx, received, checked=False)
        if prepared is None:
            prepared = self._fast(items, ctx, received, checked=True)
            assert prepared is not None
        return prepared

    def _fast(self, items: list[Any], ctx: RequestContext, received: float, checked: bool) -> Prepared | None:
        """`__call__`'s loop; None if not ``checked`` and a time of the batch is not usual."""
        batch = _Batch(self, ctx, received)
        general = batch.general
        groups = batch.groups
        loads = orjson.loads
        dumps = orjson.dumps
        newline = orjson.OPT_APPEND_NEWLINE
        max_bytes = self.limits.max_event_bytes
        max_depth = self.limits.max_depth
        # The same bounds as the general path, for the whole batch at once when it can: each
        # item checked alone costs two bracket counts, the batch one pass of C.
        bounded = _within_bounds(items, max_bytes, max_depth)
        seconds = _SECONDS
        millis = _MILLIS
        for item in items:
            # Too big, or maybe too deep (more brackets than the depth limit): the general path
            # judges it.
            if not bounded and (
                type(item) is not bytes
                or len(item) > max_bytes
                or item.count(b"{") + item.count(b"[") > max_depth
            ):
                general(item)
                continue
            try:
                obj = loads(item)
                message = obj.pop("message")  # what is left is the stored line's ``envelope``
                stamp = obj["timestamp"]
                key = (obj["logger"], message.get("routingKey"), stamp[:17], stamp[23:])
                group = groups.get(key)
                if (
                    "clientEvent" in obj
                    or "loggerName" in obj
                    or (checked and (stamp[17:19] not in seconds or stamp[19:23] not in millis))
                ):
                    general(item)
                    continue
            except (ValueError, KeyError, TypeError, AttributeError):
                # ValueError: orjson.JSONDecodeError. Key/Type/AttributeError: not an object,
                # a field missing or of another type (a message that is no object, a routing
                # key that cannot be a key…).
                general(item)
                continue
            if group is None:
                group = groups[key] = batch.group(key)
            if group is _GENERAL:  # no topic from the logger, or no destination takes it
                general(item)
                continue
            group[0](stamp)  # its times, checked at the end; their number is the group's count
            # The group's stored line, its constants in place: assigning its two other keys
            # keeps their order, so one dict serves every event of the group.
            line = group[2]
            line["clientEvent"] = message
            line["envelope"] = obj
            group[1](dumps(line, None, newline))  # (positional: no keyword parsing per event)
        if not checked and not batch.usual_times():
            return None
        return batch.finish()

    def general(self, items: list[Any], ctx: RequestContext, received: float) -> Prepared:
        """The general path for every item (the reference the fast path is tested against)."""
        batch = _Batch(self, ctx, received)
        for item in items:
            batch.general(item)
        return batch.finish()


# Log4j's seconds and milliseconds, in ASCII digits: a leap second (60) is left to the general
# path, since it may move the time into the next minute.
_SECONDS = frozenset(f"{s:02d}" for s in range(60))
_MILLIS = frozenset(f".{ms:03d}" for ms in range(1000))
_GENERAL: list[Any] = []  # a group whose events take the general path
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"{[\n")


def _within_bounds(items: list[Any], max_bytes: int, max_depth: int) -> bool:
    """True if every item is bytes, at most ``max_bytes`` long, and holds at most ``max_depth``
    opening brackets (so cannot nest deeper). The batch's lines are joined and stripped of
    everything but brackets and newlines in one pass; what is left of a line is its brackets.
    False when an item is no bytes (items are `body.split`'s: bytes, or the parsed objects of
    a JSON array), or holds a newline itself (the lines would not line up), or one is over."""
    try:
        joined = b"\n".join(items)
    except TypeError:
        return False
    if len(joined) > max_bytes and max(map(len, items)) > max_bytes:
        return False
    brackets = joined.translate(None, _NOT_BRACKETS)
    return brackets.count(b"\n") == len(items) - 1 and _too_deep(max_depth).search(brackets) is None


@functools.lru_cache(maxsize=8)
def _too_deep(max_depth: int) -> re.Pattern[bytes]:
    """A line of more than ``max_depth`` brackets. Anchored at line starts: tried from every
    position, a run just under the bound would be read again from each of its characters."""
    return re.compile(rb"(?m)^[^\n]{%d}" % (max_depth + 1))


class _Batch:
    """One request's state while `Ingest` runs through its items."""

    def __init__(self, ingest: Ingest, ctx: RequestContext, received: float):
        self.ingest = ingest
        self.ctx = ctx
        self.received = received
        self.server_ts = envelope.format_timestamp(received)
        self.prepared = Prepared(ctx, received)
        # (route, partition) → its stored lines, each followed by "\n". One growing buffer, not a
        # list of lines joined at the end: a thousand small bytes objects kept alive until the
        # join cost more than orjson's serialisation itself (malloc, cache misses), while one
        # serialised line copied into the buffer and freed at once stays in cache. A BytesIO,
        # not a bytearray: its ``getvalue()`` hands its bytes over without a copy.
        self.buffers: dict[tuple[int, str], io.BytesIO] = {}
        # fast-path key → [add a time, add the stored line, stored-line template, topic, routes,
        # the times of its events]
        self.groups: dict[tuple[Any, Any, str, str], list[Any]] = {}

    def group(self, key: tuple[Any, Any, str, str]) -> list[Any]:
        """What the fast path needs for the events of one key in this batch (its `Ingest.plan`,
        the buffers of its partitions and its stored-line template), or `_GENERAL`."""
        ctx = self.ctx
        plans = self.ingest.plans
        plan_key = (*key, ctx.header_routing_key, ctx.token_name)
        plan = plans.get(plan_key)
        if plan is None:
            plan = self.ingest.plan(key, ctx)
            if len(plans) > 100_000:
                plans.clear()
            plans[plan_key] = plan
        if plan is _GENERAL:
            return _GENERAL
        topic, routing_key, routes, partitions = plan
        received = self.received
        appends = []
        for route, partition in zip(routes, partitions, strict=True):
            if partition is None:
                # By receive time: the destination's choice, or a time no calendar of its zone
                # can show (`_render` with no time: `Partitioner.render_received`).
                when = None if route.sink.event_time else received
                partition = _render(route.sink, topic, routing_key, when, received)
            key_ = (route.index, partition)
            buf = self.buffers.get(key_)
            if buf is None:
                self.buffers[key_] = buf = io.BytesIO()
            appends.append(buf.write)
        template: dict[str, Any] = {
            "clientEvent": None,
            "origAddress": ctx.orig_address,
            "serverTimestamp": self.server_ts,
            "topic": topic,
        }
        if routing_key is not None:
            template["routingKey"] = routing_key
        if ctx.node is not None:
            template["node"] = ctx.node
        template["envelope"] = None
        append = appends[0] if len(appends) == 1 else _append_to_all(appends)
        stamps: list[str] = []
        return [stamps.append, append, template, topic, routes, stamps]

    def usual_times(self) -> bool:
        """Whether the times of every fast-path event have log4j's seconds and milliseconds in
        place: ``SS.mmm`` after the key's 17 characters (the minute), in ASCII digits, seconds
        below 60. The events of one key share their first 17 characters and what follows the
        23rd, so their times are all 23 + len(that suffix) long; joined, each column of
        ``SS.mmm`` is a slice with that step. A few C calls per length, not per event."""
        by_size: dict[int, list[list[str]]] = {}
        for (_, _, _, suffix), group in self.groups.items():
            if group is not _GENERAL:
                by_size.setdefault(23 + len(suffix), []).append(group[5])
        for size, lists in by_size.items():
            times = "".join(itertools.chain.from_iterable(lists))
            n = sum(map(len, lists))
            # Not ASCII: maybe, maybe not, but not judged here (a non-ASCII digit is a digit to
            # `parse_iso`, and the columns would not line up in bytes).
            if not times.isascii() or len(times) != size * n:  # or a time under 23 characters
                return False
            raw = times.encode("ascii")  # bytes: their columns and checks are cheaper than str's
            tens = raw[17::size]
            digits = tens + raw[18::size] + raw[20::size] + raw[21::size] + raw[22::size]
            if not digits.isdigit() or raw[19::size].count(b".") != n:
                return False
            if b"6" in tens or b"7" in tens or b"8" in tens or b"9" in tens:
                return False
        return True

    def general(self, item: Any) -> None:
        """One item through the general path: `envelope.parse_line`, `unwrap`, `stored_line`."""
        ingest = self.ingest
        limits = ingest.limits
        ctx = self.ctx
        prepared = self.prepared
        result = prepared.result
        server_ts = self.server_ts
        try:
            if isinstance(item, bytes):
                if len(item) > limits.max_event_bytes:
                    raise EnvelopeError("too-large", f"{len(item)} bytes, limit {limits.max_event_bytes}")
                if not item or item.isspace():
                    return
                obj = envelope.parse_line(item, limits.max_depth)
            elif isinstance(item, Invalid):
                raise EnvelopeError("not-an-object", f"array element is {type(item.value).__name__}")
            else:
                obj = item
                if envelope.json_depth(obj) > limits.max_depth:
                    raise EnvelopeError("too-deep", f"nested deeper than {limits.max_depth}")
            u = envelope.unwrap(
                obj,
                header_topic=ctx.header_topic,
                header_routing_key=ctx.header_routing_key,
                default_topic=ingest.default_topic,
            )
        except EnvelopeError as exc:
            result.invalid += 1
            result.reasons[exc.reason] = result.reasons.get(exc.reason, 0) + 1
            prepared.dead.append(dead_line(item, exc.reason, exc.detail, ctx, server_ts))
            return
        routes = ingest.routes_for(u.topic, u.routing_key, ctx.token_name)
        line = envelope.stored_line(u, ctx.orig_address, server_ts, ctx.node)
        if not routes:
            prepared.unrouted += 1
            prepared.dead.append(
                dead_line(
                    line,
                    "unrouted",
                    f"no destination takes topic {u.topic!r} with routing key {u.routing_key!r}",
                    ctx,
                    server_ts,
                    stored=True,
                )
            )
            return
        received = self.received
        buffers = self.buffers
        out_counts = prepared.out_counts
        epoch: float | None = None
        timed = False
        for route in routes:
            sink = route.sink
            if sink.event_time:
                if not timed:
                    epoch = envelope.event_epoch(u.event_time) if u.event_time is not None else None
                    timed = True
                when = epoch
            else:
                when = received
            key = (route.index, _render(sink, u.topic, u.routing_key, when, received))
            buf = buffers.get(key)
            if buf is None:
                buffers[key] = buf = io.BytesIO()
            buf.write(line)
            buf.write(b"\n")
            out_key = (route.dest.name, u.topic)
            out_counts[out_key] = out_counts.get(out_key, 0) + 1
        prepared.topic_counts[u.topic] = prepared.topic_counts.get(u.topic, 0) + 1
        result.accepted += 1

    def finish(self) -> Prepared:
        """The counts of the fast path's groups added in; each partition's lines joined."""
        prepared = self.prepared
        topic_counts = prepared.topic_counts
        out_counts = prepared.out_counts
        for group in self.groups.values():
            if group is _GENERAL:
                continue
            _, _, _, topic, routes, stamps = group
            n = len(stamps)
            prepared.result.accepted += n
            topic_counts[topic] = topic_counts.get(topic, 0) + n
            for route in routes:
                out_key = (route.dest.name, topic)
                out_counts[out_key] = out_counts.get(out_key, 0) + n
        routes = self.ingest.routes
        for key, buf in self.buffers.items():
            if routes[key[0]].publishes:
                prepared.to_publish[key] = buf.getvalue()
            else:
                prepared.chunks[key] = buf.getvalue()
        if prepared.dead:
            prepared.dead_partition = self.ingest.dead_letter_paths.render("", None, self.received)
            prepared.dead_chunk = b"\n".join([*prepared.dead, b""])
        return prepared


def _render(
    sink: Destination, topic: str, routing_key: str | None, when: float | None, received: float
) -> str:
    """The partition at ``when``; at the receive time (`Partitioner.render_received`) for a line
    without a readable time (``when`` None) or with one no calendar can show (year 10000 in the
    destination's zone)."""
    if when is not None:
        try:
            return sink.partitions.render(topic, routing_key, when)
        except (ValueError, OverflowError, OSError):
            pass
    return sink.partitions.render_received(topic, routing_key, received)


def _clean(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _append_to_all(appends: list[Any]) -> Any:
    def append(line: bytes) -> None:
        for add in appends:
            add(line)

    return append


def dead_line(
    item: Any, reason: str, detail: str, ctx: RequestContext, server_ts: str, stored: bool = False
) -> bytes:
    """The dead-letter record of one line that cannot be stored, with everything it carried."""
    record: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "origAddress": ctx.orig_address,
        "serverTimestamp": server_ts,
    }
    if ctx.node:
        record["node"] = ctx.node
    if stored:
        record["storedLine"] = orjson.Fragment(item)
    elif isinstance(item, bytes):
        try:
            record["raw"] = item.decode("utf-8")
        except UnicodeDecodeError:
            record["rawBase64"] = base64.b64encode(item).decode("ascii")
    elif isinstance(item, Invalid):
        record["raw"] = item.value
    else:
        record["rawObject"] = item
    try:
        return orjson.dumps(record)
    except TypeError:  # e.g. a number beyond 64 bits inside rawObject
        record.pop("rawObject", None)
        record["raw"] = repr(item)
        return orjson.dumps(record)
