"""The logbridge exception tree.

::

    LogbridgeError
    ├── ConfigError          a config file is missing, unreadable or invalid (exit code 2)
    │   └── MissingExtra     a destination needs an optional dependency: names the extra to install
    ├── EnvelopeError        one incoming line is not a readable audit event
    ├── BodyError            a whole request body cannot be read
    │   ├── BodyTooLarge     over ``limits.max_body_bytes``, compressed or inflated (HTTP 413)
    │   └── UnsupportedEncoding  a ``Content-Encoding`` we do not speak (HTTP 415)
    ├── StorageUnavailable   a destination or the state dir cannot take writes (HTTP 503)
    │   └── DestinationError     a store refused an operation (fsspec / SDK errors mapped at the sink seam)
    │       ├── DestinationNotFound  its bucket, container or folder does not exist
    │       └── DestinationDenied    credentials or permissions were refused
    └── Log4jConfigError     a log4j properties file cannot be translated

Third-party errors are translated at the boundary with ``raise ... from exc`` so that
callers only ever need to catch these.
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


class MissingExtra(ConfigError):
    """A destination type or URL needs an optional dependency that is not installed."""

    def __init__(self, message: str, *, extra: str, source: str | None = None):
        self.extra = extra
        super().__init__(message, source=source)


class EnvelopeError(LogbridgeError):
    """One incoming line is not a readable audit event; ``reason`` is short and stable."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class BodyError(LogbridgeError):
    status = 400


class BodyTooLarge(BodyError):
    status = 413


class UnsupportedEncoding(BodyError):
    status = 415


class StorageUnavailable(LogbridgeError):
    """Storage cannot take writes now; the sender should retry later."""


class DestinationError(StorageUnavailable):
    """A destination's store refused an operation; the message names the destination."""


class DestinationNotFound(DestinationError):
    """The destination's bucket, container or folder does not exist."""


class DestinationDenied(DestinationError):
    """The destination's store refused the credentials or the permission."""


class Log4jConfigError(LogbridgeError):
    """A log4j properties file cannot be read or translated."""
