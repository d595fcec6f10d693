"""DSS's ``com.dataiku.dip.logging.JSONAuditLayout`` for Python: the log4j file envelope.

One line per record, keys in this order (DESIGN.md §2.1)::

    {"severity":"INFO","logger":"dku.audit.generic","message":{...event...},
     "mdc":{"apiCall":"/api/projects/get-summary","user":"admin"},"callTime":9,
     "timestamp":"2020-02-19T16:05:02.441+0100"}

- ``severity``: log4j's level names (``WARN``, ``FATAL``, ``TRACE``), not Python's;
- ``message``: the event when ``record.msg`` is a dict (what `logbridge.audit` emits), else the
  formatted message string;
- ``mdc``: ``record.mdc`` when the record carries one (set by `logbridge.audit` on the emitting
  thread), else the MDC of the formatting context (`logbridge.context.get_mdc`);
- ``callTime``: ``record.callTime`` when set, else the time since the enclosing
  `logbridge.audit.request` began; absent when neither is known;
- ``timestamp``: the record's creation time in local time, milliseconds and numeric offset;
- ``exception``: only when the record has one (log4j's layout ignores throwables; we keep them).

Like every layout of `logbridge.log4j`, the formatter ends its output with the line end
(``line_end="\n"``), because log4j's appenders write exactly what the layout returns and the
translated handlers have ``terminator = ""``. With a stdlib handler, which adds its own
``"\n"``, pass ``line_end=""`` (dictConfig: ``{"()": ..., "line_end": ""}``).

The same envelope is built by `envelope` for `logbridge.handlers.EventServerHandler`, which
serialises it on the caller's thread without a formatter's per-record overhead.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from ..audit import current_call_time_ms
from ..context import get_mdc
from .levels import LOG4J_NAMES

__all__ = ["JSONAuditFormatter", "envelope", "log4j_level_name", "log4j_timestamp"]


def log4j_level_name(levelno: int, levelname: str = "") -> str:
    """log4j's name for a Python level: ``WARN`` for WARNING, ``FATAL`` for CRITICAL."""
    return LOG4J_NAMES.get(levelno) or levelname or f"Level {levelno}"


# (second, "YYYY-MM-DDTHH:MM:SS", "+HHMM") of the last second formatted: audit streams put
# many events in one second, and localtime/strftime dominate the cost of a timestamp.
_last_second: tuple[int, str, str] = (-1, "", "")


def log4j_timestamp(created: float, msecs: float | None = None) -> str:
    """``2020-02-19T16:05:02.441+0100``: local time, milliseconds, numeric offset."""
    global _last_second
    second = int(created)
    cached = _last_second
    if cached[0] == second:
        prefix, offset = cached[1], cached[2]
    else:
        tm = time.localtime(second)
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
        gmtoff = tm.tm_gmtoff
        sign = "-" if gmtoff < 0 else "+"
        minutes = abs(gmtoff) // 60
        offset = f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
        _last_second = (second, prefix, offset)
    # The record's own msecs when given, so that every appender prints the same; else via
    # microseconds: 0.007 is 0.00699.. as a float, and log4j (integer millis) prints 007.
    millis = int(msecs) if msecs is not None else min(999, round((created - second) * 1_000_000) // 1000)
    return f"{prefix}.{millis:03d}{offset}"


def envelope(record: logging.LogRecord, message: Any = None, exception: Any = None) -> dict[str, Any]:
    """The log4j file envelope of ``record`` as a dict, keys in DSS's order.

    ``message`` overrides the record's own (``record.msg`` if a dict, else ``getMessage()``).
    """
    if message is None:
        message = record.msg if isinstance(record.msg, dict) else record.getMessage()
    data: dict[str, Any] = {
        "severity": LOG4J_NAMES.get(record.levelno) or record.levelname,
        "logger": record.name,
        "message": message,
        "mdc": _mdc_of(record),
    }
    call_time = _call_time_of(record)
    if call_time is not None:
        data["callTime"] = call_time
    data["timestamp"] = log4j_timestamp(record.created, record.msecs)
    if exception:
        data["exception"] = exception
    return data


def _mdc_of(record: logging.LogRecord) -> Any:
    mdc = getattr(record, "mdc", None)
    return mdc if mdc is not None else get_mdc()


def _call_time_of(record: logging.LogRecord) -> Any:
    call_time = getattr(record, "callTime", None)
    return call_time if call_time is not None else current_call_time_ms()


class JSONAuditFormatter(OrjsonFormatter):
    """A `logging.Formatter` writing DSS's JSONAuditLayout lines (the log4j file envelope).

    Built on python-json-logger's orjson formatter; the envelope is assembled in its
    ``add_fields`` hook, so its serialisation (``json_default`` for odd values, ``prefix``)
    applies as usual. Plug it in with dictConfig: ``{"()": "logbridge.log4j.jsonaudit.JSONAuditFormatter"}``.
    """

    def __init__(self, *args: Any, line_end: str = "\n", **kwargs: Any) -> None:
        # The envelope's fields are fixed; python-json-logger's own fmt/timestamp options
        # would only add keys DSS's readers do not expect.
        kwargs.setdefault("reserved_attrs", ())
        super().__init__(*args, **kwargs)
        self.line_end = line_end

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        exception = None
        if record.exc_info or record.exc_text:
            # python-json-logger put the formatted traceback into its copy of the event;
            # it belongs to the envelope, not to the audit event.
            exception = message_dict.get("exc_info")
        log_data.update(envelope(record, exception=exception))

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return super().serialize_log_record(log_data) + self.line_end
