"""`EventServerHandler`: audit records straight from a Python process to ``logbridge collect``.

The DSS EventServer target for Python. The application's thread only serialises the record
(the log4j file envelope of DESIGN.md §2.1, one JSON line) and appends it to a bounded
in-memory queue; it never waits for the network or the disk and never sees an exception.

::

    caller ──emit()──▶ queue (bounded; full → counted as dropped)
                         │  spooler thread
                         ▼
                       spool (a byte stream of lines; on disk with ``spool_dir``, else in memory;
                         │    bounded by ``spool_max_bytes``; beyond it → counted, logged, dropped)
                         │  sender thread
                         ▼
              POST /events  NDJSON, gzip, Bearer token, X-Logbridge-Source + X-Logbridge-Range

The spool is the source of the idempotence headers: every line gets a fixed byte offset in
the spool's stream, and a batch is the byte range ``start-end`` of that stream under a source
id that lives as long as the spool (a file in ``spool_dir``, or the handler instance). A batch
that was stored but whose reply was lost, even across a crash of this process, is resent
with the same range and the collector stores it once; a 409 says where the collector's copy
ends and the sender resumes there. The acknowledged offset only advances on a 200 (or a 409,
or when a batch is dead-lettered), so the spool drains in order.

Failures: connection errors, 408, 429 and 5xx are retried with capped exponential backoff
and jitter (``Retry-After`` honoured) while new records keep spooling; any other 4xx means
retrying cannot help, so the batch goes to ``dead-letter.ndjson`` in the spool directory (the
lines as they were, replayable with ``logbridge ship``) with the reason in
``dead-letter.log``, and sending moves on. A 413 first halves the batch.

Records logged by the handler's own threads (its warnings, httpx's request lines) are never
sent, so a handler on the root logger cannot feed itself. A forked child (gunicorn
``--preload``, a multiprocessing pool) starts threads, a spool slot and a source id of its own
with its first record; a child that never logs starts nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import logging
import os
import socket
import ssl
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson

from .config import resolve_secret
from .envelope import AUDIT_LOGGER_PREFIX
from .errors import ConfigError
from .log4j.jsonaudit import envelope
from .retry import backoff_delay, retry_after
from .units import parse_duration, parse_size

__all__ = ["EventServerHandler", "HandlerStats"]

log = logging.getLogger("logbridge.handlers")

RoutingKeyMode = Literal["from_message", "static", "static_if_missing"]
_ROUTING_KEY_MODES = ("from_message", "static", "static_if_missing")

# Idents of every sender/spooler thread of every handler: records logged *by* those threads
# (httpx's request log, our own warnings) must not be sent again, or two handlers would
# feed each other forever.
_OWN_THREADS: set[int] = set()

_EXC_FORMATTER = logging.Formatter()

# Every live handler, to restart in a forked child (see `EventServerHandler._after_fork_in_child`).
_HANDLERS: weakref.WeakSet[EventServerHandler] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    _OWN_THREADS.clear()
    for handler in list(_HANDLERS):
        try:
            handler._after_fork_in_child()
        except Exception:  # the child runs on all the same; it says why
            log.exception("EventServerHandler: could not reset in the forked process %d", os.getpid())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------------------------ spools


class _MemorySpool:
    """The spool without a ``spool_dir``: lines in memory, lost if the process dies."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.source = "pyh-" + uuid.uuid4().hex
        self.where = "memory"
        self._lines: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.acked = 0  # stream offset of the first unacknowledged line
        self.end = 0  # stream offset after the last line
        self.pending_events = 0

    def append(self, lines: list[bytes]) -> int:
        """Adds lines while the bound allows; returns how many were taken."""
        taken = 0
        with self._lock:
            room = self.max_bytes - (self.end - self.acked)
            for line in lines:
                if len(line) > room:
                    break
                room -= len(line)
                self._lines.append(line)
                self.end += len(line)
                taken += 1
            self.pending_events += taken
        return taken

    def read(self, max_events: int, max_bytes: int) -> list[bytes]:
        """The first unacknowledged lines (at least one if any), within the limits."""
        out: list[bytes] = []
        size = 0
        with self._lock:
            for line in self._lines:
                if out and (len(out) >= max_events or size + len(line) > max_bytes):
                    break
                out.append(line)
                size += len(line)
        return out

    def ack(self, offset: int, events: int | None = None) -> None:
        """Everything before ``offset`` (a line boundary) is delivered."""
        with self._lock:
            while self._lines and self.acked < offset:
                line = self._lines.popleft()
                self.acked += len(line)
                self.pending_events -= 1

    def dead_letter(self, lines: list[bytes], reason: str) -> str | None:
        return None  # nowhere to keep them; the caller logs the loss

    def close(self) -> None:
        pass


class _FileSpool:
    """The spool in ``spool_dir``: numbered segment files of lines plus the acknowledged offset.

    ``spool_dir/<slot>/`` holds one process's spool: a process takes the first slot whose
    ``lock`` it can ``flock``, so several worker processes sharing a config each get their
    own stream, and a restarted worker picks up (and drains) what its predecessor left.

    - ``source``: the stream's id, written once; it is the X-Logbridge-Source of every batch.
    - ``<offset>.ndjson``: segments; the name is the stream offset of the segment's first byte.
    - ``acked``: the stream offset up to which the collector has the data (written temp+rename;
      being behind after a crash only means a resend that the collector recognises).
    """

    SEGMENT_BYTES = 16 * 1024 * 1024

    def __init__(self, spool_dir: str | os.PathLike[str], max_bytes: int, fsync: bool = False):
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = max(64 * 1024, min(self.SEGMENT_BYTES, max_bytes // 4))
        base = Path(spool_dir)
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"EventServerHandler spool_dir {base}: cannot create it: {exc.strerror}"
            ) from exc
        self.dir, self._lock_fd = self._take_slot(base)
        self.where = str(self.dir)
        self._lock = threading.Lock()
        self.source = self._load_source()
        self._segments: list[tuple[int, Path]] = []  # (start offset, path), in order
        self._recover()
        self._writer: Any = None
        self._reader: tuple[int, Any] | None = None  # (segment start, open file)

    # ------------------------------------------------------------------------ setup

    @staticmethod
    def _take_slot(base: Path) -> tuple[Path, int]:
        for slot in range(256):
            slot_dir = base / str(slot)
            try:
                slot_dir.mkdir(exist_ok=True)
                fd = os.open(slot_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(
                    f"EventServerHandler spool_dir {base}: cannot write in it: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue  # another process's spool
                raise
            return slot_dir, fd
        raise ConfigError(f"EventServerHandler spool_dir {base}: all 256 slots are in use by other processes")

    def _load_source(self) -> str:
        path = self.dir / "source"
        try:
            source = path.read_text(encoding="ascii").strip()
            if source:
                return source
        except FileNotFoundError:
            pass
        source = "pyh-" + uuid.uuid4().hex
        self._write_atomic(path, source.encode())
        return source

    def _recover(self) -> None:
        for path in self.dir.glob("*.ndjson"):
            if path.stem.isdigit():
                self._segments.append((int(path.stem), path))
        self._segments.sort()
        self.end = 0
        if self._segments:
            start, last = self._segments[-1]
            data = last.read_bytes()
            whole = data.rfind(b"\n") + 1
            if whole < len(data):  # a line cut short by a crash: it was never sent, drop it
                with open(last, "r+b") as f:
                    f.truncate(whole)
            self.end = start + whole
        try:
            acked = int((self.dir / "acked").read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            acked = 0
        first = self._segments[0][0] if self._segments else self.end
        self.acked = min(max(acked, first), self.end)
        self.pending_events = sum(self._count_lines(start, path) for start, path in self._segments)

    def _count_lines(self, start: int, path: Path) -> int:
        data = path.read_bytes()
        skip = max(0, self.acked - start)
        return data.count(b"\n", skip)

    # ------------------------------------------------------------------------ write

    def append(self, lines: list[bytes]) -> int:
        with self._lock:
            room = self.max_bytes - (self.end - self.acked)
            taken = 0
            size = 0
            for line in lines:
                if size + len(line) > room:
                    break
                size += len(line)
                taken += 1
            if not taken:
                return 0
            if self._writer is None or self.end - self._segments[-1][0] >= self.segment_bytes:
                self._roll()
            self._writer.write(b"".join(lines[:taken]))
            self._writer.flush()
            if self.fsync:
                os.fsync(self._writer.fileno())
            self.end += size
            self.pending_events += taken
        return taken

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._segments and self._segments[-1][0] + self._segment_size(self._segments[-1][1]) == self.end:
            last_start, last_path = self._segments[-1]
            if self.end - last_start < self.segment_bytes:  # reopen the unfinished last segment
                self._writer = open(last_path, "ab")  # noqa: SIM115 - held until the next roll
                return
        path = self.dir / f"{self.end:020d}.ndjson"
        self._writer = open(path, "ab")  # noqa: SIM115 - held until the next roll
        self._segments.append((self.end, path))

    @staticmethod
    def _segment_size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------------- read

    def read(self, max_events: int, max_bytes: int) -> list[bytes]:
        with self._lock:
            start, end = self.acked, self.end
            if start >= end:
                return []
            seg_start, path = next((s, p) for s, p in reversed(self._segments) if s <= start)
            idx = self._segments.index((seg_start, path))
            seg_end = self._segments[idx + 1][0] if idx + 1 < len(self._segments) else end
        if self._reader is None or self._reader[0] != seg_start:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (seg_start, open(path, "rb"))  # noqa: SIM115 - reused across reads
        f = self._reader[1]
        f.seek(start - seg_start)
        limit = min(seg_end - start, max_bytes)
        data = f.read(limit)
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than max_bytes: it still goes, alone
            data += f.read(seg_end - start - len(data))
            cut = data.find(b"\n") + 1
        if cut == 0:
            # The segment ends before the next one starts: its tail is missing from the disk
            # (removed by hand?). Nothing to send there; go on from the next segment.
            with self._lock:
                if self.acked == start and idx + 1 < len(self._segments):
                    log.warning(
                        "EventServerHandler: spool %s: bytes %d-%d are missing", self.dir, start, seg_end
                    )
                    self.acked = seg_end
            return self.read(max_events, max_bytes) if idx + 1 < len(self._segments) else []
        lines = data[:cut].splitlines(keepends=True)
        return lines[:max_events]

    def ack(self, offset: int, events: int | None = None) -> None:
        """Everything before ``offset`` (a line boundary) is delivered: ``events`` lines."""
        with self._lock:
            offset = min(offset, self.end)
            if offset <= self.acked:
                return
            if events is None:
                events = self._lines_between(self.acked, offset)
            self.pending_events -= events
            self.acked = offset
            self._write_atomic(self.dir / "acked", str(offset).encode())
            # Segments wholly delivered go, except the one being written.
            while len(self._segments) > 1 and self._segments[1][0] <= offset:
                _, path = self._segments.pop(0)
                if self._reader is not None and self._reader[1].name == str(path):
                    self._reader[1].close()
                    self._reader = None
                path.unlink(missing_ok=True)

    def _lines_between(self, start: int, end: int) -> int:
        count = 0
        for i, (seg_start, path) in enumerate(self._segments):
            seg_end = self._segments[i + 1][0] if i + 1 < len(self._segments) else self.end
            if seg_end <= start or seg_start >= end:
                continue
            with open(path, "rb") as f:
                f.seek(max(0, start - seg_start))
                count += f.read(min(end, seg_end) - max(start, seg_start)).count(b"\n")
        return count

    def dead_letter(self, lines: list[bytes], reason: str) -> str | None:
        path = self.dir / "dead-letter.ndjson"
        with open(path, "ab") as f:
            f.write(b"".join(lines))
        note = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "events": len(lines), "reason": reason}
        with open(self.dir / "dead-letter.log", "ab") as f:
            f.write(orjson.dumps(note) + b"\n")
        return str(path)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._reader is not None:
                self._reader[1].close()
                self._reader = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock: the slot is free again
                self._lock_fd = -1


_Spool = _MemorySpool | _FileSpool


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
    sent_events: int = 0
    sent_batches: int = 0
    duplicate_batches: int = 0
    retries: int = 0
    dead_lettered: int = 0
    unsent_at_close: int = 0


# ----------------------------------------------------------------------------------- handler


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
            url: http://collector:8765/events
            token_env: LB_TOKEN
            spool_dir: /var/spool/myapp/audit
            topics: [generic, authfail]

    ``routing_key_mode`` is DSS's: ``from_message`` keeps the event's ``routingKey``;
    ``static`` sets ``routing_key`` on every event; ``static_if_missing`` only where the event
    has none. ``topics``/``routing_keys`` (``all`` or a list) select what is sent at all.
    ``envelope="log4j"`` sends the log4j file envelope (severity, logger, mdc, callTime,
    timestamp travel with the event); ``"bare"`` sends only the event, topic in
    ``X-Audit-Topic``. Sizes and durations take ``"1MiB"``/``"200ms"`` strings as well.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
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
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"EventServerHandler url: expected http(s)://host:port/events, got {url!r}")
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
        except ValueError as exc:
            raise ConfigError(f"EventServerHandler: {exc}") from None
        if queue_size < 1 or batch_max_events < 1:
            raise ConfigError("EventServerHandler queue_size and batch_max_events: must be at least 1")

        self.url = url
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

        headers = {"Content-Type": "application/x-ndjson", "X-Logbridge-Node": self.node}
        if compress:
            headers["Content-Encoding"] = "gzip"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if routing_key_mode != "from_message" and routing_key:
            headers["X-Audit-Routing-Key"] = routing_key  # for records whose message is not a dict
        if default_topic:
            headers["X-Audit-Topic"] = default_topic
        self._client_options: dict[str, Any] = {
            "headers": headers,
            "timeout": self.timeout,
            "verify": self._ssl_context(url, verify, ca_file, client_cert, client_key),
            "transport": transport,
        }
        self.spool_dir = spool_dir
        self.spool_fsync = spool_fsync
        self._start_lock = threading.Lock()
        self._started = False
        self._start_failed = False
        self._start()
        _HANDLERS.add(self)

    def _start(self) -> None:
        """Everything that a process owns alone: client, spool, queue, threads (again after fork)."""
        self._client = httpx.Client(**self._client_options)
        self._spool: _Spool = (
            _FileSpool(self.spool_dir, self.spool_max_bytes, self.spool_fsync)
            if self.spool_dir is not None
            else _MemorySpool(self.spool_max_bytes)
        )
        self._queue: deque[bytes | _FlushMark] = deque()
        self._queue_wake = threading.Event()  # set by emit / flush: the spooler has work
        self._send_wake = threading.Event()  # set by the spooler: the sender has work
        # Notified whenever something was delivered or a flush mark was reached.
        self._progress = threading.Condition()
        self._count_lock = threading.Lock()
        self._closing = False
        # Spool offset up to which the sender does not linger: the end of the last flush.
        self._flush_until = 0
        self._deadline: float | None = None
        self._batch_limit = self.batch_max_events
        self._down_since: float | None = None
        self._last_drop_log = 0.0
        self._dropped_logged = 0

        self._spooler = threading.Thread(target=self._spool_loop, name="logbridge-spooler", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="logbridge-sender", daemon=True)
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
        if isinstance(spool, _FileSpool) and spool._lock_fd >= 0:
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

    @staticmethod
    def _ssl_context(
        url: str, verify: bool | str, ca_file: str | None, client_cert: str | None, client_key: str | None
    ) -> ssl.SSLContext | bool:
        if not url.startswith("https://"):
            return True
        cafile = ca_file or (verify if isinstance(verify, str) else None)
        try:
            ctx = ssl.create_default_context(cafile=cafile)
            if verify is False:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if client_cert:
                ctx.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"EventServerHandler TLS: cannot load ca_file/client_cert/client_key: {exc}"
            ) from None
        return ctx

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
        if self._closing or threading.get_ident() in _OWN_THREADS:
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
        _OWN_THREADS.add(threading.get_ident())
        try:
            while True:
                try:
                    if self._spool_once():
                        return
                except Exception:  # never let a bug stop spooling: log, pause, go on
                    log.exception("EventServerHandler: unexpected error in the spooler; retrying in 1s")
                    time.sleep(1.0)
        finally:
            _OWN_THREADS.discard(threading.get_ident())

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
                taken = self._spool_append(lines)
                with self._count_lock:
                    self.stats.queued += taken
                    self.stats.dropped_spool_full += len(lines) - taken
            if mark is not None:
                mark.offset = self._spool.end
                self._flush_until = max(self._flush_until, mark.offset)
                with self._progress:
                    self._progress.notify_all()
            self._send_wake.set()
        self._log_drops()
        return self._closing and not queue

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
                "unreachable" if self._down_since is not None else "slower than the event rate",
            )
            self._dropped_logged = dropped
            self._last_drop_log = now

    # ---------------------------------------------------------------------------- sender

    def _send_loop(self) -> None:
        _OWN_THREADS.add(threading.get_ident())
        try:
            while True:
                try:
                    self._send_until_closed()
                    return
                except Exception:  # a bug must not stop delivery for good: log, pause, go on
                    log.exception("EventServerHandler: unexpected error in the sender; retrying in 1s")
                    self._sleep(1.0)
                    if self._deadline is not None and time.monotonic() >= self._deadline:
                        return
        finally:
            self._finish()
            _OWN_THREADS.discard(threading.get_ident())

    def _send_until_closed(self) -> None:
        """Sends batches in spool order until closing (or the close deadline) ends it."""
        attempt = 0
        while True:
            spool = self._spool
            # The spooler's liveness first: once it is gone, an empty spool stays empty.
            spooler_done = self._closing and not self._spooler.is_alive()
            if spool.acked >= spool.end:
                with self._progress:
                    self._progress.notify_all()
                if spooler_done:
                    return
                self._send_wake.wait(0.5)
                self._send_wake.clear()
                continue
            if attempt == 0:
                self._linger()
            if self._deadline is not None and time.monotonic() >= self._deadline:
                return
            outcome, delay = self._send_one()
            if outcome == "ok":
                attempt = 0
                with self._progress:
                    self._progress.notify_all()
                continue
            attempt += 1
            self.stats.retries += 1
            if delay is None:
                delay = backoff_delay(attempt, self.backoff_initial, self.backoff_max)
            if self._closing:
                if isinstance(self._spool, _FileSpool):
                    return  # what is left is safe on disk and goes first next time
                if self._deadline is not None:
                    delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            self._sleep(delay)

    def _linger(self) -> None:
        """Waits up to ``linger`` for a full batch, unless closing or a flush covers what is
        unsent; once the flushed lines are delivered, batches wait for ``linger`` again."""
        deadline = time.monotonic() + self.linger
        spool = self._spool
        while not self._closing and spool.acked >= self._flush_until:
            if spool.pending_events >= self._batch_limit or spool.end - spool.acked >= self.batch_max_bytes:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._send_wake.wait(remaining)
            self._send_wake.clear()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._closing:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._send_wake.wait(min(remaining, 0.5))
            self._send_wake.clear()
        if self._deadline is not None:
            time.sleep(max(0.0, min(end, self._deadline) - time.monotonic()))

    def _send_one(self) -> tuple[str, float | None]:
        """Sends the first unacknowledged batch; ("ok", None) or ("retry", delay or None)."""
        spool = self._spool
        lines = spool.read(self._batch_limit, self.batch_max_bytes)
        if not lines:
            return "ok", None
        headers: dict[str, str] = {}
        start = spool.acked
        if self.envelope == "bare":
            lines, bare, topic = self._bare_batch(lines)
            if bare is None:  # no event to take out of these lines, now or on any retry
                end = start + sum(len(line) for line in lines)
                self._dead_letter(
                    lines,
                    end,
                    "not a log4j envelope holding an event that can be written bare "
                    "(a text formatter with envelope=bare?)",
                    lead="envelope=bare cannot send",
                )
                return "ok", None
            body = bare
            if topic:
                headers["X-Audit-Topic"] = topic
        else:
            body = b"".join(lines)
        end = start + sum(len(line) for line in lines)
        headers["X-Logbridge-Source"] = spool.source
        headers["X-Logbridge-Range"] = f"{start}-{end}"
        if self.compress:
            body = gzip.compress(body, compresslevel=5, mtime=0)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._went_down(f"{type(exc).__name__}: {exc}")
            return "retry", None
        status = response.status_code
        if status == 200:
            self._came_back()
            duplicate = _json_field(response, "duplicate") is True
            spool.ack(end, len(lines))
            with self._count_lock:
                if duplicate:
                    self.stats.duplicate_batches += 1
                else:
                    self.stats.sent_events += len(lines)
                    self.stats.sent_batches += 1
            if self._batch_limit < self.batch_max_events:
                self._batch_limit = min(self.batch_max_events, self._batch_limit * 2)
            return "ok", None
        if status == 409:
            self._came_back()
            high_water = _json_field(response, "high_water")
            if isinstance(high_water, int) and high_water > start:
                # The collector's copy ends at one of our batch ends, i.e. a line boundary;
                # round up to one all the same, so a stray value cannot split a line.
                offset, count = start, 0
                for line in lines:
                    if offset >= high_water:
                        break
                    offset += len(line)
                    count += 1
                spool.ack(offset, count)
                return "ok", None
            self._went_down(f"HTTP 409 with an unusable high_water {high_water!r}")
            return "retry", None
        if status in (408, 429) or status >= 500:
            self._went_down(f"HTTP {status}")
            return "retry", retry_after(response.headers.get("Retry-After"))
        if status == 413 and len(lines) > 1:
            self._batch_limit = max(1, len(lines) // 2)
            return "ok", None
        self._came_back()
        self._dead_letter(lines, end, f"HTTP {status} from {self.url}: {response.text[:500]}")
        return "ok", None

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
            bare = _bare_event(line)
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
        return run, b"".join(events), topic or self.default_topic

    def _dead_letter(
        self, lines: list[bytes], end: int, reason: str, lead: str = "the collector refused"
    ) -> None:
        try:
            where = self._spool.dead_letter(lines, reason)
        except OSError as exc:
            where = None
            reason += f" (and the dead-letter file could not be written: {exc})"
        self._spool.ack(end, len(lines))
        with self._count_lock:
            self.stats.dead_lettered += len(lines)
        log.error(
            "EventServerHandler: %s %d audit events, not retrying: %s; %s",
            lead,
            len(lines),
            reason,
            f"kept in {where}" if where else "they are lost (no spool_dir to keep them in)",
        )

    def _went_down(self, why: str) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "EventServerHandler: collector %s unavailable (%s); spooling to %s and retrying",
                self.url,
                why,
                self._spool.where,
            )

    def _came_back(self) -> None:
        if self._down_since is not None:
            log.info(
                "EventServerHandler: collector %s is back after %.1fs; draining %d spooled bytes",
                self.url,
                time.monotonic() - self._down_since,
                self._spool.end - self._spool.acked,
            )
            self._down_since = None

    def _finish(self) -> None:
        """Sender exit: the spooler is done with the spool, then both are closed."""
        self._spooler.join(timeout=5)
        unsent = self._spool.pending_events
        self.stats.unsent_at_close = unsent
        self._log_drops(force=True)
        if unsent:
            if isinstance(self._spool, _FileSpool):
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
        self._client.close()
        with self._progress:
            self._progress.notify_all()

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
                if not self._sender.is_alive():
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
        self._send_wake.set()
        self._sender.join(timeout=wait + 1.0)
        if self._sender.is_alive():
            log.warning(
                "EventServerHandler: still sending to %s after close_timeout; leaving it behind", self.url
            )
        super().close()

    def __repr__(self) -> str:
        where = self._spool.where if getattr(self, "_started", False) else "not started"
        return f"<EventServerHandler {self.url} spool={where} ({logging.getLevelName(self.level)})>"


def _bare_event(line: bytes) -> tuple[bytes, str | None] | None:
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


def _json_field(response: httpx.Response, key: str) -> Any:
    with contextlib.suppress(ValueError, orjson.JSONDecodeError):
        data = orjson.loads(response.content)
        if isinstance(data, dict):
            return data.get(key)
    return None
