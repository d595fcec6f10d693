"""The logbridge exception tree.

::

    LogbridgeError
    ├── ConfigError              a config file is missing, unreadable or invalid (exit code 2)
    │   ├── MissingExtra         a destination needs an optional dependency: names the extra to install
    │   └── StateDirInUse        another live collector holds the state dir (collector.lock)
    │       └── StateDirBusy     another live shipper holds the state dir (lock)
    ├── EnvelopeError            one incoming line is not a readable audit event
    │   └── BadMessage           a NATS message is not the collector's format (a writer dead-letters it)
    ├── RequestError             an HTTP request the collector cannot read (HTTP 400)
    │   ├── HeadersTooLarge      request line and headers over ``limits.max_header_bytes``
    │   └── BodyError            a whole request body cannot be read
    │       ├── BodyTooLarge     over ``limits.max_body_bytes``, compressed or inflated (HTTP 413)
    │       ├── UnsupportedEncoding  a ``Content-Encoding`` we do not speak (HTTP 415)
    │       └── BodyCut          the connection ended before the body did (nothing is stored)
    ├── StorageUnavailable       a destination or the state dir cannot take writes (HTTP 503)
    │   └── DestinationError     a store refused an operation (fsspec / SDK errors mapped at the sink seam)
    │       ├── DestinationNotFound  its bucket, container or folder does not exist
    │       ├── DestinationDenied    credentials or permissions were refused
    │       ├── DestinationUnreachable  no connection to it now (NATS down: reconnecting)
    │       ├── DestinationFull      it refuses new data at a limit (a JetStream stream's max_bytes)
    │       └── DestinationTimeout   no answer in time (a JetStream publish ack)
    ├── Stopped                  the shipper was asked to stop while a batch was being retried
    ├── ReportError              ``logbridge report`` cannot answer: a stored line it cannot read, a bad layout
    ├── ManifestError            a store manifest or retention record cannot be read (``logbridge verify``)
    ├── CheckpointUnreadable     another process cannot read a shipper's checkpoint (retention guard)
    └── Log4jConfigError         a log4j properties file cannot be translated
        └── DateFormatError      a SimpleDateFormat pattern Java rejects (also a ValueError)

Every class is defined here; the modules that raise one import it from here (and keep the
name importable where it was first defined: ``logbridge.shipper.engine.StateDirBusy``,
``logbridge.client.Stopped``, ``logbridge.log4j.dateformat.DateFormatError``,
``logbridge.collector.statelock.StateDirInUse``). Third-party errors are translated at the
boundary with ``raise ... from exc`` so that callers only ever need to catch these.
"""

from __future__ import annotations


class LogbridgeError(Exception):
    """Base class of every error logbridge raises on purpose."""


class ConfigError(LogbridgeError):
    """A configuration problem; the message names the file, the key and what was expected."""

    def __init__(self, message: str, *, source: str | None = None, problems: list[str] | None = None):
        self.source = source
        self.problems = problems or [message]
        super().__init__(message)


class StateDirInUse(ConfigError):
    """Another live process holds the state dir: a set-up error like a bad config (one message,
    exit code 2), raised before anything in the state dir is touched."""


class StateDirBusy(StateDirInUse):
    """Another shipper holds this state dir (two shippers would fight over the checkpoints).
    A set-up error like a bad config: one message, exit code 2, as for the collector."""


class MissingExtra(ConfigError):
    """A destination type or URL needs an optional dependency that is not installed."""

    def __init__(self, message: str, *, extra: str, source: str | None = None):
        self.extra = extra
        super().__init__(message, source=source)


class ReportError(LogbridgeError):
    """``logbridge report`` cannot answer; the message names the file and line, or the option."""


class EnvelopeError(LogbridgeError):
    """One incoming line is not a readable audit event; ``reason`` is short and stable."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class BadMessage(EnvelopeError):
    """A JetStream message a ``logbridge consume`` writer cannot store (docs/nats.md): it goes
    to the dead letter with ``reason``, then is acked."""


class RequestError(LogbridgeError):
    """An HTTP request the collector cannot read; ``status`` is its answer."""

    status = 400


class HeadersTooLarge(RequestError):
    """Raised from a parser callback: httptools turns it into a parser error, uvicorn into a 400."""


class BodyError(RequestError):
    status = 400


class BodyTooLarge(BodyError):
    status = 413


class UnsupportedEncoding(BodyError):
    status = 415


class BodyCut(BodyError):
    """The connection ended before the body did (the sender died or the connection broke): the
    request is discarded whole and nobody is left to answer (logged as 499)."""

    status = 499


class StorageUnavailable(LogbridgeError):
    """Storage cannot take writes now; the sender should retry later."""


class Stopped(LogbridgeError):
    """Shutdown was asked for while a batch was still being retried (it is re-sent next run)."""


class DestinationError(StorageUnavailable):
    """A destination's store refused an operation; the message names the destination."""


class DestinationNotFound(DestinationError):
    """The destination's bucket, container or folder does not exist."""


class DestinationDenied(DestinationError):
    """The destination's store refused the credentials or the permission."""


class DestinationUnreachable(DestinationError):
    """No connection to the destination now (it is being retried in the background)."""


class DestinationFull(DestinationError):
    """The destination refuses new data at one of its limits; it takes data again once room is made."""


class DestinationTimeout(DestinationError):
    """The destination did not answer in time; what was sent may or may not have been taken."""


class ManifestError(LogbridgeError):
    """A manifest or retention record (docs/tamper-evidence.md) is not in the format: torn,
    edited by hand, too big, or not a manifest at all. ``verify`` reports it as tampering."""


class CheckpointUnreadable(LogbridgeError):
    """A shipper's checkpoint cannot be read by another process (missing, unreadable, another
    version): nothing is known to be shipped. The message names the file and why."""


class Log4jConfigError(LogbridgeError):
    """A log4j properties file cannot be read or translated."""


class DateFormatError(Log4jConfigError, ValueError):
    """The pattern is one SimpleDateFormat rejects (its message is Java's). Also a ValueError,
    as a bad argument to `logbridge.log4j.dateformat.SimpleDateFormat`."""
