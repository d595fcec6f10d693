"""``logbridge consume``: drain a JetStream stream into the partitioned store, exactly once.

One batch goes through a writer in this order (docs/nats.md, "Writers")::

    fetch                      up to fetch_batch messages from the durable pull consumer
    sort                       a message this writer's journal holds as staged: ack it, write nothing
    journal "claimed"          the sequences about to be claimed (so a restart can release them)
    claim                      create lbclaims.<stream>.c.<consumer>.<seq> = writer id, atomically;
                               a message another writer claimed is nak'd with claimed_delay
    append + journal           the lines of the claimed messages, then one journal record: the
                               files' sizes, each message's sequence, ack subject and byte ranges
                               (fsynced under durability: fsync) — the lines are durable
    ack (confirmed)            JetStream's answer to each ack
    journal "done"             then the staging files may be published past those messages
    delete the claims

At start, before fetching, a writer settles what a killed predecessor left (`Consumer.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ..errors import ConfigError, StateDirInUse, StorageUnavailable
from ..fileio import LockFile, LockHolder
from ..sinks.nats import (
    _WAIT_BETWEEN_TRIES,
    RECONNECT_MAX_WAIT,
    _close_quietly,
    _value,
    connect_failure,
    connect_options,
    describe_error,
    reconnect_backoff,
    redact,
)
from .claims import HEARTBEAT_EVERY, Claims
from .config import WriterConfig
from .metrics import WriterMetrics
from .store import Planned, StoreWriter

log = structlog.get_logger("logbridge.consume")

T = TypeVar("T")
ACK_TIMEOUT = 5.0
BACKLOG_FETCH = 0.05  # the longest wait for a backlog's messages (see `_fetch`)
KEY = "nats"
# Test hook (documented in docs/nats.md, Writers): SIGKILL this process after the N-th batch is
# staged and journaled, before any of its acks is sent — the window exactly-once must survive.
KILL_BEFORE_ACK = "LOGBRIDGE_TEST_KILL_BEFORE_ACK"


def state_lock(config: WriterConfig) -> LockFile:
    return LockFile(config.resolved_state_dir() / "writer.lock")


def _busy(config: WriterConfig) -> Any:
    def busy(holder: LockHolder) -> StateDirInUse:
        return StateDirInUse(
            f"state_dir {config.resolved_state_dir()} is in use by another writer (pid {holder.pid or '?'}); "
            "stop it first, or give this writer its own state_dir"
        )

    return busy


def consumer_config(config: WriterConfig) -> ConsumerConfig:
    n = config.nats
    return ConsumerConfig(
        durable_name=n.consumer,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=n.ack_wait,
        max_ack_pending=n.max_ack_pending,
        max_deliver=-1,
        deliver_policy=DeliverPolicy.ALL,
    )


def consumer_conflicts(existing: ConsumerConfig) -> list[str]:
    problems = []
    if existing.deliver_subject:
        problems.append("it is a push consumer (deliver_subject set; writers pull)")
    if _value(existing.ack_policy) != "explicit":
        problems.append(f"ack_policy {_value(existing.ack_policy)} (expected explicit)")
    if existing.max_deliver not in (None, -1, 0):
        problems.append(
            f"max_deliver {existing.max_deliver} (a message delivered that often would never be stored; expected -1)"
        )
    if existing.filter_subject or existing.filter_subjects:
        problems.append(
            f"it filters {existing.filter_subject or existing.filter_subjects} (writers take the whole stream)"
        )
    return problems


async def ensure_consumer(js: Any, config: WriterConfig) -> None:
    """Create the durable consumer, or check it: conflicting settings are a `ConfigError`;
    ``ack_wait`` and ``max_ack_pending`` are set to the config's."""
    n = config.nats
    wanted = consumer_config(config)
    try:
        info = await js.consumer_info(n.stream, n.consumer)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(n.stream, wanted)
        log.info("consumer created", stream=n.stream, consumer=n.consumer)
        return
    existing: ConsumerConfig = info.config
    problems = consumer_conflicts(existing)
    if problems:
        raise ConfigError(
            f"{KEY}: consumer {n.consumer!r} of stream {n.stream!r} exists with settings that conflict "
            f"with a writer's: {'; '.join(problems)}; delete it (nats consumer rm {n.stream} {n.consumer}) "
            "or use another consumer name"
        )
    if float(existing.ack_wait or 0) != n.ack_wait or existing.max_ack_pending != n.max_ack_pending:
        updated = ConsumerConfig.from_response(existing.as_dict())
        updated.ack_wait = n.ack_wait
        updated.max_ack_pending = n.max_ack_pending
        await js.add_consumer(n.stream, updated)  # an update of an existing durable
        log.warning(
            "consumer settings updated to the config's",
            consumer=n.consumer,
            ack_wait=n.ack_wait,
            max_ack_pending=n.max_ack_pending,
        )


async def preflight(config: WriterConfig) -> tuple[Client, Any, int]:
    """Connect once (no retries), check JetStream and the stream, create or check the consumer
    and the claims stream. Returns the open connection, its JetStream context and the stream's
    replicas. Raises `ConfigError` with one line naming what to check."""
    n = config.nats
    options = connect_options(n, KEY, client_name=f"logbridge writer {config.resolved_writer_id()}")
    seen: list[BaseException] = []

    async def on_error(exc: Exception) -> None:
        seen.append(exc)

    nc = Client()
    try:
        await nc.connect(
            **options,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            error_cb=on_error,
            **_WAIT_BETWEEN_TRIES,
        )
    except Exception as exc:
        await _close_quietly(nc)
        raise ConfigError(connect_failure(n, KEY, exc, seen)) from None
    servers = ", ".join(redact(s) for s in n.servers)
    try:
        js = nc.jetstream(timeout=n.connect_timeout)
        try:
            await js.account_info()
        except (TimeoutError, nats.errors.Error):
            raise ConfigError(
                f"{KEY}: JetStream does not answer on the NATS server at {servers}: start nats-server with -js"
            ) from None
        try:
            info = await js.stream_info(n.stream)
        except nats.js.errors.NotFoundError:
            raise ConfigError(
                f"{KEY}.stream: stream {n.stream!r} does not exist on {servers}: start a collector with a "
                "nats destination first (it creates the stream), or check nats.stream"
            ) from None
        try:
            await ensure_consumer(js, config)
            claims = Claims(js, n.stream, n.claims, n.consumer, config.resolved_writer_id())
            await claims.ensure(n.claim_ttl, info.config.num_replicas or 1)
        except nats.js.errors.APIError as exc:
            raise ConfigError(
                f"{KEY}: cannot create or check consumer {n.consumer!r}: {describe_error(exc)}"
            ) from None
    except BaseException:
        await _close_quietly(nc)
        raise
    return nc, js, info.config.num_replicas or 1


class Consumer:
    """One writer process's loop (its event loop; the store runs on one thread of its own)."""

    def __init__(self, config: WriterConfig, metrics: WriterMetrics | None = None):
        self.config = config
        self.n = config.nats
        self.writer_id = config.resolved_writer_id()
        self.metrics = metrics or WriterMetrics()
        self.store = StoreWriter(config)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="logbridge-store")
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix="logbridge-publish")
        self._nc: Client | None = None
        self._js: Any = None
        self.claims: Claims | None = None
        self._ack_retry: dict[int, str] = {}  # seq → ack subject: acks not confirmed yet
        self._batches = 0
        self._kill_after = int(os.environ.get(KILL_BEFORE_ACK, "0") or 0)
        self.stopping = asyncio.Event()
        self._recovered = False
        self._purged_below = 0  # the stream holds no message below this sequence (our purges)
        self._waiting = 0  # messages the consumer had waiting at the last fetch
        self._releasing: set[asyncio.Task[Any]] = set()  # claims' deletes of acked batches

    def _release_later(self, claim_seqs: list[int], known_done: list[int]) -> None:
        """Delete the claims of an acked batch beside the next batch, not before it: the acked
        messages are never delivered again, so nothing but the claims stream's size waits for
        the delete (the largest stage of a batch at 100k events/s, bench/README). A delete that
        fails, or a SIGKILL before it, leaves claims that expire after ``claim_ttl``."""
        claims = self.claims
        assert claims is not None
        if not claim_seqs and not known_done:
            return

        async def release() -> None:
            await claims.release(claim_seqs)
            if known_done:
                await claims.release_own(known_done)

        task = asyncio.create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[Any]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "claims of acked messages not deleted; they expire after claim_ttl",
                error=describe_error(task.exception()),  # type: ignore[arg-type]
            )

    async def _store(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------------ start

    async def start(self) -> None:
        """Preflight (exit 2 material), then the real connection that reconnects forever, then
        recovery of what a killed predecessor left."""
        check_nc, _, _ = await preflight(self.config)
        await _close_quietly(check_nc)
        options = connect_options(self.n, KEY, client_name=f"logbridge writer {self.writer_id}")

        async def on_error(exc: Exception) -> None:
            log.warning("NATS connection error", error=describe_error(exc))

        async def on_disconnected() -> None:
            if not self.stopping.is_set():
                log.warning("NATS connection lost; reconnecting")

        async def on_reconnected() -> None:
            log.info("reconnected to NATS")

        nc = Client()
        await nc.connect(
            **options,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=int(RECONNECT_MAX_WAIT),
            reconnect_to_server_handler=reconnect_backoff,
            error_cb=on_error,
            disconnected_cb=on_disconnected,
            reconnected_cb=on_reconnected,
        )
        self._nc = nc
        self._js = nc.jetstream(timeout=ACK_TIMEOUT)
        self.claims = Claims(self._js, self.n.stream, self.n.claims, self.n.consumer, self.writer_id)
        await self.recover()

    async def recover(self) -> None:
        """Settle the state a killed writer left in this state dir:

        - a message journaled as staged whose claim is still this writer's: its lines are kept
          and it is acked through the ack subject journaled with it (JetStream takes an ack of
          an earlier delivery), then its claim is deleted;
        - one whose claim is gone or another writer's (released with ``--release``, or expired
          past ``claim_ttl``): its lines are cut out of the staging files — another writer
          writes it, or has;
        - claims journaled but never staged: deleted if still this writer's.
        Only then are the staging files published."""
        store, claims = self.store, self.claims
        assert claims is not None
        await self._store(store.load)
        journal = store.journal
        await self._store(journal.compact, dict(journal.sizes))  # opens a generation to append to
        pending = dict(journal.pending)
        owners = dict(zip(pending, await asyncio.gather(*(claims.owner(s) for s in pending)), strict=True))
        lost = {s for s, o in owners.items() if o is None or o[0] != self.writer_id}
        if lost:
            log.warning(
                "recovery: messages staged by this writer were claimed by another or released; "
                "their lines are dropped here",
                messages=len(lost),
            )
            await self._store(store.drop, lost)
        kept = [s for s in pending if s not in lost]
        if kept:
            log.info("recovery: acknowledging messages staged before a restart", messages=len(kept))
        for attempt in range(10):
            results = await asyncio.gather(
                *(self._ack_subject(pending[s].reply) for s in kept), return_exceptions=True
            )
            failed = [s for s, r in zip(kept, results, strict=True) if isinstance(r, BaseException)]
            acked = [s for s in kept if s not in failed]
            await self._store(store.done, acked)
            await claims.release([owners[s][1] for s in acked if owners[s] is not None])  # type: ignore[index]
            if not failed:
                break
            kept = failed
            await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        else:
            raise StorageUnavailable(
                f"cannot acknowledge {len(kept)} messages staged before a restart: JetStream does not confirm"
            )
        if journal.claimed:
            leftover = sorted(journal.claimed)
            await claims.release_own(leftover)
            await self._store(journal.append, {"done": leftover})
        published = await self._store(store.recover)
        if published:
            log.info("recovery: published staging files left by an earlier process", files=published)
        await self._store(store.compact)
        self._recovered = True

    async def _ack_subject(self, reply: str) -> None:
        assert self._nc is not None
        await self._nc.request(reply, b"+ACK", timeout=ACK_TIMEOUT)

    # ------------------------------------------------------------------------- loop

    async def run(self) -> None:
        assert self._js is not None
        sub = await self._js.pull_subscribe_bind(self.n.consumer, self.n.stream)
        tasks = [
            asyncio.create_task(self._maintenance()),
            asyncio.create_task(self._heartbeats()),
        ]
        try:
            while not self.stopping.is_set():
                try:
                    msgs = await asyncio.wait_for(self._fetch(sub), 10.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                    log.debug("fetch failed; retrying", error=describe_error(exc))
                    await asyncio.sleep(0.5)
                    continue
                try:
                    await self.handle(msgs)
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
                    # Whatever was not acked is delivered again after ack_wait; the journal and
                    # the claims decide then.
                    log.warning(
                        "batch interrupted; its messages will be delivered again", error=describe_error(exc)
                    )
                    await asyncio.sleep(0.5)
        finally:
            # Bounded: on Python 3.11 a cancellation that lands as asyncio.wait_for (inside
            # nats-py) completes is swallowed, and the task would go on; both loops also end
            # on `stopping`.
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=HEARTBEAT_EVERY + ACK_TIMEOUT)
            if self._releasing:  # deletes under way finish (bounded); claim_ttl covers the rest
                await asyncio.wait(set(self._releasing), timeout=ACK_TIMEOUT)

    async def _fetch(self, sub: Any) -> list[Msg]:
        """As many messages as the consumer has waiting (its last message's ``num_pending``, up
        to ``fetch_batch``), or, when none is, the next one as soon as it comes (a long poll of
        up to 1 s). nats-py's ``fetch(n)`` returns once it has ``n`` messages or its timeout is
        over: a fixed ``fetch(fetch_batch, timeout=1.0)`` held each message 0.25 s on average at
        10k events/s in 40-event messages, and a first-then-what-is-waiting pair of fetches
        degraded to one message per batch on a loaded box (the second fetch's short wait ran
        out before the server answered). Another writer may take some of the waiting messages:
        a fetch of several so waits at most ``BACKLOG_FETCH`` for the rest, and messages that
        arrive after a fetch gave up wait in the subscription's queue for the next one."""
        n = min(self.n.fetch_batch, self._waiting)
        self._waiting = 0  # also when this fetch fails: the next one is a long poll
        msgs: list[Msg] = await sub.fetch(max(1, n), timeout=BACKLOG_FETCH if n > 1 else 1.0)
        if msgs:
            self._waiting = msgs[-1].metadata.num_pending
        return msgs

    async def handle(self, msgs: list[Msg]) -> None:
        started = time.monotonic()
        claims, store, metrics = self.claims, self.store, self.metrics
        assert claims is not None
        known: list[Msg] = []
        fresh: list[Msg] = []
        for m in msgs:
            meta = m.metadata
            if meta.num_delivered > 1:
                metrics.redeliveries.inc()
            (known if store.is_pending(meta.sequence.stream) else fresh).append(m)
        mine: list[Msg] = []
        claim_seqs: dict[int, int] = {}
        if fresh:
            seqs = [m.metadata.sequence.stream for m in fresh]
            await self._store(store.claimed, seqs)
            owners = await claims.claim(seqs)
            for m, seq in zip(fresh, seqs, strict=True):
                owner, claim_seq = owners[seq]
                if owner == self.writer_id:
                    mine.append(m)
                    claim_seqs[seq] = claim_seq
                else:
                    metrics.claimed_elsewhere.inc()
                    with contextlib.suppress(Exception):
                        await m.nak(delay=self.n.claimed_delay)
        if mine:
            try:
                planned = await self._store(self._plan_and_write, mine)
            except StorageUnavailable as exc:
                metrics.storage_errors.inc()
                log.error("cannot store a batch; it will be delivered again", error=str(exc))
                await claims.release(list(claim_seqs.values()))
                for m in mine:
                    with contextlib.suppress(Exception):
                        await m.nak(delay=1.0)
                await asyncio.sleep(1.0)
                return
            self._batches += 1
            if self._kill_after and self._batches >= self._kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            for p in planned:
                if p.dead:
                    metrics.dead_letters.labels(p.dead).inc()
                    log.warning("message dead-lettered", seq=p.seq, reason=p.dead)
                else:
                    for sink, _, data in p.chunks:
                        metrics.events.labels(sink.name).inc(data.count(b"\n"))
        if known:
            metrics.already_staged.inc(len(known))
        to_ack = known + mine
        results = await asyncio.gather(
            *(m.ack_sync(timeout=ACK_TIMEOUT) for m in to_ack), return_exceptions=True
        )
        done = []
        for m, result in zip(to_ack, results, strict=True):
            seq = m.metadata.sequence.stream
            if isinstance(result, BaseException):
                metrics.ack_failures.inc()
                self._ack_retry[seq] = m.reply
            else:
                done.append(seq)
                metrics.messages.inc()
                metrics.bytes.inc(len(m.data))
        await self._store(store.done, done)
        mine_done = [claim_seqs[s] for s in done if s in claim_seqs]
        done_set = set(done)
        known_done = [m.metadata.sequence.stream for m in known if m.metadata.sequence.stream in done_set]
        self._release_later(mine_done, known_done)
        metrics.ack_seconds.observe(time.monotonic() - started)

    def _plan_and_write(self, msgs: list[Msg]) -> list[Planned]:
        planned = [self.store.plan(m.metadata.sequence.stream, m.reply, m.headers, m.data) for m in msgs]
        self.store.write(planned)
        return planned

    # ------------------------------------------------------------------- maintenance

    async def _maintenance(self) -> None:
        store = self.store
        while not self.stopping.is_set():
            await asyncio.sleep(0.5)
            try:
                if self._ack_retry:
                    await self._retry_acks()
                if await self._store(store.roll):
                    n = await asyncio.get_running_loop().run_in_executor(self._publisher, store.publish)
                    self.metrics.files_published.inc(n)
                self.metrics.staging_bytes.set(store.staging_bytes())
                if store.journal.wants_compaction:
                    await self._store(store.compact)
                if self.n.purge_acked:
                    await self._purge_acked()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("maintenance failed; retried", error=describe_error(exc))

    async def _purge_acked(self) -> None:
        """Every message up to the consumer's ack floor is in the store (acked only once its
        lines were durable, by whichever writer): it leaves the stream, so that a stream full
        under its max_bytes takes events again as the writers drain it. Any writer may do it;
        a purge below what is already gone is a no-op."""
        info = await self._js.consumer_info(self.n.stream, self.n.consumer)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if floor + 1 > self._purged_below:
            await self._js.purge_stream(self.n.stream, seq=floor + 1)
            self._purged_below = floor + 1

    async def _retry_acks(self) -> None:
        assert self.claims is not None
        retry = dict(self._ack_retry)
        results = await asyncio.gather(
            *(self._ack_subject(r) for r in retry.values()), return_exceptions=True
        )
        done = [s for s, r in zip(retry, results, strict=True) if not isinstance(r, BaseException)]
        for s in done:
            self._ack_retry.pop(s, None)
        await self._store(self.store.done, done)
        await self.claims.release_own(done)

    async def _heartbeats(self) -> None:
        assert self.claims is not None
        where = str(self.config.resolved_state_dir().resolve())
        while not self.stopping.is_set():
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
                await self.claims.heartbeat(where)
            await asyncio.sleep(HEARTBEAT_EVERY)

    # ------------------------------------------------------------------------- stop

    async def close(self) -> None:
        """Publish what is acknowledged; a file holding a message not acked yet stays staged
        (the next start acks it and publishes it)."""
        store = self.store
        with contextlib.suppress(Exception):
            if self._ack_retry:
                await self._retry_acks()
        if self.claims is not None:
            with contextlib.suppress(Exception):
                await self.claims.heartbeat(str(self.config.resolved_state_dir().resolve()), stopped=True)
        try:
            # Only after recovery loaded the journal: a snapshot of an unloaded one would forget it.
            if self._recovered:
                if not store._unacked:
                    await self._store(store.roll, True)
                    await asyncio.get_running_loop().run_in_executor(self._publisher, store.publish)
                await self._store(store.compact)
        finally:
            await self._store(store.close)
            self._pool.shutdown()
            self._publisher.shutdown()
            if self._nc is not None:
                await _close_quietly(self._nc)


async def consume(config: WriterConfig, metrics: WriterMetrics | None = None) -> None:
    consumer = Consumer(config, metrics)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, consumer.stopping.set)
    started = False
    try:
        await consumer.start()
        started = True
        log.info(
            "writer started",
            writer_id=consumer.writer_id,
            stream=config.nats.stream,
            consumer=config.nats.consumer,
        )
        await consumer.run()
    finally:
        await consumer.close()
        if started:
            log.info("writer stopped", writer_id=consumer.writer_id)


def run(config_path: str) -> None:
    from .config import load

    config = load(config_path)
    from ..collector.preflight import check_local_folder, check_url

    check_local_folder(config.resolved_state_dir(), "state_dir", config_path)
    check_url(config.dead_letter, {}, "dead_letter", config_path)
    for i, dest in enumerate(config.destinations):
        check_url(dest.url, dict(dest.storage_options), f"destinations[{i}].url ({dest.name})", config_path)
    lock = state_lock(config)
    lock.acquire(_busy(config), owner=config.resolved_writer_id())
    metrics = WriterMetrics()
    if config.metrics is not None:
        from prometheus_client import start_http_server

        start_http_server(config.metrics.port, config.metrics.host, registry=metrics.registry)
    try:
        asyncio.run(_main(config, config_path, metrics))
    finally:
        lock.release()


async def _main(config: WriterConfig, source: str, metrics: WriterMetrics) -> None:
    try:
        await consume(config, metrics)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", source=source) from None
