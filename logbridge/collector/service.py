"""The collector as the event loop sees it: every call awaits another thread, none blocks.

Who does what:

- the event loop: reads bodies, answers, and parses a body small enough that a thread hop would
  cost more than parsing it (`INLINE_BYTES`, not compressed);
- the ingest pool (`INGEST_WORKERS` threads): decodes, splits, parses and routes bigger bodies —
  pure work on no shared state;
- the writer thread (`WriterThread`): everything that touches staging files, the journal and the
  high-water marks, one job at a time;
- a publisher thread per destination (``_publisher_pool``): one publication round of that
  destination at a time, started by the maintenance round and not awaited by it, so that rolls
  and journal compactions go on while a slow store takes its uploads (and a store that is down
  holds up no other destination); a round uploads several files at once (`PartitionedWriter`);
- a maintenance thread (``asyncio.to_thread``): the staging probe and journal snapshots, which
  touch only what the writer thread handed over.

Publishing destinations (`Publisher`: NATS JetStream) are served here, on the event loop, in
between: a request's lines for them are published and every message acknowledged *before* the
writer thread stores the rest and claims the range. Publishing first is what makes a failure
harmless: a 503 leaves at most messages a retry re-sends under the same ids (JetStream drops
them as duplicates), never a claimed range whose lines are missing; and the writer thread,
which serves every request, never waits for NATS.

While a request's messages wait for their acks its range is not claimed yet, so the loop keeps
the ranges in flight (`_inflight`): the same range again (a sender's retry after a timeout)
goes ahead — its messages are duplicates and the writer thread answers it ``duplicate`` once
the first is stored — and a range that overlaps one in flight otherwise is answered 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import structlog

from ..errors import (
    BodyTooLarge,
    DestinationFull,
    DestinationTimeout,
    DestinationUnreachable,
    StorageUnavailable,
)
from ..sinks.base import BatchOrigin, Publisher
from . import body as bodies
from .core import Collector
from .ingest import IngestResult, Prepared, RequestContext
from .metrics import Metrics
from .writer import WriterThread

log = structlog.get_logger("logbridge.collector")

INLINE_BYTES = 16 * 1024  # ~50 events, well under a millisecond of parsing
PRESTAGE_BODY_BYTES = 1024 * 1024  # a batch this big writes its big chunks itself (`Collector.prestage`)
INGEST_WORKERS = 2  # a second one so that a mid-size batch does not queue behind a 16 MiB one


class CollectorService:
    def __init__(self, collector: Collector):
        self.collector = collector
        self.limits = collector.config.limits
        self.writer = WriterThread(collector)
        self._pool = ThreadPoolExecutor(INGEST_WORKERS, thread_name_prefix="logbridge-ingest")
        self.publishers: dict[int, Publisher] = {
            r.index: cast(Publisher, r.sink) for r in collector.routes if r.publishes
        }
        # mark key → ranges whose messages are being published (event loop only)
        self._inflight: dict[str, list[tuple[int, int]]] = {}
        self._audits: set[asyncio.Task[IngestResult]] = set()
        # One thread per sink at most: a sink runs one publication round at a time.
        self._publisher_pool = ThreadPoolExecutor(
            max(1, len(collector.sinks)), thread_name_prefix="logbridge-publisher"
        )
        self._publishing: dict[int, asyncio.Future[int]] = {}  # sink index → its round under way

    @property
    def metrics(self) -> Metrics:
        return self.collector.metrics

    async def start(self) -> None:
        """Recover and open the journal, on the writer thread (it owns them from now on); connect
        the publishers."""
        self.writer.start()
        await self.writer.submit(self.collector.start)
        for publisher in self.publishers.values():
            await publisher.start()

    async def close(self) -> None:
        """Publish everything and stop the threads."""
        if self._audits:  # authfail events on their way to a publisher: let them finish
            await asyncio.gather(*self._audits, return_exceptions=True)
        try:
            # Rounds under way end first (their files are then published by close, or stay
            # staged for the next start when the store is still down).
            await asyncio.gather(*self._publishing.values(), return_exceptions=True)
            await self.writer.submit(self.collector.close)
        finally:
            for publisher in self.publishers.values():
                with contextlib.suppress(Exception):
                    await publisher.close()
            self.writer.stop()
            self._pool.shutdown(wait=True)
            self._publisher_pool.shutdown(wait=True)

    # ---------------------------------------------------------------------------- ingest

    async def ingest(
        self, raw: bytes, encoding: str | None, content_type: str | None, ctx: RequestContext
    ) -> IngestResult:
        """Decode, parse and store one body; returns once it is durable (per ``durability``).

        Raises `BodyError` (nothing stored) or `StorageUnavailable` (nothing stored, no mark moved)."""
        received = time.time()
        if len(raw) <= INLINE_BYTES and not encoding:
            prepared = self._prepare(raw, encoding, content_type, ctx, received)
        else:
            prepared = await asyncio.wrap_future(
                self._pool.submit(self._prepare, raw, encoding, content_type, ctx, received)
            )
        if not self.publishers:
            return await self.writer.submit(self.collector.store, prepared, durable=True)
        inflight = self._claim_inflight(prepared)
        try:
            if prepared.to_publish:
                await self._publish(prepared)
            return await self.writer.submit(self.collector.store, prepared, durable=True)
        finally:
            if inflight is not None:
                self._release_inflight(*inflight)

    def _claim_inflight(self, prepared: Prepared) -> tuple[str, tuple[int, int]] | None:
        """Refuse (503) a range that overlaps one being published, unless it is the same range;
        record this one if it has lines to publish. Returns what to release."""
        ctx = prepared.ctx
        key = ctx.mark_key
        if key is None or ctx.range_start is None or ctx.range_end is None:
            return None
        span = (ctx.range_start, ctx.range_end)
        flying = self._inflight.get(key)
        if flying:
            for start, end in flying:
                if (start, end) != span and span[0] < end and start < span[1]:
                    raise StorageUnavailable(
                        f"bytes {start}-{end} of this source are being published by another request; "
                        "send this range again once that one is answered"
                    )
        if not prepared.to_publish:
            return None
        self._inflight.setdefault(key, []).append(span)
        return key, span

    def _release_inflight(self, key: str, span: tuple[int, int]) -> None:
        flying = self._inflight[key]
        flying.remove(span)
        if not flying:
            del self._inflight[key]

    async def _publish(self, prepared: Prepared) -> None:
        """Publish a request's groups to each publisher (together); returns once every message
        is acknowledged. Raises `StorageUnavailable` (503) or `BodyTooLarge` (413)."""
        ctx = prepared.ctx
        origin = BatchOrigin(ctx.mark_key, ctx.source, ctx.range_start, ctx.range_end)
        by_route: dict[int, list[tuple[str, bytes]]] = {}
        for (index, partition), data in prepared.to_publish.items():
            by_route.setdefault(index, []).append((partition, data))
        outcomes = await asyncio.gather(
            *(self._publish_to(self.publishers[index], groups, origin) for index, groups in by_route.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        prepared.published = True

    async def _publish_to(
        self, publisher: Publisher, groups: list[tuple[str, bytes]], origin: BatchOrigin
    ) -> None:
        metrics = self.metrics
        started = time.perf_counter()
        try:
            published = await publisher.publish_batch(groups, origin)
        except (StorageUnavailable, BodyTooLarge) as exc:
            metrics.publish_failures.labels(publisher.name, _failure_reason(exc)).inc()
            raise
        metrics.publish_latency.labels(publisher.name).observe(time.perf_counter() - started)
        metrics.messages_published.labels(publisher.name).inc(published.messages)
        if published.duplicates:
            metrics.messages_duplicate.labels(publisher.name).inc(published.duplicates)

    def _prepare(
        self, raw: bytes, encoding: str | None, content_type: str | None, ctx: RequestContext, received: float
    ) -> Prepared:
        data = bodies.decode(raw, encoding, self.limits.max_body_bytes)
        prepared = self.collector.prepare_items(bodies.split(data, content_type), ctx, received)
        if len(data) >= PRESTAGE_BODY_BYTES:
            self.collector.prestage(prepared)
        return prepared

    def audit(self, event: dict[str, Any], ctx: RequestContext) -> None:
        """Store one event the collector writes itself, without waiting for it."""
        prepared = self.collector.prepare_items([event], ctx, time.time())
        if prepared.to_publish:  # published first, as any request's lines
            task = asyncio.get_running_loop().create_task(self._publish_and_store(prepared))
            self._audits.add(task)  # a task nobody references may be collected before it ends
            task.add_done_callback(self._audits.discard)
            task.add_done_callback(_log_audit_failure)
            return
        future = self.writer.submit(self.collector.store, prepared)
        future.add_done_callback(_log_audit_failure)

    async def _publish_and_store(self, prepared: Prepared) -> IngestResult:
        await self._publish(prepared)
        return await self.writer.submit(self.collector.store, prepared)

    # ----------------------------------------------------------------------- maintenance

    async def maintain(self) -> None:
        """Roll and publish due files; retry failed publications; compact the journal."""
        collector, writer = self.collector, self.writer
        failure = collector.write_failure
        if failure is not None:
            passed: bool = await asyncio.to_thread(collector.probe_staging, failure)
            if passed:
                await writer.submit(collector.clear_write_failure, failure)
        if await writer.submit(collector.roll_due):
            self._start_publishing()
        snapshot = await writer.submit(collector.begin_compaction)
        if snapshot is not None:
            expired = None
            try:
                expired = await asyncio.to_thread(collector.write_snapshot, snapshot)
            finally:
                # Always: the journal's state is the snapshot's until then, written or not.
                await asyncio.shield(writer.submit(collector.finish_compaction, snapshot, expired))

    def _start_publishing(self) -> None:
        """A publication round for each sink with files waiting and no round under way."""
        loop = asyncio.get_running_loop()
        for index, sink in enumerate(self.collector.sinks):
            running = self._publishing.get(index)
            if (running is not None and not running.done()) or not sink.wants_publish:
                continue
            future = loop.run_in_executor(self._publisher_pool, self.collector.publish_sink, sink)
            future.add_done_callback(_log_publisher_failure)
            self._publishing[index] = future

    def storage_problem(self) -> str | None:
        return self.collector.storage_problem()


def _failure_reason(exc: BaseException) -> str:
    for kind, reason in (
        (DestinationUnreachable, "unreachable"),
        (DestinationFull, "full"),
        (DestinationTimeout, "timeout"),
        (BodyTooLarge, "too_large"),
    ):
        if isinstance(exc, kind):
            return reason
    return "error"


def _log_audit_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, StorageUnavailable):
        log.error("cannot store authfail event", error=str(exc))
    elif exc is not None:
        log.error("cannot store authfail event", error=f"{type(exc).__name__}: {exc}")


def _log_publisher_failure(future: asyncio.Future[Any]) -> None:
    """A round raises only on a bug (store errors keep files queued): say so, the next round retries."""
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("publication round failed", error=f"{type(exc).__name__}: {exc}")
