"""The audit API: one call per user or system action, written through ``dku.audit.<topic>``.

::

    from logbridge import audit

    with audit.request("/api/projects/get-summary", user="admin"):
        audit.emit("generic", "project-get-summary", projectKey="P1")

Each event goes through a small structlog pipeline and comes out as one stdlib `logging`
record on the ``dku.audit.<topic>`` logger, whose ``msg`` is the event dict (``msgType``
first). So whatever handlers `logbridge.configure` attached to those loggers (a per-topic
rolling JSON audit file, an `EventServerHandler`, ...) receive it, exactly as log4j's
appenders receive DSS's audit events.

Context travels with the record rather than inside the event:

- ``record.mdc``: the MDC (structlog contextvars, see `logbridge.context`) as it was when
  ``emit`` was called, so a handler formatting on another thread still sees it;
- ``record.callTime``: the milliseconds since the enclosing `request` started, when there is one.

Speed matters because audit calls sit on request paths: ``emit`` builds the record itself
(no ``findCaller`` stack walk, which an audit event never prints) and hands it to
``Logger.handle``, which keeps levels, filters, propagation and ``disabled`` working.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

import structlog
from structlog.contextvars import get_contextvars
from structlog.typing import EventDict, WrappedLogger

from .envelope import AUDIT_LOGGER_PREFIX

__all__ = ["AuditLogger", "current_call_time_ms", "emit", "get_logger", "request"]

F = TypeVar("F", bound=Callable[..., Any])

# The monotonic start of the enclosing request; None outside of one. Not in the MDC on
# purpose: it is bookkeeping for ``callTime``, not something to print.
_request_start: ContextVar[float | None] = ContextVar("logbridge_request_start", default=None)

# The record's ``pathname``: audit records have no useful source location and finding one
# would cost a stack walk per event.
_AUDIT_SOURCE = "(audit)"


def current_call_time_ms() -> int | None:
    """Milliseconds since the enclosing `request` began, or None outside of a request."""
    start = _request_start.get()
    if start is None:
        return None
    return int((time.monotonic() - start) * 1000)


# ---------------------------------------------------------------------------------- pipeline


def _msg_type_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Puts ``msgType`` first, as DSS events have it, ahead of any values bound with ``bind``."""
    msg_type = event_dict.pop("msgType")
    return {"msgType": msg_type, **event_dict}


def _to_record(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Final processor: the event plus the context the record must carry across threads."""
    return (event_dict, get_contextvars(), current_call_time_ms()), {}


PROCESSORS: list[Callable[[WrappedLogger, str, EventDict], Any]] = [_msg_type_first, _to_record]
"""The structlog processor chain of every audit logger (the last one renders for `_StdlibSink`)."""


class _StdlibSink:
    """The structlog "wrapped logger": turns a processed event into a stdlib record."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger):
        self._logger = logger

    def info(self, event: dict[str, Any], mdc: dict[str, Any], call_time: int | None) -> None:
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        record = logger.makeRecord(logger.name, logging.INFO, _AUDIT_SOURCE, 0, event, (), None)
        record.mdc = mdc
        if call_time is not None:
            record.callTime = call_time
        logger.handle(record)


class AuditLogger(structlog.BoundLoggerBase):
    """A structlog bound logger for one topic; ``bind`` adds fields to every event it emits."""

    def emit(self, msg_type: str, /, routing_key: str | None = None, **fields: Any) -> None:
        """Write one audit event of type ``msg_type``."""
        if routing_key is not None:
            fields["routingKey"] = routing_key
        fields["msgType"] = msg_type
        self._log(fields)

    def _log(self, fields: dict[str, Any]) -> None:
        # `_process_event` with the dict itself rather than `_proxy_to_logger(**fields)`: an
        # event may well have a field called "event", which would collide with structlog's
        # positional parameter, and unpacking the fields again costs time on every call.
        try:
            args, kwargs = self._process_event("info", None, fields)
        except structlog.DropEvent:
            return
        self._logger.info(*args, **kwargs)


_loggers: dict[str, AuditLogger] = {}


def get_logger(topic: str) -> AuditLogger:
    """The audit logger of ``topic`` (writing to the stdlib logger ``dku.audit.<topic>``)."""
    try:
        return _loggers[topic]
    except (KeyError, TypeError):
        pass
    if not isinstance(topic, str) or not topic.strip() or topic != topic.strip() or "\n" in topic:
        raise ValueError(
            f"audit topic must be a non-blank name without surrounding spaces, such as 'generic', got {topic!r}"
        )
    audit_logger = AuditLogger(
        _StdlibSink(logging.getLogger(AUDIT_LOGGER_PREFIX + topic)), PROCESSORS, context={}
    )
    _loggers[topic] = audit_logger
    return audit_logger


def emit(topic: str, msg_type: str, /, routing_key: str | None = None, **fields: Any) -> None:
    """Write one audit event: ``{"msgType": msg_type, ["routingKey": routing_key,] **fields}``.

    It goes to the stdlib logger ``dku.audit.<topic>`` at INFO with the MDC bound in this
    context and, inside a `request`, the call time so far.
    """
    try:
        audit_logger = _loggers[topic]
    except KeyError:
        audit_logger = get_logger(topic)
    if routing_key is not None:
        fields["routingKey"] = routing_key
    fields["msgType"] = msg_type
    audit_logger._log(fields)


# ----------------------------------------------------------------------------------- request


class request:  # noqa: N801 - used like a function: ``with audit.request(...)``
    """Binds an API call to the current context: ``apiCall`` and ``user`` (and any other
    keys) in the MDC, and a start time from which every event's ``callTime`` is measured.

    Use it as ``with audit.request("/api/x", user="admin"):`` or as a decorator of a sync or
    async function. Nested requests restore the outer one on exit. ``elapsed_ms`` gives the
    call time so far (and, after the block, the total).
    """

    def __init__(self, api_call: str | None = None, *, user: str | None = None, **mdc: Any):
        values: dict[str, Any] = {}
        if api_call is not None:
            values["apiCall"] = api_call
        if user is not None:
            values["user"] = user
        values.update(mdc)
        self._values = values
        self._start: float | None = None
        self._end: float | None = None
        self._tokens: Mapping[str, Token[Any]] | None = None
        self._start_token: Token[float | None] | None = None

    @property
    def elapsed_ms(self) -> int:
        if self._start is None:
            return 0
        end = self._end if self._end is not None else time.monotonic()
        return int((end - self._start) * 1000)

    def __enter__(self) -> request:
        if self._start_token is not None:
            raise RuntimeError("an audit.request is already active; create a new one per call")
        self._start = time.monotonic()
        self._end = None
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)
        self._start_token = _request_start.set(self._start)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end = time.monotonic()
        if self._start_token is not None:
            _request_start.reset(self._start_token)
            self._start_token = None
        if self._tokens is not None:
            structlog.contextvars.reset_contextvars(**self._tokens)
            self._tokens = None

    def __call__(self, func: F) -> F:
        # A fresh `request` per call: one decorated function may run concurrently in many
        # threads or tasks, each with its own start time and context tokens.
        api_call = self._values.get("apiCall")
        rest = {k: v for k, v in self._values.items() if k != "apiCall"}

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with request(api_call, **rest):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with request(api_call, **rest):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
