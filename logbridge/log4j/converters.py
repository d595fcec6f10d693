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


# What Python's findCaller reports when it finds no frame.
_UNKNOWN_FILE, _UNKNOWN_FUNCTION = "(unknown file)", "(unknown function)"
NA = "?"  # LocationInfo.NA


def location_known(r: logging.LogRecord) -> bool:
    """Whether the record says where it was logged. Records built by hand (``makeLogRecord``),
    forwarded from elsewhere or made where no frame was found have no file or line; log4j's
    LocationInfo is then all unknown at once (its parts come from one stack frame)."""
    return r.lineno is not None and bool(r.pathname) and r.pathname != _UNKNOWN_FILE


def class_name(r: logging.LogRecord) -> str:
    explicit: str | None = getattr(r, "className", None)
    if explicit:
        return explicit
    return r.module if location_known(r) else NA


def file_name(r: logging.LogRecord) -> str:
    return r.filename if location_known(r) and r.filename else NA


def line_number(r: logging.LogRecord) -> str:
    return str(r.lineno) if location_known(r) else NA


def method_name(r: logging.LogRecord) -> str:
    return r.funcName if location_known(r) and r.funcName and r.funcName != _UNKNOWN_FUNCTION else NA


def location_parts(r: logging.LogRecord) -> tuple[str, str, str, str]:
    """Class, method, file and line, as XMLLayout's ``<log4j:locationInfo>`` prints them."""
    if not location_known(r):
        return getattr(r, "className", None) or NA, NA, NA, NA
    method = r.funcName if r.funcName and r.funcName != _UNKNOWN_FUNCTION else NA
    return getattr(r, "className", None) or r.module, method, r.filename or NA, str(r.lineno)


def location(r: logging.LogRecord) -> str | None:
    """``LocationInfo.fullInfo``: ``class.method(file:line)``; null when the location is unknown
    (PatternLayout then prints nothing, EnhancedPatternLayout ``null``)."""
    if not location_known(r):
        return None
    cls, method, file, line = location_parts(r)
    return f"{cls}.{method}({file}:{line})"


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


def java_sorted(keys: Iterable[Any]) -> list[Any]:
    """``Arrays.sort``/``TreeMap`` order of the keys' strings: String.compareTo compares UTF-16
    code units, so a character outside the BMP sorts before U+E000–U+FFFF (code points would
    put it after)."""
    return sorted(keys, key=lambda k: str(k).encode("utf-16-be", "surrogatepass"))


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
    "F": file_name,
    "l": location,
    "L": line_number,
    "m": lambda r: r.getMessage(),
    "M": method_name,
    "p": lambda r: log4j_name(r.levelno, r.levelname),
    "r": lambda r: str(int(r.relativeCreated)),
    "t": lambda r: r.threadName,
}
