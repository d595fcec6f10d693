"""What a log4j layout reads from a `logging.LogRecord`, shared by every layout of this package.

PatternLayout (`pattern`), EnhancedPatternLayout (`enhanced`), SimpleLayout and TTCCLayout
(`layouts`) and the appenders (`handlers`) take their values from here, so that every one of
them prints the same millisecond, the same NDC and the same throwable lines for one record.

A `Converter` turns a record into the text of one conversion (``None``: log4j's null, which
padding still fills). `SIMPLE` holds the conversions that PatternLayout and
EnhancedPatternLayout render alike; each layout adds its own for the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import context
from .dateformat import SimpleDateFormat
from .levels import log4j_name

LINE_SEP = "\n"

Converter = Callable[[logging.LogRecord], str | None]


def java_str(value: Any) -> str | None:
    """Object.toString() for the values an MDC holds."""
    if value is None:
        return None
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def record_mdc(record: logging.LogRecord) -> Mapping[str, Any]:
    mdc = getattr(record, "mdc", None)
    return mdc if mdc is not None else context.get_mdc()


def record_ndc(record: logging.LogRecord) -> str | None:
    if hasattr(record, "ndc"):
        ndc: str | None = record.ndc
        return ndc
    return context.get_ndc()


def record_millis(record: logging.LogRecord) -> int:
    """Epoch milliseconds of the record, from ``created`` and ``msecs`` as the stdlib's own
    ``%(msecs)03d`` and the JSON audit layout read them (so every appender prints the same
    millisecond; rounding the float ``created`` alone can print ,440 for .441, or cross a
    second where ``msecs`` is 999)."""
    msecs = int(record.msecs)
    return round(record.created - msecs / 1000) * 1000 + msecs


def throwable_lines(record: logging.LogRecord, formatter: logging.Formatter) -> list[str]:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    lines: list[str] = []
    if record.exc_text:
        lines.extend(record.exc_text.split("\n"))
    if record.stack_info:
        lines.extend(formatter.formatStack(record.stack_info).split("\n"))
    return lines


def logger_name(r: logging.LogRecord) -> str | None:
    return r.name


def class_name(r: logging.LogRecord) -> str | None:
    return getattr(r, "className", None) or r.module


def location(r: logging.LogRecord) -> str:
    def na(v: object) -> str:
        return "?" if v is None else str(v)

    return f"{na(class_name(r))}.{na(r.funcName)}({na(r.filename)}:{na(r.lineno)})"


def last_elements(name: str, count: int) -> str:
    """The last ``count`` dot-separated elements of ``name`` (all of it when it has fewer);
    PatternLayout's ``%c{2}`` and EnhancedPatternLayout's MaxElementAbbreviator, whose loop
    this is (``lastIndexOf('.', end - 1)``): ``count`` 0 leaves nothing."""
    end = len(name) - 1
    for _ in range(count):
        end = name.rfind(".", 0, end) if end > 0 else -1
        if end == -1:
            return name
    return name[end + 1 :]


def mdc_converter(key: str | None, order: Callable[[Iterable[Any]], list[Any]]) -> Converter:
    """``%X{key}``, or with no key every entry as ``{{k,v}{k,v}}`` in the layout's ``order``
    of the keys (PatternLayout sorts them; EnhancedPatternLayout follows log4j's Hashtable)."""
    if key is not None:
        return lambda r: java_str(record_mdc(r).get(key))

    def all_keys(r: logging.LogRecord) -> str:
        mdc = record_mdc(r)
        return "{" + "".join(f"{{{k},{java_str(mdc[k])}}}" for k in order(mdc)) + "}"

    return all_keys


def date_converter(fmt: SimpleDateFormat) -> Converter:
    return lambda r: fmt.format_ms(record_millis(r))


SIMPLE: dict[str, Converter] = {
    "F": lambda r: r.filename,
    "l": location,
    "L": lambda r: str(r.lineno),
    "m": lambda r: r.getMessage(),
    "M": lambda r: r.funcName,
    "p": lambda r: log4j_name(r.levelno, r.levelname),
    "r": lambda r: str(int(r.relativeCreated)),
    "t": lambda r: r.threadName,
}
