"""Python handlers that behave like log4j 1.2's appenders.

- `ConsoleAppenderHandler`: a `StreamHandler` on ``sys.stdout``/``sys.stderr`` (``Follow`` looks
  the stream up on every event, as log4j's ``Follow=true`` does).
- `FileAppenderHandler`: a `FileHandler` that creates missing parent directories, opens the file
  at configuration time (log4j does), and honours ``Append``, ``Encoding``, ``BufferedIO``,
  ``BufferSize`` and ``ImmediateFlush``.
- `RollingFileAppenderHandler`: log4j's size rollover — it writes the event *then* rolls when the
  file has reached ``MaxFileSize`` (counting UTF-16 chars as log4j's CountingQuietWriter does),
  to ``file.1 … file.N``.
- `DailyRollingFileAppenderHandler`: rolls at the ``DatePattern`` boundary, before writing the
  first event of the new period, to ``file`` + the pattern formatted at the previous period.
- Both rolling handlers take ``retention`` (off by default): backups the shipper has not shipped
  are kept rather than deleted, and deletions of unshipped bytes are reported (`retention`).
- `AsyncAppenderHandler`: a `QueueHandler` whose `QueueListener` feeds named handlers.
- `SyslogAppenderHandler`: log4j's SyslogAppender packets over UDP.

Layouts carry their own line end (``%n``), so every handler here has ``terminator = ""``.
When log4j would have accepted the appender but refuse every event (no layout, no ``File``), the
handler is built *broken*: it prints log4j's error once, on the first event, and drops events, as
log4j's OnlyOnceErrorHandler does.
"""

from __future__ import annotations

import codecs
import logging
import logging.handlers
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from .charsets import python_codec
from .classes import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_DATE_PATTERN,
    DEFAULT_MAX_BACKUP_INDEX,
    DEFAULT_MAX_FILE_SIZE,
)
from .converters import throwable_lines
from .dateformat import SimpleDateFormat, next_boundary_ms, periodicity
from .levels import OFF
from .retention import RetentionGuard, RetentionSettings
from .retention import attempt as _try


def _log4j_say(level: str, message: str) -> None:
    # LogLog.error/warn: straight to the process's stderr, never through logging.
    try:
        sys.stderr.write(f"log4j:{level} {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def _log4j_error(message: str) -> None:
    _log4j_say("ERROR", message)


def utf16_len(s: str) -> int:
    """String.length(): characters outside the BMP count twice."""
    n = len(s)
    if not s.isascii():
        n += sum(1 for ch in s if ord(ch) > 0xFFFF)
    return n


def layout_text(formatter: logging.Formatter | None, which: str) -> str | None:
    """The layout's ``header`` or ``footer`` (HTMLLayout has both), None when it has none."""
    make = getattr(formatter, which, None)
    text = make() if callable(make) else None
    return text if isinstance(text, str) else None


class _Log4jMixin:
    terminator = ""
    broken: str | None = None
    _broken_reported = False
    _headed_stream: object = None  # the stream whose header is written
    formatter: logging.Formatter | None

    def _refuse(self) -> bool:
        if self.broken is None:
            return False
        if not self._broken_reported:
            self._broken_reported = True
            _log4j_error(self.broken)
        return True

    def _write_layout_text(self, which: str) -> str:
        """WriterAppender.writeHeader/writeFooter: the layout's text, straight to the open
        stream (not through filters or thresholds); returns what was written."""
        text = layout_text(self.formatter, which)
        if text is None or self.broken is not None or not self._stream_open():
            return ""
        try:
            self._write_raw(text)
        except Exception:  # noqa: BLE001 - a header must not stop configuration
            _log4j_error(f"Failed to write the layout's {which}.")
            return ""
        if which == "header":
            self._headed_stream = getattr(self, "stream", None)
        return text

    def _stream_open(self) -> bool:
        return getattr(self, "stream", None) is not None

    def _write_raw(self, text: str) -> None:
        stream: Any = getattr(self, "stream")  # noqa: B009 - set by the logging base class
        stream.write(text)
        stream.flush()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        # log4j sets the layout, then activateOptions() opens the file and writes the header.
        super().setFormatter(fmt)  # type: ignore[misc]
        stream = getattr(self, "stream", None)
        if stream is None or stream is not self._headed_stream:  # a second setFormatter: no second header
            self._header_written(self._write_layout_text("header"))

    def _header_written(self, text: str) -> None:
        """Hook: the header was written when the layout was set."""


class ConsoleAppenderHandler(_Log4jMixin, logging.StreamHandler):  # type: ignore[type-arg]
    """``org.apache.log4j.ConsoleAppender``."""

    def __init__(
        self,
        target: str = "System.out",
        follow: bool = False,
        immediate_flush: bool = True,
        broken: str | None = None,
        encoding: str | None = None,
    ):
        self.target = target
        self.follow = follow
        self.immediate_flush = immediate_flush
        self.broken = broken
        self._closed = False
        self._pending_header = ""
        super().__init__(self._current())
        # Encoding: the appender's own charset, written to the stream's bytes (an unknown one was
        # reported while configuring; the stream's charset is used then, as log4j uses the JVM's).
        self._encoder_name = python_codec(encoding) if encoding is not None else None
        self._encoder = (
            codecs.getincrementalencoder(self._encoder_name)("replace") if self._encoder_name else None
        )

    def _current(self) -> TextIO:
        return sys.stderr if self.target == "System.err" else sys.stdout

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - logging's name
        logging.Handler.setFormatter(self, fmt)
        if self._headed_stream is not None:
            return  # the header went out with the first formatter
        # log4j writes the header into its OutputStreamWriter, whose buffer holds it until the
        # first event (or the footer) is flushed: it reaches the console with that event.
        header = layout_text(fmt, "header")
        self._pending_header = "" if header is None or self.broken is not None else header
        if self._pending_header:
            self._headed_stream = self.stream

    def _write_raw(self, text: str, flush: bool = True) -> None:
        stream = self._current() if self.follow else self.stream
        text, self._pending_header = self._pending_header + text, ""
        if self._encoder is not None and self._encoder_name is not None:
            data = self._encoder.encode(text)
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                stream.flush()  # what went through the text layer comes first
                buffer.write(data)
                if flush:
                    buffer.flush()
                return
            # A text-only stream (io.StringIO, a test's capture): the characters the charset kept.
            text = data.decode(self._encoder_name, "replace")
        try:
            stream.write(text)
        except UnicodeEncodeError:
            # A character the stream's own charset cannot hold: Java's writer prints '?', it does
            # not lose the event.
            charset = getattr(stream, "encoding", None) or "ascii"
            stream.write(text.encode(charset, "replace").decode(charset))
        if flush:
            stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self._refuse():
            return
        try:
            self._write_raw(self.format(record), self.immediate_flush)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            if not self._closed:
                self._closed = True
                self._write_layout_text("footer")
        finally:
            self.release()
        super().close()


class FileAppenderHandler(_Log4jMixin, logging.FileHandler):
    """``org.apache.log4j.FileAppender``."""

    def __init__(
        self,
        filename: str,
        append: bool = True,
        encoding: str | None = "utf-8",
        buffered_io: bool = False,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        immediate_flush: bool = True,
        broken: str | None = None,
    ):
        self.append = append
        self.buffered_io = buffered_io
        self.buffer_size = buffer_size
        # BufferedIO switches ImmediateFlush off, as FileAppender.setFile does.
        self.immediate_flush = immediate_flush and not buffered_io
        self.broken = broken
        # Relative names resolve against the working directory, as java.io.File does.
        # Java's writers replace what the charset cannot encode with '?'; so does errors="replace".
        codec = (python_codec(encoding) or "utf-8") if encoding is not None else None
        super().__init__(filename, mode="a" if append else "w", encoding=codec, delay=True, errors="replace")
        if broken is None:
            try:
                self.stream = self._open()
            except OSError:
                self.broken = None
                # FileAppender.setFile() starts with reset(), which forgets the file name
                # before the error is reported: log4j prints "null" here.
                _log4j_error(f"setFile(null,{str(append).lower()}) call failed.")
                # OnlyOnceErrorHandler has used its one message: later events drop silently.
                self.broken = ""
                self._broken_reported = True
        self._after_open()

    def _open(self) -> Any:
        parent = os.path.dirname(self.baseFilename)
        try:
            stream = open(  # noqa: SIM115 - owned by the handler until close()
                self.baseFilename,
                self.mode,
                encoding=self.encoding,
                errors=self.errors,
                buffering=self.buffer_size if self.buffered_io else -1,
            )
        except FileNotFoundError:
            # FileAppender.setFile creates missing parent directories, then retries once.
            if not parent or os.path.exists(parent):
                raise
            os.makedirs(parent, exist_ok=True)
            stream = open(  # noqa: SIM115
                self.baseFilename,
                self.mode,
                encoding=self.encoding,
                errors=self.errors,
                buffering=self.buffer_size if self.buffered_io else -1,
            )
        return stream

    def _after_open(self) -> None:
        """Hook for subclasses: the file has just been opened (or failed to)."""

    def write_event(self, text: str) -> None:
        if self.stream is None:
            self.stream = self._open()
        self.stream.write(text)
        if self.immediate_flush:
            self.stream.flush()

    def emit(self, record: logging.LogRecord) -> None:
        if self._refuse():
            return
        try:
            self.write_event(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.acquire()
        try:
            self._write_layout_text("footer")  # once: the stream is None after the first close
        finally:
            self.release()
        super().close()


class _RetentionMixin(FileAppenderHandler):
    """The retention guard of a rolling handler (`retention`): None keeps log4j's deletions."""

    retention: RetentionGuard | None = None

    def _guard(self, filename: str, retention: Mapping[str, Any] | RetentionSettings | None) -> None:
        if retention is None:
            return
        kind = type(self).__name__
        settings = (
            retention
            if isinstance(retention, RetentionSettings)
            else RetentionSettings.from_config(retention, f"{kind} {filename}")
        )
        self.retention = RetentionGuard(settings, f"{kind} [{filename}]", _log4j_say)

    def handle(self, record: logging.LogRecord) -> bool:
        rv = super().handle(record)
        guard = self.retention
        if guard is not None and guard.has_pending and self.lock is not None:
            # Once the handler's lock is released: the loss events go through other handlers.
            try:
                guard.report_pending(self.name or self.baseFilename, self.lock)
            except Exception:
                self.handleError(record)
        return rv


class RollingFileAppenderHandler(_RetentionMixin):
    """``org.apache.log4j.RollingFileAppender``; ``retention`` (a mapping of
    `RetentionSettings`) keeps backups the shipper has not shipped yet (`retention`)."""

    def __init__(
        self,
        filename: str,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_backup_index: int = DEFAULT_MAX_BACKUP_INDEX,
        retention: Mapping[str, Any] | RetentionSettings | None = None,
        **kwargs: Any,
    ):
        self.max_file_size = max_file_size
        self.max_backup_index = max_backup_index
        self.count = 0
        self.next_rollover = 0
        self._guard(filename, retention)
        super().__init__(filename, **kwargs)

    def _after_open(self) -> None:
        try:
            self.count = os.path.getsize(self.baseFilename) if self.append else 0
        except OSError:
            self.count = 0

    def write_event(self, text: str) -> None:
        super().write_event(text)
        self.count += utf16_len(text)
        if self.count >= self.max_file_size and self.count >= self.next_rollover:
            self.roll_over()

    def roll_over(self) -> None:
        """RollingFileAppender.rollOver: file.N is dropped, file.i → file.i+1, file → file.1.
        With a guard that keeps, file.N and older are kept (renumbered past N) until shipped."""
        self.next_rollover = self.count + self.max_file_size
        ok = True
        base = self.baseFilename
        guard = self.retention
        if guard is not None and guard.keeps:
            ok, moved_live = guard.make_room(base, max(self.max_backup_index, 0), self._close_stream)
            if not ok or moved_live:
                # A failed rename: go on writing the same file, as log4j does.
                self._reopen("a" if not ok else "w")
                if ok:
                    self.next_rollover = 0
                return
        if self.max_backup_index > 0:
            last = f"{base}.{self.max_backup_index}"
            if os.path.exists(last):
                if guard is not None and not guard.keeps:
                    guard.retire(last, f"MaxBackupIndex={self.max_backup_index}", set_aside=False)
                ok = _try(os.remove, last)
            for i in range(self.max_backup_index - 1, 0, -1):
                if not ok:
                    break
                if os.path.exists(f"{base}.{i}"):
                    ok = _try(os.rename, f"{base}.{i}", f"{base}.{i + 1}")
            if ok:
                self._close_stream()
                ok = _try(os.rename, base, f"{base}.1")
                if not ok:
                    self._reopen("a")
        if ok:
            self._reopen("w")
            self.next_rollover = 0

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]

    def _reopen(self, mode: str) -> None:
        self._close_stream()
        saved, self.mode = self.mode, mode
        try:
            self.stream = self._open()
        finally:
            self.mode = saved
        self.count = os.path.getsize(base) if mode == "a" and os.path.exists(base := self.baseFilename) else 0
        # setFile writes the header through the counting writer; in append mode the count is
        # then reset to the file's length, which does not hold the unflushed header yet.
        header = self._write_layout_text("header")
        if mode == "w":
            self.count += utf16_len(header)

    def _header_written(self, text: str) -> None:
        if not self.append:
            self.count += utf16_len(text)


class DailyRollingFileAppenderHandler(_RetentionMixin):
    """``org.apache.log4j.DailyRollingFileAppender``; ``clock`` returns epoch seconds;
    ``retention`` sets aside (rather than deletes) an unshipped dated file in the way."""

    def __init__(
        self,
        filename: str,
        date_pattern: str = DEFAULT_DATE_PATTERN,
        clock: Callable[[], float] = time.time,
        retention: Mapping[str, Any] | RetentionSettings | None = None,
        **kwargs: Any,
    ):
        self._guard(filename, retention)
        self.date_pattern = date_pattern
        self.clock = clock
        self.fmt = SimpleDateFormat(date_pattern)
        self.kind = periodicity(self.fmt)
        self.next_check = int(clock() * 1000) - 1
        self.scheduled_filename = ""
        super().__init__(filename, **kwargs)

    def _after_open(self) -> None:
        # The name the current file will get: the period of its last modification.
        try:
            mtime_ms = int(os.stat(self.baseFilename).st_mtime * 1000)
        except OSError:
            mtime_ms = 0
        self.scheduled_filename = self.baseFilename + self.fmt.format_ms(mtime_ms)

    def write_event(self, text: str) -> None:
        now = int(self.clock() * 1000)
        if now >= self.next_check and self.kind is not None:
            self.next_check = next_boundary_ms(now, self.kind)
            self.roll_over(now)
        super().write_event(text)

    def roll_over(self, now_ms: int) -> None:
        dated = self.baseFilename + self.fmt.format_ms(now_ms)
        if self.scheduled_filename == dated:
            return
        if self.stream is not None:
            self.stream.close()
            self.stream = None  # type: ignore[assignment]
        if os.path.exists(self.scheduled_filename):
            if self.retention is not None:
                why = f"a dated file of the same name [{self.scheduled_filename}] was in the way"
                self.retention.retire(self.scheduled_filename, why, set_aside=True)
            if os.path.exists(self.scheduled_filename):
                _try(os.remove, self.scheduled_filename)
        if not _try(os.rename, self.baseFilename, self.scheduled_filename):
            _log4j_error(f"Failed to rename [{self.baseFilename}] to [{self.scheduled_filename}].")
        saved, self.mode = self.mode, "a"
        try:
            self.stream = self._open()
        finally:
            self.mode = saved
        self._write_layout_text("header")
        self.scheduled_filename = dated


class _DrainingListener(logging.handlers.QueueListener):
    """A `QueueListener` whose stop waits for room in a bounded queue: the stdlib's puts its stop
    marker with ``put_nowait``, so closing while the queue is full (events enqueued faster than
    the thread had run) raised ``queue.Full`` and left the thread running."""

    def __init__(self, bounded: queue.Queue[Any], *handlers: logging.Handler) -> None:
        super().__init__(bounded, *handlers, respect_handler_level=True)
        self._bounded = bounded

    def enqueue_sentinel(self) -> None:
        # Blocks only until the listener thread, which is emptying the queue, makes room.
        self._bounded.put(getattr(self, "_sentinel", None))


class AsyncAppenderHandler(logging.handlers.QueueHandler):
    """``org.apache.log4j.AsyncAppender``: a bounded queue and a listener thread feeding the
    named handlers (resolved by name on first use, since dictConfig builds them in any order).
    ``blocking=False`` drops events when the queue is full, as log4j's ``Blocking=false``."""

    def __init__(
        self,
        appenders: Sequence[str] = (),
        buffer_size: int = 128,
        blocking: bool = True,
        location_info: bool = False,
    ):
        self._q: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=max(buffer_size, 1))
        super().__init__(self._q)
        self.appender_names = list(appenders)
        self.blocking = blocking
        self.dropped = 0
        self._listener: logging.handlers.QueueListener | None = None
        self._lock_start = threading.Lock()

    def _start(self) -> None:
        with self._lock_start:
            if self._listener is not None:
                return
            targets = [logging._handlers[n] for n in self.appender_names if n in logging._handlers]  # type: ignore[attr-defined]
            self._listener = _DrainingListener(self._q, *targets)
            self._listener.start()

    def enqueue(self, record: logging.LogRecord) -> None:
        if self._listener is None:
            self._start()
        if self.blocking:
            self._q.put(record)
        else:
            try:
                self._q.put_nowait(record)
            except queue.Full:
                self.dropped += 1

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The target handlers format the record themselves (with their own layouts); only
        # make it safe to hand to another thread, keeping MDC/NDC as bound at the call.
        from .. import context

        if not hasattr(record, "mdc"):
            record.mdc = context.get_mdc()
        if not hasattr(record, "ndc"):
            record.ndc = context.get_ndc()
        record.getMessage()
        return record

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        super().close()


_FACILITIES = {
    "KERN": 0, "USER": 1, "MAIL": 2, "DAEMON": 3, "AUTH": 4, "SYSLOG": 5, "LPR": 6, "NEWS": 7,
    "UUCP": 8, "CRON": 9, "AUTHPRIV": 10, "FTP": 11, "LOCAL0": 16, "LOCAL1": 17, "LOCAL2": 18,
    "LOCAL3": 19, "LOCAL4": 20, "LOCAL5": 21, "LOCAL6": 22, "LOCAL7": 23,
}  # fmt: skip


def syslog_severity(levelno: int) -> int:
    """Level.getSyslogEquivalent."""
    if levelno >= logging.CRITICAL:
        return 0
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class SyslogAppenderHandler(_Log4jMixin, logging.Handler):
    """``org.apache.log4j.net.SyslogAppender``: UDP packets of ``<PRI>`` + optional header and
    facility + the layout; packets over 1019 bytes are split in halves marked ``...``; each
    throwable line is its own packet (a leading tab becomes four spaces), as log4j sends them.
    ``SyslogHost`` is ``host`` or ``host:port`` (514 by default)."""

    def __init__(
        self,
        syslog_host: str = "localhost",
        facility: str = "USER",
        facility_printing: bool = False,
        header: bool = False,
        broken: str | None = None,
    ):
        super().__init__()
        self.broken = broken
        host, _, port = syslog_host.strip().partition(":")
        self.address = (host or "localhost", int(port) if port.isdigit() else 514)
        self.facility_name = facility.strip().upper()
        self.facility = _FACILITIES.get(self.facility_name, 1)
        self.facility_printing = facility_printing
        self.header = header
        self.hostname = socket.gethostname()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def _packet_header(self, created: float) -> str:
        if not self.header:
            return ""
        stamp = time.strftime("%b %d %H:%M:%S ", time.localtime(created))
        if stamp[4] == "0":
            stamp = stamp[:4] + " " + stamp[5:]
        return stamp + self.hostname + " "

    def emit(self, record: logging.LogRecord) -> None:
        if self._refuse():
            return
        try:
            fmt = self.formatter
            layout = getattr(fmt, "format_layout", None)
            packet = layout(record) if layout is not None else self.format(record)
            hdr = self._packet_header(record.created)
            if self.facility_printing or hdr:
                packet = hdr + (self.facility_name.lower() + ":" if self.facility_printing else "") + packet
            pri = f"<{(self.facility << 3) | syslog_severity(record.levelno)}>"
            if len(packet) > 256:
                self._split(pri, hdr, packet)
            else:
                self._send(pri + packet)
            if layout is not None:
                for line in throwable_lines(record, logging.Formatter()):
                    self._send(pri + hdr + ("    " + line[1:] if line.startswith("\t") else line))
        except Exception:
            self.handleError(record)

    def _split(self, pri: str, hdr: str, packet: str) -> None:
        if len(packet.encode("utf-8")) <= 1019:
            self._send(pri + packet)
            return
        split = len(hdr) + (len(packet) - len(hdr)) // 2
        self._split(pri, hdr, packet[:split] + "...")
        self._split(pri, hdr, hdr + "..." + packet[split:])

    def _send(self, msg: str) -> None:
        # SyslogWriter sends at most 1024 bytes of a packet.
        self.sock.sendto(msg.encode("utf-8")[:1024], self.address)

    def close(self) -> None:
        self.sock.close()
        super().close()


class OffHandler(logging.NullHandler):
    """An appender whose Threshold is OFF: it takes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(OFF)


__all__ = [
    "AsyncAppenderHandler",
    "ConsoleAppenderHandler",
    "DailyRollingFileAppenderHandler",
    "FileAppenderHandler",
    "RollingFileAppenderHandler",
    "SyslogAppenderHandler",
    "utf16_len",
]
