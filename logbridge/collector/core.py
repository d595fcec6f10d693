"""The collector's core: unwrap → route → write → commit, independent of HTTP.

`Collector.ingest` takes the items of one request and writes all of them synchronously (no
await between the idempotence check and the journal record, so concurrent requests of one
source cannot interleave), then `Collector.commit` waits until they are durable: at once with
``durability: flush``; with ``fsync``, a *group commit* that one fsync round serves for every
request that wrote before it started.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from .. import envelope
from ..errors import ConfigError, EnvelopeError, StorageUnavailable
from ..sinks.partition import PartitionPaths
from ..sinks.writer import PartitionedWriter, StagingFile
from .body import Invalid
from .config import CollectorConfig, Destination
from .journal import Journal
from .metrics import Metrics

log = structlog.get_logger("logbridge.collector")

DEAD_LETTER = "_dead-letter"


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


_PendingRecord = tuple[str | None, int | None, dict[str, int], list[tuple[StagingFile, int]]]


class _Route:
    __slots__ = ("dest", "writer", "paths")

    def __init__(self, dest: Destination, writer: PartitionedWriter, paths: PartitionPaths):
        self.dest = dest
        self.writer = writer
        self.paths = paths


class Collector:
    def __init__(self, config: CollectorConfig, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.state_dir = config.resolved_state_dir()
        self.fsync = config.durability == "fsync"
        staging = self.state_dir / "staging"
        self.routes: list[_Route] = []
        for dest in config.destinations:
            if dest.type != "filesystem":
                raise ConfigError(
                    f"destinations[{config.destinations.index(dest)}].type: {dest.type!r} destinations are not "
                    "available in this build yet; use type: filesystem"
                )
            writer = PartitionedWriter(
                dest.name,
                dest.url,
                staging / dest.name,
                storage_options=dict(dest.storage_options),
                max_bytes=dest.roll.max_bytes,
                max_age=dest.roll.max_age,
                compression=dest.compression,
            )
            paths = PartitionPaths(
                dest.path_template(), timezone=dest.timezone, placeholder=dest.routing_key_placeholder
            )
            self.routes.append(_Route(dest, writer, paths))
        self._route_by_id = {id(r): r for r in self.routes}
        self.dead_letter = PartitionedWriter(
            DEAD_LETTER, config.dead_letter, staging / DEAD_LETTER, max_age=min(60.0, self._min_age())
        )
        self.dead_letter_paths = PartitionPaths("%Y/%m/%d/%H")
        self.writers = [r.writer for r in self.routes] + [self.dead_letter]
        self.journal = Journal(self.state_dir)
        # Claimed high-water marks: the journal's durable ones plus those of batches written and
        # waiting for their fsync round. Duplicates are judged on these; snapshots persist only
        # the journal's own, so a mark is never durable before its batch is.
        self.high_water: dict[str, int] = {}
        self._route_cache: dict[tuple[str, str | None, str | None], list[_Route]] = {}
        # group commit
        self._pending_records: list[_PendingRecord] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None
        self._broken: str | None = None
        # The last staging/journal write failure and its size in bytes, until a write succeeds.
        self._write_failure: tuple[str, int] | None = None
        self._syncing = False  # an fsync round is using the journal's handle
        self._closed = False

    def _min_age(self) -> float:
        return min(r.dest.roll.max_age for r in self.routes) if self.routes else 60.0

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover what a killed process left, publish it, and open a fresh journal."""
        self.journal.load()
        for writer in self.writers:
            for path, relpath in writer.leftover_staging():
                keep = self.journal.sizes.get(f"{writer.name}/{relpath}", 0)
                size = path.stat().st_size
                if size > keep:
                    # Lines of a batch that was never acknowledged: the sender sends it again.
                    log.info("recovery: cutting unacknowledged tail", file=relpath, bytes=size - keep)
                    with open(path, "r+b") as fh:
                        fh.truncate(keep)
                if keep == 0:
                    path.unlink()
                    continue
                staging = StagingFile(relpath, path, None, 0.0, size=keep, synced=keep, journaled=keep)
                writer.to_publish.append(staging)
            published = writer.publish_pending()
            if writer.to_publish:
                log.warning(
                    "recovery: staging files left by an earlier process cannot be published yet; "
                    "kept and retried",
                    destination=writer.name,
                    files=len(writer.to_publish),
                    error=writer.stats.last_error,
                )
            if published:
                log.info("recovery: published staging files left by an earlier process", files=published)
        # The sizes of files still waiting to be published stay in the new snapshot: without
        # them, the next start would take their acknowledged lines for unacknowledged ones.
        self.journal.compact(self._staged_sizes(), ttl=self.config.idempotence_ttl)
        self.high_water = dict(self.journal.high_water)

    def close(self) -> None:
        """Publish everything (a clean shutdown leaves no staging file behind)."""
        if self._closed:
            return
        self._closed = True
        if self.fsync and not self._broken:
            _fsync_all([s for w in self.writers for s in w.live_files()])
            self._write_pending_records()
        for writer in self.writers:
            writer.due(time.monotonic(), force=True)
            writer.publish_pending()
            writer.close()
        self.journal.close()

    # ---------------------------------------------------------------------------- routing

    def routes_for(self, topic: str, routing_key: str | None, token_name: str | None) -> list[_Route]:
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

    # ----------------------------------------------------------------------------- ingest

    def check_range(self, ctx: RequestContext) -> IngestResult | None:
        """Idempotence: a stored range is a duplicate, a partial overlap a conflict."""
        key = ctx.mark_key
        if key is None or ctx.range_end is None or ctx.range_start is None:
            return None
        high = self.high_water.get(key, 0)
        if ctx.range_end <= high:
            self.metrics.duplicates.inc()
            return IngestResult(duplicate=True)
        if ctx.range_start < high:
            return IngestResult(high_water=high)
        return None

    def ingest(self, items: list[Any], ctx: RequestContext, received: float) -> IngestResult:
        """Unwrap, route and write one request's items. Raises `StorageUnavailable`."""
        pre = self.check_range(ctx)
        if pre is not None:
            return pre
        limits = self.config.limits
        server_ts = envelope.format_timestamp(received)
        default_topic = self.config.default_topic
        result = IngestResult()
        buffers: dict[tuple[int, str], list[bytes]] = {}
        dead: list[bytes] = []
        topic_counts: dict[str, int] = {}
        out_counts: dict[tuple[str, str], int] = {}
        unrouted = 0
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
                dead.append(self._dead_line(item, exc.reason, exc.detail, ctx, server_ts))
                continue
            routes = self.routes_for(u.topic, u.routing_key, ctx.token_name)
            line = envelope.stored_line(u, ctx.orig_address, server_ts, ctx.node)
            if not routes:
                unrouted += 1
                dead.append(
                    self._dead_line(
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
                if route.dest.partition_time == "event":
                    if epoch is None:
                        epoch = envelope.event_epoch(u.event_time) if u.event_time is not None else None
                        if epoch is None:
                            epoch = received
                    when = epoch
                else:
                    when = received
                key = (id(route), route.paths.render(u.topic, u.routing_key, when))
                buf = buffers.get(key)
                if buf is None:
                    buffers[key] = buf = []
                buf.append(line)
                out_key = (route.dest.name, u.topic)
                out_counts[out_key] = out_counts.get(out_key, 0) + 1
            topic_counts[u.topic] = topic_counts.get(u.topic, 0) + 1
            result.accepted += 1

        self._refuse_if_blocked(buffers, dead)
        self._write(buffers, dead, ctx, received)
        # Metrics once per batch and label, not per event.
        for topic, n in topic_counts.items():
            self.metrics.events_in.labels(topic).inc(n)
        for (dest_name, topic), n in out_counts.items():
            self.metrics.events_out.labels(dest_name, topic).inc(n)
        for reason, n in result.reasons.items():
            self.metrics.invalid.labels(reason).inc(n)
        if unrouted:
            self.metrics.unrouted.inc(unrouted)
        return result

    def _dead_line(
        self, item: Any, reason: str, detail: str, ctx: RequestContext, server_ts: str, stored: bool = False
    ) -> bytes:
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

    def _refuse_if_blocked(self, buffers: dict[tuple[int, str], list[bytes]], dead: list[bytes]) -> None:
        """503 for this request only if one of its lines goes where writes cannot go now: a
        destination failing to publish with a backlog must not block the healthy ones."""
        if self._broken:
            raise StorageUnavailable(self._broken)
        writers = {self._route_by_id[route_id].writer for route_id, _ in buffers}
        if dead:
            writers.add(self.dead_letter)
        for writer in writers:
            if writer.blocked:
                raise StorageUnavailable(
                    f"destination {writer.name!r} cannot be written: {writer.stats.last_error}"
                )

    def _write(
        self,
        buffers: dict[tuple[int, str], list[bytes]],
        dead: list[bytes],
        ctx: RequestContext,
        received: float,
    ) -> None:
        """Append one request's lines, journal them (``flush``) or queue their record for the next
        fsync round, then claim the range. Every step that can fail comes before the claim, and a
        failure undoes the appends: a 503'd batch leaves no line and no mark behind."""
        touched: list[tuple[PartitionedWriter, StagingFile, int]] = []
        route_by_id = self._route_by_id
        key = ctx.mark_key
        has_range = key is not None and ctx.range_end is not None
        try:
            for (route_id, partition), lines in buffers.items():
                writer = route_by_id[route_id].writer
                staging, size_before = writer.append(partition, b"\n".join(lines) + b"\n")
                touched.append((writer, staging, size_before))
            if dead:
                partition = self.dead_letter_paths.render("", None, received)
                staging, size_before = self.dead_letter.append(partition, b"\n".join(dead) + b"\n")
                touched.append((self.dead_letter, staging, size_before))
            files = {f"{w.name}/{s.relpath}": s.size for w, s, _ in touched}
            stagings = [(s, s.size) for _, s, _ in touched]
            if (files or has_range) and not self.fsync:
                self.journal.append([(key if has_range else None, ctx.range_end, files)])
        except (StorageUnavailable, OSError) as exc:
            self.metrics.storage_errors.inc()
            for writer, staging, size_before in reversed(touched):
                writer.rollback(staging, size_before)
            if isinstance(exc, OSError):
                exc = StorageUnavailable(f"cannot write the collector journal: {exc.strerror or exc}")
            attempted = sum(len(line) + 1 for lines in buffers.values() for line in lines)
            self._write_failure = (str(exc), attempted + sum(len(line) + 1 for line in dead))
            raise exc from None
        self._write_failure = None
        if dead:
            self.metrics.dead_lettered.inc(len(dead))
        if has_range:
            # Claimed now (after the last step that can fail), so that a concurrent retry of this
            # range is seen as a duplicate.
            assert key is not None and ctx.range_end is not None
            if ctx.range_end > self.high_water.get(key, 0):
                self.high_water[key] = ctx.range_end
        if not files and not has_range:
            return
        if self.fsync:
            self._pending_records.append((key if has_range else None, ctx.range_end, files, stagings))
        else:
            _mark_journaled(stagings)

    def _write_pending_records(self) -> None:
        """Journal the records waiting for an fsync round (whose data is already fsynced)."""
        records, self._pending_records = self._pending_records, []
        self._journal_records(records)
        self.journal.fsync()
        self._mark_records_journaled(records)

    def _journal_records(self, records: list[_PendingRecord]) -> None:
        if not records:
            return
        try:
            self.journal.append([(src, end, files) for src, end, files, _ in records])
        except OSError as exc:
            raise StorageUnavailable(f"cannot write the collector journal: {exc.strerror or exc}") from exc

    @staticmethod
    def _mark_records_journaled(records: list[_PendingRecord]) -> None:
        for _, _, _, stagings in records:
            _mark_journaled(stagings)

    # ------------------------------------------------------------------------- durability

    async def commit(self) -> None:
        """Return once everything written so far is durable (group commit under fsync)."""
        if self._broken:
            raise StorageUnavailable(self._broken)
        if not self.fsync:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake.set()
        if self._syncer is None or self._syncer.done():
            self._syncer = asyncio.create_task(self._sync_loop())
        await fut

    async def _sync_loop(self) -> None:
        """One fsync round serves every request that wrote before the round began."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            records, self._pending_records = self._pending_records, []
            dirty = [s for w in self.writers for s in w.live_files() if s.handle is not None]
            self._syncing = True
            try:
                await asyncio.to_thread(_fsync_all, dirty)
                self._journal_records(records)
                await asyncio.to_thread(self.journal.fsync)
                # Only now: a file is never published past what a durable record covers.
                self._mark_records_journaled(records)
            except (OSError, ValueError, StorageUnavailable) as exc:
                # After a failed fsync the kernel may have dropped the dirty pages: nothing written
                # since the last good round can be trusted, so stop acknowledging until a restart
                # (whose recovery cuts the staging files back to the last journaled sizes).
                self._broken = f"fsync failed, restart the collector: {exc}"
                self.metrics.storage_errors.inc()
                log.error("fsync failed; refusing writes until restart", error=str(exc))
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(StorageUnavailable(self._broken))
                continue
            finally:
                self._syncing = False
            self.metrics.fsync_rounds.inc()
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # -------------------------------------------------------------------------- rolling

    async def maintain(self) -> None:
        """Roll and publish due files; retry failed publications; compact the journal."""
        now = time.monotonic()
        if self._write_failure:
            await asyncio.to_thread(self._probe_staging)
        if self.fsync and self._pending_records and not self._broken:
            with contextlib.suppress(StorageUnavailable):
                await self.commit()
        busy = False
        for writer in self.writers:
            writer.due(now)
            if writer.to_publish:
                busy = True
        if busy:
            await asyncio.to_thread(self._publish_all)
        if self.journal.wants_compaction and not self._pending_records and not self._syncing:
            # In the loop thread, between requests: a request must never write a record to the
            # journal being swapped. (A small snapshot; it happens once per 32 MiB of journal.)
            for source in self.journal.compact(self._staged_sizes(), ttl=self.config.idempotence_ttl):
                self.high_water.pop(source, None)
        self.metrics.staging_bytes.set(
            sum(s.size for w in self.writers for s in [*w.live_files(), *w.to_publish])
        )

    def _publish_all(self) -> None:
        for writer in self.writers:
            if writer.to_publish:
                n = writer.publish_pending()
                if n:
                    self.metrics.files_published.labels(writer.name).inc(n)

    def _staged_sizes(self) -> dict[str, int]:
        """Acknowledged size of every staging file not yet published, for a journal snapshot."""
        return {f"{w.name}/{s.relpath}": s.journaled for w in self.writers for s in w.staged_files()}

    def storage_problem(self) -> str | None:
        """Why some writes cannot be taken now (for ``/healthz``), or None.

        A failed fsync round; the last staging or journal write failing (until a write or the
        maintenance probe succeeds); a destination failing to publish with a backlog."""
        if self._broken:
            return self._broken
        if self._write_failure:
            return self._write_failure[0]
        for writer in self.writers:
            if writer.blocked:
                return f"destination {writer.name!r} cannot be written: {writer.stats.last_error}"
        return None

    def _probe_staging(self) -> None:
        """After a failed write, ask for as much space as the failed batch needed: once a write of
        that size would succeed again, ``/healthz`` says so, with no request needed to show it.
        (A smaller probe would call a disk healthy that still refuses every real batch.)"""
        failure = self._write_failure
        if failure is None:
            return
        probe = self.state_dir / "staging" / ".probe.tmp"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, max(failure[1], 4096))
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("staging still cannot be written", error=str(exc))
            return
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        if self._write_failure is failure:  # not a newer failure, from a request meanwhile
            self._write_failure = None


def _mark_journaled(stagings: list[tuple[StagingFile, int]]) -> None:
    for staging, size in stagings:
        if size > staging.journaled:
            staging.journaled = size


def _fsync_all(files: list[StagingFile]) -> None:
    for staging in files:
        handle = staging.handle
        if handle is not None:
            with contextlib.suppress(ValueError):
                os.fsync(handle.fileno())
