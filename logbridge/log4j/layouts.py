"""log4j's SimpleLayout and TTCCLayout as `logging.Formatter` classes.

Both ignore throwables in log4j, so the appender writes the throwable's lines after them; here the
formatter appends them, as `PatternLayoutFormatter` does.
"""

from __future__ import annotations

import logging

from .converters import LINE_SEP, record_millis, record_ndc, throwable_lines
from .dateformat import DateFormatError, SimpleDateFormat, named_pattern
from .levels import log4j_name
from .timezone import java_time_zone


class _ThrowableAfter(logging.Formatter):
    def format_layout(self, record: logging.LogRecord) -> str:
        raise NotImplementedError

    def format(self, record: logging.LogRecord) -> str:
        text = self.format_layout(record)
        lines = throwable_lines(record, self)
        return text + "".join(line + LINE_SEP for line in lines)


class SimpleLayoutFormatter(_ThrowableAfter):
    """``org.apache.log4j.SimpleLayout``: ``LEVEL - message``."""

    def format_layout(self, record: logging.LogRecord) -> str:
        return f"{log4j_name(record.levelno, record.levelname)} - {record.getMessage()}{LINE_SEP}"


class TTCCLayoutFormatter(_ThrowableAfter):
    """``org.apache.log4j.TTCCLayout``: time, thread, category, context.

    Configured from a properties file, log4j's TTCCLayout prints *no* date unless ``DateFormat``
    is set (``DateLayout.activateOptions`` replaces the constructor's RELATIVE format with the
    unset option); `configure` reproduces that by passing ``date_format=None``.
    ``RELATIVE`` counts from the layout's creation, as log4j's RelativeTimeDateFormat does.
    """

    def __init__(
        self,
        date_format: str | None = None,
        time_zone: str | None = None,
        thread_printing: bool = True,
        category_prefixing: bool = True,
        context_printing: bool = True,
    ):
        super().__init__()
        self.thread_printing = thread_printing
        self.category_prefixing = category_prefixing
        self.context_printing = context_printing
        self._relative_start: int | None = None
        self._date: SimpleDateFormat | None = None
        tz = java_time_zone(time_zone) if time_zone is not None else None
        if date_format is None or date_format.upper() == "NULL":
            pass
        elif date_format.upper() == "RELATIVE":
            import time

            self._relative_start = int(time.time() * 1000)
        else:
            try:
                self._date = SimpleDateFormat(named_pattern(date_format), tz)
            except DateFormatError:
                self._date = None

    def format_layout(self, record: logging.LogRecord) -> str:
        out: list[str] = []
        if self._relative_start is not None:
            out.append(f"{record_millis(record) - self._relative_start} ")
        elif self._date is not None:
            out.append(self._date.format_ms(record_millis(record)) + " ")
        if self.thread_printing:
            out.append(f"[{record.threadName}] ")
        out.append(log4j_name(record.levelno, record.levelname) + " ")
        if self.category_prefixing:
            out.append(record.name + " ")
        if self.context_printing:
            ndc = record_ndc(record)
            if ndc is not None:
                out.append(ndc + " ")
        out.append("- ")
        out.append(record.getMessage())
        out.append(LINE_SEP)
        return "".join(out)
