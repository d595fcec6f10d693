"""The collector's state machine: check the range → append to sinks → journal → claim.

Owned by one thread (the writer thread, `logbridge.collector.writer`): every method here that
touches the sinks, the journal or the high-water marks runs on it, one call at a time, so the
idempotence check, the appends and the journal record of one request can never interleave
with another's. Nothing here knows asyncio; `Collector.ingest` runs the whole path on the
calling thread (tests, tools).

Durability: with ``durability: flush`` a batch's journal record is written before `store`
returns. With ``fsync`` the records wait in ``_pending_records`` and `sync_round` — called by
the writer thread after each run of requests — fsyncs every sink, journals them, fsyncs the
journal and only then acknowledges them to the sinks: a *group commit* serving every request
stored before it.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, cast

import structlog

from ..errors import StorageUnavailable
from ..sinks.base import Publisher, Receipt, Sink, build_sink
from ..sinks.filesystem import FilesystemSink
from ..sinks.partition import PartitionPaths
from .config import CollectorServerConfig
from .ingest import Ingest, IngestResult, Prepared, RequestContext, Route
from .journal import Journal, Snapshot
from .metrics import Metrics
from .stats import LiveStats, tail

log = structlog.get_logger("logbridge.collector")

DEAD_LETTER = "_dead-letter"
# A batch's chunk (one partition's lines) this big is written off the writer thread, in a file
# of its own; smaller ones are appended to the partition's current file (fewer, bigger files).
PRESTAGE_MIN_BYTES = 64 * 1024

# (idempotence key, range end, journal key → size, receipts): a record waiting for its fsync round.
_PendingRecord = tuple[str | None, int | None, dict[str, int], list[Receipt]]

__all__ = ["Collector", "IngestResult", "RequestContext"]


class Collector:
    def __init__(self, config: CollectorServerConfig, metrics: Metrics | None = None):
        self.config = config
        self.metrics = metrics or Metrics()
        self.state_dir = config.resolved_state_dir()
        self.fsync = config.durability == "fsync"
        staging = self.state_dir / "staging"
        self.routes = [
            Route(i, dest, build_sink(dest, staging, f"destinations[{i}] ({dest.name})"))
            for i, dest in enumerate(config.destinations)
        ]
        # Publishers (NATS) take a request's lines from the service, before the writer thread
        # stores the rest; they have no staging, journal or recovery (`CollectorService`).
        self.publishers: list[Publisher] = [cast(Publisher, r.sink) for r in self.routes if r.publishes]
        min_age = min((getattr(r.dest, "roll", None) or _NO_ROLL).max_age for r in self.routes)
        self.dead_letter: Sink = FilesystemSink(
            DEAD_LETTER,
            config.dead_letter,
            staging / DEAD_LETTER,
            partitions=PartitionPaths("%Y/%m/%d/%H"),
            event_time=False,
            max_age=min(60.0, min_age),
            key="dead_letter",
        )
        self.sinks: list[Sink] = [cast(Sink, r.sink) for r in self.routes if not r.publishes]
        self.sinks.append(self.dead_letter)
        self.prepare = Ingest(self.routes, config.limits, config.default_topic, self.dead_letter.partitions)
        self.journal = Journal(
            self.state_dir,
            compact_bytes=config.journal.compact_bytes,
            compact_every=config.journal.compact_every,
        )
        # Claimed high-water marks: the journal's durable ones plus those of batches written and
        # waiting for their fsync round. Duplicates are judged on these; snapshots persist only
        # the journal's own, so a mark is never durable before its batch is.
        self.high_water: dict[str, int] = {}
        self._pending_records: list[_PendingRecord] = []
        self._broken: str | None = None
        # The last staging/journal write failure and its size in bytes, until a write succeeds.
        self.write_failure: tuple[str, int] | None = None  # (why, bytes the failed batch needed)
        self._compacting: Snapshot | None = None
        self._closed = False
        # The operator page's numbers (``ui`` on), told of every batch stored; None costs nothing.
        self.stats: LiveStats | None = None

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover what a killed process left and open a fresh journal.

        The recovered staging files are queued, not published here: the publisher takes them
        at its first round, in the background (`publish_all`, `publish_sink`), so a restart
        neither waits for a backlog of uploads nor for a store that is down before it answers."""
        self.journal.load()
        for sink in self.sinks:
            sink.recover(self.journal.sizes)
            if sink.pending:
                log.info(
                    "recovery: staging files left by an earlier process are queued for publication",
                    destination=sink.name,
                    files=sink.pending,
                )
        # The sizes of files still waiting to be published stay in the new snapshot: without
        # them, the next start would take their acknowledged lines for unacknowledged ones.
        self.journal.compact(self._staged_sizes(), ttl=self.config.idempotence_ttl)
        self.high_water = dict(self.journal.high_water)

    def close(self) -> None:
        """Publish everything (a clean shutdown leaves no staging file behind)."""
        if self._closed:
            return
        self._closed = True
        if self.fsync and not self._broken and self._pending_records:
            with contextlib.suppress(StorageUnavailable):
                self.sync_round()
        for sink in self.sinks:
            sink.roll(time.monotonic(), force=True)
            sink.publish()
            sink.close()
        self.journal.close()

    # ----------------------------------------------------------------------------- ingest

    def check_range(self, ctx: RequestContext, *, count: bool = True) -> IngestResult | None:
        """Idempotence: a stored range is a duplicate, a partial overlap a conflict."""
        key = ctx.mark_key
        if key is None or ctx.range_end is None or ctx.range_start is None:
            return None
        high = self.high_water.get(key, 0)
        if ctx.range_end <= high:
            if count:
                self.metrics.duplicates.inc()
            return IngestResult(duplicate=True)
        if ctx.range_start < high:
            return IngestResult(high_water=high)
        return None

    def prepare_items(self, items: list[Any], ctx: RequestContext, received: float) -> Prepared:
        """`Ingest` on any thread. A range that already looks stored is not parsed (a read of the
        marks the writer thread owns: only a hint, `store` decides)."""
        if self.check_range(ctx, count=False) is not None:
            return Prepared(ctx, received, skipped=items)
        return self.prepare(items, ctx, received)

    def ingest(self, items: list[Any], ctx: RequestContext, received: float) -> IngestResult:
        """Unwrap, route and write one request's items on this thread (staging destinations
        only: publishers need the event loop, `CollectorService`). Raises `StorageUnavailable`."""
        if self.publishers:
            raise RuntimeError("a collector with publishing destinations ingests through CollectorService")
        return self.store(self.prepare_items(items, ctx, received))

    def prestage(self, prepared: Prepared) -> None:
        """Write the big chunks of a big batch to files of their own (any thread, before `store`):
        the writer thread then only adopts them, and a single event never waits behind 16 MiB
        of appends. Best effort: a chunk that cannot be prestaged stays for `store` to append
        (which meets the same error and handles it as any failed write)."""
        for key, data in list(prepared.chunks.items()):
            if len(data) < PRESTAGE_MIN_BYTES:
                continue
            try:
                prepared.prestaged.append(cast(Sink, self.routes[key[0]].sink).prestage(key[1], data))
            except StorageUnavailable:
                return
            del prepared.chunks[key]
            if self.stats is not None:
                prepared.tails[key] = tail(data)

    def store(self, prepared: Prepared) -> IngestResult:
        """Write one prepared request (writer thread). Raises `StorageUnavailable`."""
        try:
            if self._broken:
                raise StorageUnavailable(self._broken)
            pre = self.check_range(prepared.ctx)
            if pre is not None:
                _discard(prepared.prestaged)
                return pre
            if prepared.skipped is not None:  # the hint was stale: parse here, under the ownership
                prepared = self.prepare(prepared.skipped, prepared.ctx, prepared.received)
            if prepared.to_publish and not prepared.published:
                # Only after a stale hint: the range looked stored when the request came in (so
                # nothing was published) and has expired since. The sender's retry goes through.
                raise StorageUnavailable(
                    "this request's range expired from the idempotence state while it was received; "
                    "send it again"
                )
            self._refuse_if_blocked(prepared)
        except BaseException:
            _discard(prepared.prestaged)
            raise
        self._write(prepared)
        if self.stats is not None:
            try:
                self.stats.record(prepared)
            except Exception as exc:  # the batch is stored: the page's numbers must not fail it
                log.error("operator page stats failed", error=f"{type(exc).__name__}: {exc}")
        # Metrics once per batch and label, not per event.
        for topic, n in prepared.topic_counts.items():
            self.metrics.events_in.labels(topic).inc(n)
        for (dest_name, topic), n in prepared.out_counts.items():
            self.metrics.events_out.labels(dest_name, topic).inc(n)
        for reason, n in prepared.result.reasons.items():
            self.metrics.invalid.labels(reason).inc(n)
        if prepared.unrouted:
            self.metrics.unrouted.inc(prepared.unrouted)
        return prepared.result

    def _refuse_if_blocked(self, prepared: Prepared) -> None:
        """503 for this request only if one of its lines goes where writes cannot go now: a
        destination failing to publish with a backlog must not block the healthy ones."""
        sinks = {cast(Sink, self.routes[index].sink) for index, _ in prepared.chunks}
        sinks.update(receipt.sink for receipt in prepared.prestaged)
        if prepared.dead:
            sinks.add(self.dead_letter)
        for sink in sinks:
            if sink.blocked:
                raise StorageUnavailable(sink.problem() or f"destination {sink.name!r} cannot be written")

    def _write(self, prepared: Prepared) -> None:
        """Append one request's lines, journal them (``flush``) or queue their record for the next
        fsync round, then claim the range. Every step that can fail comes before the claim, and a
        failure undoes the appends: a 503'd batch leaves no line and no mark behind."""
        receipts: list[Receipt] = []
        ctx = prepared.ctx
        key = ctx.mark_key
        has_range = key is not None and ctx.range_end is not None
        routes = self.routes
        files: dict[str, int] = {}
        try:
            for receipt in prepared.prestaged:
                receipt.sink.adopt(receipt)
                receipts.append(receipt)  # from here on, a failure rolls it back like an append
            for (index, partition), data in prepared.chunks.items():
                receipts.append(cast(Sink, routes[index].sink).append(partition, data))
            if prepared.dead:
                receipts.append(self.dead_letter.append(prepared.dead_partition, prepared.dead_chunk))
            files = {r.journal_key: r.size for r in receipts if r.journal_key is not None}
            if (files or has_range) and not self.fsync:
                self.journal.append([(key if has_range else None, ctx.range_end, files)])
        except (StorageUnavailable, OSError) as exc:
            self.metrics.storage_errors.inc()
            for receipt in reversed(receipts):
                receipt.sink.rollback(receipt)
            if isinstance(exc, OSError):
                exc = StorageUnavailable(f"cannot write the collector journal: {exc.strerror or exc}")
            attempted = sum(len(data) for data in prepared.chunks.values()) + len(prepared.dead_chunk)
            attempted += sum(receipt.size for receipt in prepared.prestaged)
            self.write_failure = (str(exc), attempted)
            raise exc from None
        self.write_failure = None
        if prepared.dead:
            self.metrics.dead_lettered.inc(len(prepared.dead))
        if has_range:
            # Claimed now (after the last step that can fail), so that a retry of this range
            # is seen as a duplicate.
            assert key is not None and ctx.range_end is not None
            if ctx.range_end > self.high_water.get(key, 0):
                self.high_water[key] = ctx.range_end
        if not files and not has_range:
            return
        if self.fsync:
            self._pending_records.append((key if has_range else None, ctx.range_end, files, receipts))
        else:
            _acknowledge(receipts)

    # ------------------------------------------------------------------------- durability

    @property
    def needs_sync(self) -> bool:
        return bool(self._pending_records)

    def sync_round(self) -> None:
        """One fsync round for every record stored since the last (writer thread). Raises
        `StorageUnavailable`, after which nothing more is acknowledged until a restart."""
        if self._broken:
            raise StorageUnavailable(self._broken)
        records, self._pending_records = self._pending_records, []
        try:
            for sink in self.sinks:
                sink.sync()
            if records:
                self.journal.append([(src, end, files) for src, end, files, _ in records])
            self.journal.fsync()
        except (OSError, ValueError, StorageUnavailable) as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing written
            # since the last good round can be trusted, so stop acknowledging until a restart
            # (whose recovery cuts the staging files back to the last journaled sizes).
            self._broken = f"fsync failed, restart the collector: {exc}"
            self.metrics.storage_errors.inc()
            log.error("fsync failed; refusing writes until restart", error=str(exc))
            raise StorageUnavailable(self._broken) from None
        # Only now: a file is never published past what a durable record covers.
        for _, _, _, receipts in records:
            _acknowledge(receipts)
        self.metrics.fsync_rounds.inc()

    # -------------------------------------------------------------------------- rolling

    def roll_due(self) -> bool:
        """Close the files due for publication (writer thread); True if any wait for a publisher."""
        now = time.monotonic()
        for sink in self.sinks:
            sink.roll(now)
            self.metrics.files_waiting.labels(sink.name).set(sink.pending)
        self.metrics.staging_bytes.set(sum(s.staging_bytes() for s in self.sinks))
        return any(s.wants_publish for s in self.sinks)

    def publish_all(self) -> None:
        """Publish what `roll_due` closed, one sink after the other (tools and tests; the
        service runs `publish_sink` per sink, so that a slow store does not hold up the others)."""
        for sink in self.sinks:
            self.publish_sink(sink)

    def publish_sink(self, sink: Sink) -> int:
        """One publication round of ``sink`` (a publisher thread: sinks guard their queues)."""
        if not sink.wants_publish:
            return 0
        n = sink.publish()
        if n:
            self.metrics.files_published.labels(sink.name).inc(n)
        return n

    def begin_compaction(self) -> Snapshot | None:
        """Start a journal compaction if one is due and none runs (writer thread)."""
        if self._compacting is not None or not self.journal.wants_compaction:
            return None
        try:
            self._compacting = self.journal.begin_compaction(self._staged_sizes())
        except OSError as exc:
            log.error("journal compaction cannot start", error=str(exc))
        return self._compacting

    def write_snapshot(self, snapshot: Snapshot) -> list[str] | None:
        """The slow part of a compaction (any thread); None if it failed (retried later)."""
        try:
            return self.journal.write_snapshot(snapshot, ttl=self.config.idempotence_ttl)
        except OSError as exc:
            log.error("journal snapshot cannot be written; records stay in the journal", error=str(exc))
            return None

    def finish_compaction(self, snapshot: Snapshot, expired: list[str] | None) -> None:
        """Forget the sources the snapshot expired (writer thread)."""
        self._compacting = None
        for source in self.journal.finish_compaction(snapshot, expired):
            self.high_water.pop(source, None)
        self.metrics.journal_compactions.inc()

    def _staged_sizes(self) -> dict[str, int]:
        """Acknowledged size of every staged piece not yet published, for a journal snapshot."""
        sizes: dict[str, int] = {}
        for sink in self.sinks:
            sizes.update(sink.staged_sizes())
        return sizes

    # --------------------------------------------------------------------------- health

    def storage_problem(self) -> str | None:
        """Why some writes cannot be taken now (for ``/healthz``), or None. Any thread.

        A failed fsync round; the last staging or journal write failing (until a write or the
        maintenance probe succeeds); a destination failing to publish with a backlog; a
        publisher that cannot publish (NATS unreachable)."""
        if self._broken:
            return self._broken
        failure = self.write_failure
        if failure:
            return failure[0]
        for sink in self.sinks:
            problem = sink.problem()
            if problem:
                return problem
        for publisher in self.publishers:
            problem = publisher.problem()
            if problem:
                return problem
        return None

    def probe_staging(self, failure: tuple[str, int]) -> bool:
        """After a failed write, ask for as much space as the failed batch needed (any thread):
        True once a write of that size would succeed again. (A smaller probe would call a disk
        healthy that still refuses every real batch.)"""
        probe = self.state_dir / "staging" / ".probe.tmp"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, max(failure[1], 4096))
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("staging still cannot be written", error=str(exc))
            return False
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        return True

    def clear_write_failure(self, failure: tuple[str, int]) -> None:
        """The probe passed (writer thread): forget ``failure`` unless a newer one replaced it."""
        if self.write_failure is failure:
            self.write_failure = None


class _NoRoll:
    max_age = 60.0


_NO_ROLL = _NoRoll()


def _discard(receipts: list[Receipt]) -> None:
    for receipt in receipts:
        receipt.sink.discard(receipt)
    receipts.clear()


def _acknowledge(receipts: list[Receipt]) -> None:
    for receipt in receipts:
        receipt.sink.acknowledge((receipt,))
