"""The sender thread: the spool's unacknowledged lines, in order, through a `CollectorClient`.

One batch at a time from the spool's acknowledged offset: it waits up to ``linger`` for a full
batch (unless a flush or closing asks for what is there now), sends it under the spool's
source and the batch's byte range, and moves the acknowledged offset on the client's final
answer: to the batch's end when it was stored, already stored, or (in part) refused for good
(those lines go to the dead letter first); to the line boundary at or after the collector's
high-water mark on a 409. While the client retries (the policy is `logbridge.client`'s: a
401 too is retried), records keep spooling; closing ends the retrying at once when the lines
are safe in a ``spool_dir``, at ``close_timeout`` otherwise.

``envelope="bare"`` sends the event of each spooled envelope instead of the envelope, one
topic per batch (in ``X-Audit-Topic``); lines that hold no envelope (a text formatter's) can
never be sent so and go to the dead letter, so that they cannot hold up the lines behind them.
"""

from __future__ import annotations

import logging
import threading
import time
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import orjson

from ..client import CollectorClient, Rejected, Result, Stopped
from ..envelope import AUDIT_LOGGER_PREFIX
from .spool import FileSpool

if TYPE_CHECKING:
    from .handler import EventServerHandler

log = logging.getLogger("logbridge.handlers")

# Idents of every sender/spooler thread of every handler: records logged *by* those threads
# (httpx's request log, our own warnings) must not be sent again, or two handlers would
# feed each other forever.
OWN_THREADS: set[int] = set()


class Sender:
    """The sending half of one `EventServerHandler` (started again in a forked child).

    It reads the handler's spool, stats, wake-ups and close state; the handler reads
    ``thread`` (alive or not) and ``wake`` (set by the spooler when there is work)."""

    def __init__(self, handler: EventServerHandler, client_options: dict[str, Any]):
        self.handler = handler
        self.wake = threading.Event()
        self.client = CollectorClient(
            handler.urls,
            on_retry=self._on_retry,
            on_switch=self._on_switch,
            sleep=self._pause,
            wait_slice=0.5,
            logger=log,
            retry_log_level=logging.DEBUG,  # `_went_down` says it once, not per retry
            **client_options,
        )
        handler.stats.collector = self.client.collectors.name
        self.down_since: float | None = None
        self.thread = threading.Thread(target=self._run, name="logbridge-sender", daemon=True)

    def start(self) -> None:
        self.thread.start()

    # -------------------------------------------------------------------------------- loop

    def _run(self) -> None:
        OWN_THREADS.add(threading.get_ident())
        try:
            while True:
                try:
                    self._send_until_closed()
                    return
                except Stopped:
                    return
                except Exception:  # a bug must not stop delivery for good: log, pause, go on
                    log.exception("EventServerHandler: unexpected error in the sender; retrying in 1s")
                    if self._pause(1.0):
                        return
        finally:
            self.handler._sender_finished()
            self.client.close()
            OWN_THREADS.discard(threading.get_ident())

    def _send_until_closed(self) -> None:
        """Sends batches in spool order until closing (or the close deadline) ends it."""
        h = self.handler
        spool = h._spool
        while True:
            # The spooler's liveness first: once it is gone, an empty spool stays empty.
            spooler_done = h._closing and not h._spooler.is_alive()
            if spool.acked >= spool.end:
                h._notify_progress()
                if spooler_done:
                    return
                self.wake.wait(0.5)
                self.wake.clear()
                continue
            self._linger()
            if h._deadline is not None and time.monotonic() >= h._deadline:
                return
            self._send_one()
            h._notify_progress()

    def _linger(self) -> None:
        """Waits up to ``linger`` for a full batch, unless closing or a flush covers what is
        unsent; once the flushed lines are delivered, batches wait for ``linger`` again."""
        h = self.handler
        deadline = time.monotonic() + h.linger
        spool = h._spool
        while not h._closing and spool.acked >= h._flush_until:
            if spool.pending_events >= h.batch_max_events or spool.end - spool.acked >= h.batch_max_bytes:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.wake.wait(remaining)
            self.wake.clear()

    def _must_stop(self) -> bool:
        """Closing: lines safe on disk go first next time; in memory, they have until the deadline."""
        h = self.handler
        if not h._closing:
            return False
        if isinstance(h._spool, FileSpool):
            return True
        return h._deadline is not None and time.monotonic() >= h._deadline

    def _pause(self, seconds: float) -> bool:
        """The client's sleep between retries (woken early by new records); True: stop."""
        if self._must_stop():
            return True
        deadline = self.handler._deadline
        if deadline is not None:
            seconds = min(seconds, max(0.0, deadline - time.monotonic()))
        self.wake.wait(seconds)
        self.wake.clear()
        return self._must_stop()

    # -------------------------------------------------------------------------------- send

    def _send_one(self) -> None:
        """Sends the first unacknowledged batch until the collector's answer is final."""
        h = self.handler
        spool = h._spool
        lines = spool.read(h.batch_max_events, h.batch_max_bytes)
        if not lines:
            return
        start = spool.acked
        topic = line_ends = None
        if h.envelope == "bare":
            lines, bare, topic = self._bare_batch(lines)
            if bare is None:  # no event to take out of these lines, now or on any retry
                self._dead_letter(
                    lines,
                    start,
                    "not a log4j envelope holding an event that can be written bare "
                    "(a text formatter with envelope=bare?)",
                    lead="envelope=bare cannot send",
                )
                spool.ack(start + sum(len(line) for line in lines), len(lines))
                return
            body = bare
            line_ends = list(accumulate((len(line) for line in lines), initial=start))[1:]
        else:
            body = b"".join(lines)
        end = start + sum(len(line) for line in lines)
        result = self.client.send(
            body, source=spool.source, start=start, end=end, topic=topic, line_ends=line_ends
        )
        self._came_back()
        refused = 0
        for piece in result.rejected:
            refused += self._dead_letter_piece(lines, start, piece)
        if result.kind == "high_water":
            self._resume(lines, start, result)
            return
        # Counted before the ack: `wait_delivered` returns once the spool is acknowledged, and a
        # caller reading the stats then must find this batch in them.
        with h._count_lock:
            if result.kind == "duplicate":
                h.stats.duplicate_batches += 1
            elif result.kind == "stored":
                h.stats.sent_events += len(lines) - refused
                h.stats.sent_batches += 1
        spool.ack(end, len(lines))

    def _resume(self, lines: list[bytes], start: int, result: Result) -> None:
        """A 409: the collector holds the stream up to ``result.high_water``."""
        high_water = result.high_water or 0
        if high_water <= start:  # below what it acknowledged before: a collector gone wrong
            self._dead_letter(lines, start, f"HTTP 409 with a high_water {high_water} before the batch")
            self.handler._spool.ack(start + sum(len(line) for line in lines), len(lines))
            return
        # The collector's copy ends at one of our batch ends, i.e. a line boundary; round up
        # to one all the same, so a stray value cannot split a line.
        offset, count = start, 0
        for line in lines:
            if offset >= high_water:
                break
            offset += len(line)
            count += 1
        self.handler._spool.ack(offset, count)

    def _bare_batch(self, lines: list[bytes]) -> tuple[list[bytes], bytes | None, str | None]:
        """The leading run of lines of one topic, as bare events (the topic goes in a header).

        Lines that hold no envelope (what a text formatter wrote) can never be sent bare: a
        leading run of them comes back with None for a body, for the dead letter, so that
        they cannot hold up the lines behind them."""
        events: list[bytes] = []
        run: list[bytes] = []
        topic: str | None = None
        unusable = False
        for line in lines:
            bare = bare_event(line)
            if run and (bare is None) != unusable:
                break
            if bare is None:
                unusable = True
                run.append(line)
                continue
            event, this = bare
            if run and this != topic:
                break
            topic = this
            run.append(line)
            events.append(event)
        if unusable:
            return run, None, None
        return run, b"".join(events), topic or self.handler.default_topic

    # ------------------------------------------------------------------------- dead letter

    def _dead_letter_piece(self, lines: list[bytes], start: int, piece: Rejected) -> int:
        """Keeps the spooled lines of a refused piece (the envelopes, also when the body sent
        was bare events); returns how many."""
        kept: list[bytes] = []
        offset = start
        for line in lines:
            if piece.start is not None and piece.end is not None and piece.start <= offset < piece.end:
                kept.append(line)
            offset += len(line)
        self._dead_letter(
            kept,
            piece.start or start,
            f"{piece.reason} (from {self.client.collectors.name})",
            status=piece.status,
        )
        return len(kept)

    def _dead_letter(
        self,
        lines: list[bytes],
        start: int,
        reason: str,
        *,
        status: int | None = None,
        lead: str = "the collector refused",
    ) -> None:
        """Keeps ``lines`` (from ``start`` in the spool) with the reason, or logs their loss;
        acknowledging them is the caller's."""
        h = self.handler
        spool = h._spool
        where = None
        if spool.dead_letters is not None:
            end = start + sum(len(line) for line in lines)
            context: dict[str, Any] = {"source": spool.source, "range": f"{start}-{end}"}
            if status is not None:
                context["status"] = status
            try:
                where = spool.dead_letters.write(b"".join(lines), reason=reason, lines=len(lines), **context)
            except OSError as exc:
                reason += f" (and the dead-letter file could not be written: {exc})"
        with h._count_lock:
            h.stats.dead_lettered += len(lines)
        log.error(
            "EventServerHandler: %s %d audit events, not retrying: %s; %s",
            lead,
            len(lines),
            reason,
            f"kept in {where}" if where else "they are lost (no spool_dir to keep them in)",
        )

    # ------------------------------------------------------------------------------ health

    def _on_retry(self) -> None:
        with self.handler._count_lock:
            self.handler.stats.retries += 1
        # Down only once every collector failed: a failover to the next one is not an outage
        # (the client logs each switch).
        if self.down_since is None and self.client.all_failed:
            self.down_since = time.monotonic()
            pool = self.client.collectors
            if len(pool) == 1:
                what = f"collector {pool.name} unavailable ({self.client.last_problem})"
            else:
                problems = "; ".join(f"{pool.names[i]}: {p}" for i, p in sorted(pool.problems.items()))
                what = f"no collector available ({problems})"
            log.warning(
                "EventServerHandler: %s; spooling to %s and retrying", what, self.handler._spool.where
            )

    def _on_switch(self, old: str, new: str) -> None:
        with self.handler._count_lock:
            self.handler.stats.switches += 1
            self.handler.stats.collector = new

    def _came_back(self) -> None:
        if self.down_since is not None:
            spool = self.handler._spool
            log.info(
                "EventServerHandler: collector %s is back after %.1fs; draining %d spooled bytes",
                self.client.collectors.name,
                time.monotonic() - self.down_since,
                spool.end - spool.acked,
            )
            self.down_since = None


def bare_event(line: bytes) -> tuple[bytes, str | None] | None:
    """The event of a spooled envelope line as a bare NDJSON line, and its topic; None when
    there is none to take (not a JSON object, a logger that is not a string, an event nested
    deeper than orjson writes)."""
    try:
        env = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    logger = env.get("logger", "") if isinstance(env, dict) else None
    if not isinstance(logger, str):
        return None
    topic = logger[len(AUDIT_LOGGER_PREFIX) :] if logger.startswith(AUDIT_LOGGER_PREFIX) else None
    message = env.get("message")
    event = message if isinstance(message, dict) else {"message": message}
    if topic is None and isinstance(event.get("topic"), str):
        topic = event["topic"]
    try:
        return orjson.dumps(event) + b"\n", topic
    except orjson.JSONEncodeError:
        return None
