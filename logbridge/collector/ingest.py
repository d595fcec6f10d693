"""Ingest: one request's items → stored lines grouped by (route, partition), and dead-letter lines.

Pure work (parse, unwrap, route, render partitions) on no shared mutable state but caches, so
it runs on any thread: the event loop for a small body, the ingest pool for a big one. What it
produces, a `Prepared`, is handed to the writer thread, which alone checks the range, appends,
journals and claims (`Collector.store`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from .. import envelope
from ..errors import EnvelopeError
from ..sinks.base import Partitioner, Receipt, Sink
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
    dead: list[bytes] = field(default_factory=list)
    dead_chunk: bytes = b""
    # Chunks of a big batch already written to files of their own (`Collector.prestage`): the
    # writer thread adopts them, or discards them if the request is refused.
    prestaged: list[Receipt] = field(default_factory=list)
    dead_partition: str = ""
    topic_counts: dict[str, int] = field(default_factory=dict)
    out_counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (destination, topic) → lines
    unrouted: int = 0
    # Set when the range already looked stored: nothing was parsed, and the writer thread (which
    # alone decides) parses these items itself should the range turn out not to be stored.
    skipped: list[Any] | None = None


class Route:
    __slots__ = ("dest", "sink", "index")

    def __init__(self, index: int, dest: DestinationBase, sink: Sink):
        self.index = index
        self.dest = dest
        self.sink = sink


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

    def __call__(self, items: list[Any], ctx: RequestContext, received: float) -> Prepared:
        limits = self.limits
        server_ts = envelope.format_timestamp(received)
        default_topic = self.default_topic
        prepared = Prepared(ctx, received)
        result = prepared.result
        buffers: dict[tuple[int, str], list[bytes]] = {}
        dead = prepared.dead
        topic_counts = prepared.topic_counts
        out_counts = prepared.out_counts
        for item in items:
            try:
                if isinstance(item, bytes):
                    if len(item) > limits.max_event_bytes:
                        raise EnvelopeError("too-large", f"{len(item)} bytes, limit {limits.max_event_bytes}")
                    if not item or item.isspace():
                        continue
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
                    default_topic=default_topic,
                )
            except EnvelopeError as exc:
                result.invalid += 1
                result.reasons[exc.reason] = result.reasons.get(exc.reason, 0) + 1
                dead.append(dead_line(item, exc.reason, exc.detail, ctx, server_ts))
                continue
            routes = self.routes_for(u.topic, u.routing_key, ctx.token_name)
            line = envelope.stored_line(u, ctx.orig_address, server_ts, ctx.node)
            if not routes:
                prepared.unrouted += 1
                dead.append(
                    dead_line(
                        line,
                        "unrouted",
                        f"no destination takes topic {u.topic!r} with routing key {u.routing_key!r}",
                        ctx,
                        server_ts,
                        stored=True,
                    )
                )
                continue
            epoch = None
            for route in routes:
                sink = route.sink
                if sink.event_time:
                    if epoch is None:
                        epoch = envelope.event_epoch(u.event_time) if u.event_time is not None else None
                        if epoch is None:
                            epoch = received
                    when = epoch
                else:
                    when = received
                key = (route.index, sink.partitions.render(u.topic, u.routing_key, when))
                buf = buffers.get(key)
                if buf is None:
                    buffers[key] = buf = []
                buf.append(line)
                out_key = (route.dest.name, u.topic)
                out_counts[out_key] = out_counts.get(out_key, 0) + 1
            topic_counts[u.topic] = topic_counts.get(u.topic, 0) + 1
            result.accepted += 1
        for key, lines in buffers.items():
            lines.append(b"")
            prepared.chunks[key] = b"\n".join(lines)
        if dead:
            prepared.dead_partition = self.dead_letter_paths.render("", None, received)
            prepared.dead_chunk = b"\n".join([*dead, b""])
        return prepared


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
