"""`EventServerHandler`, the `logging.Handler`: serialise, filter, queue; the spooler thread.

The application's thread only serialises the record (the log4j file envelope of DESIGN.md
§2.1, one JSON line) and appends it to a bounded in-memory queue; it never waits for the network
or the disk and never sees an exception. The spooler thread moves the queue into the `spool`;
the `sender` thread takes it from there to the collector.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson

from ..client import tls_context
from ..client.failover import DEFAULT_FAILBACK, parse_failback, shown
from ..config import resolve_secret
from ..envelope import AUDIT_LOGGER_PREFIX
from ..errors import ConfigError
from ..log4j.jsonaudit import envelope
from ..units import parse_duration, parse_size
from .sender import OWN_THREADS, Sender
from .spool import FileSpool, MemorySpool, Spool, drop_marker

log = logging.getLogger("logbridge.handlers")

RoutingKeyMode = Literal["from_message", "static", "static_if_missing"]
_ROUTING_KEY_MODES = ("from_message", "static", "static_if_missing")

_EXC_FORMATTER = logging.Formatter()

# Every live handler, to restart in a forked child (see `EventServerHandler._after_fork_in_child`).
_HANDLERS: weakref.WeakSet[EventServerHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    OWN_THREADS.clear()
    for handler in list(_HANDLERS):
        try:
            handler._after_fork_in_child()
        except Exception:  # the child runs on all the same; it says why
            log.exception("EventServerHandler: could not reset in the forked process %d", os.getpid())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------------------------ queue


class _FlushMark:
    """Queued by `flush` and `wait_delivered` behind the records emitted before the call.

    The queue is the one order that emit, the spooler and a waiter all agree on: when the
    spooler reaches the mark, every line queued before it is in the spool (or dropped and
    counted), and the spool's end at that moment is what the flush covers. Anything kept
    beside the queue (a flag, a count of lines in the spooler's hand) has a window between
    a line leaving the queue and that state changing, and a flag has no end."""

    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: int | None = None  # the spool's end when the spooler reached the mark


# ------------------------------------------------------------------------------------ stats


@dataclass
class HandlerStats:
    """What the handler did, for tests, benchmarks and a metrics endpoint."""

    queued: int = 0
    filtered: int = 0
    dropped_queue_full: int = 0
    dropped_spool_full: int = 0
    drop_markers: int = 0  # `spool.drop_marker` lines spooled: the drops above, in the trail
    sent_events: int = 0
    sent_batches: int = 0
    duplicate_batches: int = 0
    retries: int = 0
    dead_lettered: int = 0
    unsent_at_close: int = 0
    collector: str = ""  # the URL batches go to now (one of ``urls``)
    switches: int = 0  # changes of collector: failover, failback


# ----------------------------------------------------------------------------------- handler


def _urls(url: str | Sequence[str] | None, urls: str | Sequence[str] | None) -> tuple[str, ...]:
    """The collector URLs in order of preference: ``url`` (one, or a list) or ``urls`` (a list,
    or a comma-separated string as a ``.ini``/properties file writes it), each http(s)."""
    if (url is None) == (urls is None):
        raise ConfigError(
            "EventServerHandler url/urls: set url (a collector's http(s)://host:port/events) or urls "
            "(a list of them, tried in order), not both"
            if url is not None
            else "EventServerHandler url: expected http(s)://host:port/events (or urls: a list of them)"
        )
    name, value = ("url", url) if url is not None else ("urls", urls)
    items: list[object]
    if isinstance(value, str):
        items = [value] if name == "url" else [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ConfigError(f"EventServerHandler {name}: expected at least one collector URL, got {value!r}")
    for item in items:
        if not isinstance(item, str) or not item.startswith(("http://", "https://")):
            raise ConfigError(f"EventServerHandler {name}: expected http(s)://host:port/events, got {item!r}")
    checked = [item for item in items if isinstance(item, str)]
    if len(set(checked)) != len(checked):
        raise ConfigError(f"EventServerHandler {name}: a URL is listed twice in {checked!r}")
    return tuple(checked)


def _selector(value: str | Iterable[str] | None, name: str) -> frozenset[str] | None:
    """``"all"``/None → no filter; a list (or a comma-separated string) → that set."""
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = [str(v) for v in value]
    if not items:
        raise ConfigError(f"EventServerHandler {name}: expected 'all' or a non-empty list, got {value!r}")
    return frozenset(items)


class EventServerHandler(logging.Handler):
    """Sends records to a ``logbridge collect`` server; never blocks or raises into the caller.

    Usable from dictConfig, e.g.::

        handlers:
          events:
            class: logbridge.handlers.EventServerHandler
            url: http://collector:8765/events     # or urls: [http://c1:8765/events, http://c2:8765/events]
            token_env: LB_TOKEN
            spool_dir: /var/spool/myapp/audit
            topics: [generic, authfail]

    ``urls`` (or a list given as ``url``): several collectors in order of preference, with
    failover to the next at the first failure and a try of the first again after ``failback``
    (``"never"``: stay on whichever works); `logbridge.client.failover` states the policy.

    ``routing_key_mode`` is DSS's: ``from_message`` keeps the event's ``routingKey``;
    ``static`` sets ``routing_key`` on every event; ``static_if_missing`` only where the event
    has none. ``topics``/``routing_keys`` (``all`` or a list) select what is sent at all.
    ``envelope="log4j"`` sends the log4j file envelope (severity, logger, mdc, callTime,
    timestamp travel with the event); ``"bare"`` sends only the event, topic in
    ``X-Audit-Topic``. Sizes and durations take ``"1MiB"``/``"200ms"`` strings as well.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        token: str | None = None,
        *,
        urls: str | Sequence[str] | None = None,
        failback: float | str | None = DEFAULT_FAILBACK,
        token_env: str | None = None,
        token_file: str | None = None,
        node: str | None = None,
        routing_key_mode: RoutingKeyMode = "from_message",
        routing_key: str | None = None,
        topics: str | Iterable[str] = "all",
        routing_keys: str | Iterable[str] = "all",
        default_topic: str | None = None,
        envelope: Literal["log4j", "bare"] = "log4j",
        verify: bool | str = True,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int | str = "256MiB",
        spool_fsync: bool = False,
        queue_size: int = 10_000,
        batch_max_events: int = 1000,
        batch_max_bytes: int | str = "1MiB",
        linger: float | str = "200ms",
        timeout: float | str = "10s",
        backoff_initial: float | str = "200ms",
        backoff_max: float | str = "30s",
        close_timeout: float | str = "5s",
        compress: bool = True,
        level: int | str = logging.NOTSET,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(level)
        self.urls = _urls(url, urls)
        if routing_key_mode not in _ROUTING_KEY_MODES:
            raise ConfigError(
                f"EventServerHandler routing_key_mode: expected one of {', '.join(_ROUTING_KEY_MODES)}, "
                f"got {routing_key_mode!r}"
            )
        if routing_key_mode != "from_message" and not routing_key:
            raise ConfigError(
                f"EventServerHandler routing_key: required with routing_key_mode {routing_key_mode}"
            )
        if envelope not in ("log4j", "bare"):
            raise ConfigError(f"EventServerHandler envelope: expected log4j or bare, got {envelope!r}")
        try:
            self.spool_max_bytes = parse_size(spool_max_bytes)
            self.batch_max_bytes = max(1, parse_size(batch_max_bytes))
            self.linger = parse_duration(linger)
            self.timeout = parse_duration(timeout)
            self.backoff_initial = max(0.001, parse_duration(backoff_initial))
            self.backoff_max = max(self.backoff_initial, parse_duration(backoff_max))
            self.close_timeout = parse_duration(close_timeout)
            self.failback = parse_failback(failback)
        except ValueError as exc:
            raise ConfigError(f"EventServerHandler: {exc}") from None
        if queue_size < 1 or batch_max_events < 1:
            raise ConfigError("EventServerHandler queue_size and batch_max_events: must be at least 1")

        if token is None and (token_env or token_file):
            token = resolve_secret(env=token_env, file=token_file, what="EventServerHandler token")
        self.node = node or socket.gethostname()
        self.routing_key_mode = routing_key_mode
        self.routing_key = routing_key
        self.topics = _selector(topics, "topics")
        self.routing_keys = _selector(routing_keys, "routing_keys")
        self.default_topic = default_topic
        self.envelope = envelope
        self.queue_size = queue_size
        self.batch_max_events = batch_max_events
        self.compress = compress
        self.stats = HandlerStats()

        headers = {}
        if routing_key_mode != "from_message" and routing_key:
            headers["X-Audit-Routing-Key"] = routing_key  # for records whose message is not a dict
        if default_topic:
            headers["X-Audit-Topic"] = default_topic
        tls = tls_context(
            # One context for every https URL of the list (plain http ones ignore it).
            next((u for u in self.urls if u.startswith("https://")), self.urls[0]),
            ca=ca_file or (verify if isinstance(verify, str) else None),
            cert=client_cert,
            key=client_key,
            verify=verify is not False,
            what="EventServerHandler TLS",
            names=("ca_file", "client_cert", "client_key"),
        )
        # A `CollectorClient` per sender thread (`Sender`), again in a forked child.
        self._client_options: dict[str, Any] = {
            "token": token,
            "node": self.node,
            "headers": headers,
            "compression": "gzip" if compress else "none",
            "compression_level": 5,
            "timeout": self.timeout,
            "verify": tls,
            "retry_initial": self.backoff_initial,
            "retry_max": self.backoff_max,
            "failback": self.failback,
            "transport": transport,
        }
        self.spool_dir = spool_dir
        self.spool_fsync = spool_fsync
        self._start_lock = threading.Lock()
        self._started = False
        self._start_failed = False
        self._start()
        _HANDLERS.add(self)

    @property
    def url(self) -> str:
        """The collector batches go to now (the first of ``urls`` until the sender moves on)."""
        sender = getattr(self, "_sender", None)
        return sender.client.collectors.name if sender is not None else shown(self.urls[0])

    def _start(self) -> None:
        """Everything that a process owns alone: client, spool, queue, threads (again after fork)."""
        self._spool: Spool = (
            FileSpool(self.spool_dir, self.spool_max_bytes, self.spool_fsync)
            if self.spool_dir is not None
            else MemorySpool(self.spool_max_bytes)
        )
        self._queue: deque[bytes | _FlushMark] = deque()
        self._queue_wake = threading.Event()  # set by emit / flush: the spooler has work
        # Notified whenever something was delivered or a flush mark was reached.
        self._progress = threading.Condition()
        self._count_lock = threading.Lock()
        self._closing = False
        # Spool offset up to which the sender does not linger: the end of the last flush.
        self._flush_until = 0
        self._deadline: float | None = None
        self._last_drop_log = 0.0
        self._dropped_logged = 0
        self._drops_marked = (0, 0)  # (queue full, spool full) drops already in a drop marker

        self._spooler = threading.Thread(target=self._spool_loop, name="logbridge-spooler", daemon=True)
        self._sender = Sender(self, self._client_options)
        self._spooler.start()
        self._sender.start()
        self._started = True

    def _after_fork_in_child(self) -> None:
        """A forked worker (gunicorn ``--preload``, multiprocessing) has this handler but none
        of its threads, and shares the parent's sockets and spool slot. It starts afresh, with
        a spool (and so a source id) of its own, at its first record (`_start_in_child`): many
        children never log, and threads and a spool slot each would be theirs for nothing.
        What the parent had queued stays the parent's."""
        if self._closing:
            return
        spool = self._spool
        if isinstance(spool, FileSpool) and spool._lock_fd >= 0:
            os.close(spool._lock_fd)  # the child's copy; the parent's lock stays held
            spool._lock_fd = -1
        self.stats = HandlerStats()
        # A parent thread may have held these at the fork: the child's copies would stay held.
        self._count_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._started = False

    def _start_in_child(self) -> bool:
        """Starts a forked child's handler for its first record; False when it cannot."""
        with self._start_lock:
            if self._started or self._closing:
                return self._started
            try:
                self._start()
                return True
            except Exception as exc:
                # Closed before anything is logged: the log's record, should it reach this
                # handler, returns at once instead of waiting for this lock.
                self._closing = self._start_failed = True
                error = exc
        log.error(
            "EventServerHandler: could not start in the forked process %d; its audit events are dropped",
            os.getpid(),
            exc_info=error,
        )
        return False

    # ------------------------------------------------------------------------- caller side

    def handle(self, record: logging.LogRecord) -> Any:
        """`logging.Handler.handle` without the handler lock: `emit` is thread-safe on its own.

        The lock would cost every caller, and ``logging.shutdown`` holds it while `close`
        waits for the sender, which may itself log (a warning, httpx's request line) and would
        then wait for that same lock."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Serialise and queue; never waits, never raises."""
        if self._closing or threading.get_ident() in OWN_THREADS:
            return
        try:
            line = self._line(record)
            if line is None:
                return
            if not self._started and not self._start_in_child():
                return
            if len(self._queue) >= self.queue_size:
                with self._count_lock:
                    self.stats.dropped_queue_full += 1
                return
            self._queue.append(line)
            if not self._queue_wake.is_set():
                self._queue_wake.set()
        except Exception:
            self.handleError(record)

    def _line(self, record: logging.LogRecord) -> bytes | None:
        """The record's spool line, or None when the topic/routing-key filters exclude it."""
        name = record.name
        topic = name[len(AUDIT_LOGGER_PREFIX) :] if name.startswith(AUDIT_LOGGER_PREFIX) else None
        msg = record.msg
        event: Any = None
        routing_key = self.routing_key if self.routing_key_mode != "from_message" else None
        if isinstance(msg, dict):
            if topic is None and isinstance(msg.get("topic"), str):
                topic = msg["topic"]
            event = self._with_routing_key(msg)
            routing_key = event.get("routingKey")
        if topic is None:
            topic = self.default_topic
        if (self.topics is not None and topic not in self.topics) or (
            self.routing_keys is not None and routing_key not in self.routing_keys
        ):
            with self._count_lock:
                self.stats.filtered += 1
            return None
        if self.formatter is not None:
            if isinstance(msg, dict) and event is not msg:  # the routing key changed: a copy
                record = logging.makeLogRecord(record.__dict__)
                record.msg = event
            # One line per record whatever the formatter's own line end.
            return self.format(record).rstrip("\r\n").encode() + b"\n"
        exception = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _EXC_FORMATTER.formatException(record.exc_info)
            exception = record.exc_text
        elif record.exc_text:
            exception = record.exc_text
        return (
            orjson.dumps(envelope(record, event, exception), default=str, option=orjson.OPT_NON_STR_KEYS)
            + b"\n"
        )

    def _with_routing_key(self, event: dict[str, Any]) -> dict[str, Any]:
        """DSS's routing_key_mode, applied to a copy: the caller's dict is not ours to change."""
        mode = self.routing_key_mode
        if mode == "from_message":
            return event
        current = event.get("routingKey")
        if mode == "static_if_missing" and isinstance(current, str) and current.strip():
            return event
        if current == self.routing_key:
            return event
        return {**event, "routingKey": self.routing_key}

    # --------------------------------------------------------------------------- spooler

    def _spool_loop(self) -> None:
        OWN_THREADS.add(threading.get_ident())
        try:
            while True:
                try:
                    if self._spool_once():
                        return
                except Exception:  # never let a bug stop spooling: log, pause, go on
                    log.exception("EventServerHandler: unexpected error in the spooler; retrying in 1s")
                    time.sleep(1.0)
        finally:
            OWN_THREADS.discard(threading.get_ident())

    def _spool_once(self) -> bool:
        """Moves what the queue holds into the spool; True once closing and all moved."""
        queue = self._queue
        self._queue_wake.wait(1.0)
        self._queue_wake.clear()
        while queue:
            lines: list[bytes] = []
            mark: _FlushMark | None = None
            while queue and len(lines) < 10_000:
                item = queue.popleft()
                if isinstance(item, _FlushMark):
                    mark = item
                    break
                lines.append(item)
            if lines:
                self._mark_drops()  # the gap's marker first, then what came after it
                taken = self._spool_append(lines)
                with self._count_lock:
                    self.stats.queued += taken
                    self.stats.dropped_spool_full += len(lines) - taken
            if mark is not None:
                mark.offset = self._spool.end
                self._flush_until = max(self._flush_until, mark.offset)
                with self._progress:
                    self._progress.notify_all()
            self._sender.wake.set()
        self._mark_drops()  # also when nothing new came: acks may have made room for it
        self._log_drops()
        return self._closing and not queue

    def _mark_drops(self) -> None:
        """Drops not yet in the trail go into the spool as one `drop_marker` line, as soon as
        there is room for it (spooler thread only)."""
        with self._count_lock:
            queue_full = self.stats.dropped_queue_full - self._drops_marked[0]
            spool_full = self.stats.dropped_spool_full - self._drops_marked[1]
        if not (queue_full or spool_full):
            return
        marker = drop_marker(queue_full, spool_full, self._spool.where, self.spool_max_bytes)
        if self._spool_append([marker]):
            self._drops_marked = (self._drops_marked[0] + queue_full, self._drops_marked[1] + spool_full)
            self.stats.drop_markers += 1
            self._sender.wake.set()

    def _spool_append(self, lines: list[bytes]) -> int:
        try:
            return self._spool.append(lines)
        except OSError as exc:
            log.error("EventServerHandler: cannot write to the spool %s: %s", self._spool.where, exc)
            return 0

    def _log_drops(self, force: bool = False) -> None:
        stats = self.stats
        dropped = stats.dropped_queue_full + stats.dropped_spool_full
        now = time.monotonic()
        if dropped > self._dropped_logged and (force or now - self._last_drop_log >= 10.0):
            log.warning(
                "EventServerHandler: %d audit events dropped so far (%d: queue of %d full, %d: spool %s "
                "full at %d bytes unsent); the collector at %s is %s. Raise spool_max_bytes/queue_size "
                "or bring the collector back.",
                dropped,
                stats.dropped_queue_full,
                self.queue_size,
                stats.dropped_spool_full,
                self._spool.where,
                self.spool_max_bytes,
                self.url,
                "unreachable" if self._sender.down_since is not None else "slower than the event rate",
            )
            self._dropped_logged = dropped
            self._last_drop_log = now

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _sender_finished(self) -> None:
        """Sender exit: the spooler is done with the spool, then it is closed."""
        self._spooler.join(timeout=5)
        unsent = self._spool.pending_events
        self.stats.unsent_at_close = unsent
        self._log_drops(force=True)
        if unsent:
            if isinstance(self._spool, FileSpool):
                log.warning(
                    "EventServerHandler: %d audit events not yet delivered to %s; kept in %s, sent at next start",
                    unsent,
                    self.url,
                    self._spool.where,
                )
            else:
                log.error(
                    "EventServerHandler: %d audit events could not be delivered to %s before close and "
                    "are lost (set spool_dir to keep them across restarts)",
                    unsent,
                    self.url,
                )
        self._spool.close()
        self._notify_progress()

    # ------------------------------------------------------------------------- lifecycle

    def flush(self, timeout: float | None = None) -> None:
        """Sends what was emitted before the call without waiting for ``linger`` (records
        after it are batched as usual); with ``timeout``, also waits (see `wait_delivered`).
        Plain ``flush()`` never blocks: logging calls it at shutdown."""
        if not getattr(self, "_started", False):  # settings refused, or a child that never logged
            return
        if timeout is None:
            if not self._closing:  # closing sends without lingering anyway
                self._queue_flush_mark()
        else:
            self.wait_delivered(timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Sends now and waits up to ``timeout`` seconds until everything emitted so far is
        acknowledged by the collector; returns whether it was."""
        if not self._started:  # a forked child that has not logged, or could not start
            return not self._start_failed
        mark = self._queue_flush_mark()
        deadline = time.monotonic() + timeout
        spool = self._spool
        with self._progress:
            while True:
                if mark.offset is None and not self._spooler.is_alive():
                    # Closed: the spooler stopped with the queue empty and nothing comes after.
                    mark.offset = spool.end
                if mark.offset is not None and spool.acked >= mark.offset:
                    return True
                if not self._sender.thread.is_alive():
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(min(remaining, 0.05))

    def _queue_flush_mark(self) -> _FlushMark:
        mark = _FlushMark()
        self._queue.append(mark)  # beyond queue_size if need be: a flush is never dropped
        self._queue_wake.set()
        return mark

    def close(self, timeout: float | None = None) -> None:
        """Stops taking records and delivers what it holds, for up to ``close_timeout``.

        With a ``spool_dir``, what the collector does not take in time stays there; without
        one it is counted and logged as lost."""
        start_lock = getattr(self, "_start_lock", None)
        if start_lock is None:  # __init__ refused its settings
            super().close()
            return
        with start_lock:  # a forked child's first record may be starting it right now
            if not self._started:  # a forked child that never logged, or a spool refused in __init__
                self._closing = True
                super().close()
                return
        with self._count_lock:
            if self._closing:
                return
            self._closing = True
        wait = self.close_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + wait
        self._queue_wake.set()
        self._sender.wake.set()
        self._sender.thread.join(timeout=wait + 1.0)
        if self._sender.thread.is_alive():
            log.warning(
                "EventServerHandler: still sending to %s after close_timeout; leaving it behind", self.url
            )
        super().close()

    def __repr__(self) -> str:
        where = self._spool.where if getattr(self, "_started", False) else "not started"
        return f"<EventServerHandler {self.url} spool={where} ({logging.getLevelName(self.level)})>"
