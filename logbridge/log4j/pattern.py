"""log4j 1.2 PatternLayout as a `logging.Formatter`.

The conversion pattern is parsed by a transcription of log4j 1.2.17's ``PatternParser`` state
machine, so malformed patterns come out as log4j prints them (``%q`` stays literal, ``%.x`` turns
the rest into text) and the same ``log4j:ERROR`` messages are reported. Padding and truncation
follow ``PatternConverter.format``: ``%.3c`` keeps the *last* three characters.

Where the values come from on a `logging.LogRecord`:

======  ======================================================================
``%c``  ``record.name``            ``%C``  ``record.className``, else ``record.module``
``%F``  ``record.filename``        ``%L``  ``record.lineno``      ``%M``  ``record.funcName``
``%m``  ``record.getMessage()``    ``%p``  log4j's level name (``WARN``, ``FATAL``)
``%r``  ``record.relativeCreated`` ``%t``  ``record.threadName``
``%x``  ``record.ndc``, else logbridge's NDC
``%X``  ``record.mdc``, else logbridge's MDC (structlog contextvars)
======  ======================================================================

The throwable (``exc_info``/``exc_text``) follows the line, one line each, as log4j's
``WriterAppender`` writes it after a layout that ignores throwables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import context
from .dateformat import ABSOLUTE, DATE, ISO8601, DateFormatError, SimpleDateFormat
from .levels import log4j_name

LINE_SEP = "\n"
_MAX = 2**31 - 1


@dataclass
class _Fmt:
    min: int = -1
    max: int = _MAX
    left: bool = False


Converter = Callable[[logging.LogRecord], str | None]


@dataclass
class _Part:
    literal: str | None
    convert: Converter | None = None
    fmt: _Fmt | None = None


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


def class_name(r: logging.LogRecord) -> str | None:
    return getattr(r, "className", None) or r.module


def _location(r: logging.LogRecord) -> str:
    def na(v: object) -> str:
        return "?" if v is None else str(v)

    return f"{na(class_name(r))}.{na(r.funcName)}({na(r.filename)}:{na(r.lineno)})"


def _named(get: Callable[[logging.LogRecord], str | None], precision: int) -> Converter:
    if precision <= 0:
        return get

    def convert(r: logging.LogRecord) -> str | None:
        n = get(r)
        if n is None:
            return None
        end = len(n) - 1
        for _ in range(precision):
            end = n.rfind(".", 0, end) if end > 0 else -1  # lastIndexOf('.', end - 1)
            if end == -1:
                return n
        return n[end + 1 :]

    return convert


def _mdc(key: str | None) -> Converter:
    if key is None:

        def all_keys(r: logging.LogRecord) -> str:
            mdc = record_mdc(r)
            return "{" + "".join(f"{{{k},{java_str(mdc[k])}}}" for k in sorted(mdc)) + "}"

        return all_keys

    def one(r: logging.LogRecord) -> str | None:
        return java_str(record_mdc(r).get(key))

    return one


def date_converter(fmt: SimpleDateFormat) -> Converter:
    return lambda r: fmt.format_ms(record_millis(r))


def date_format(option: str | None, errors: list[str]) -> SimpleDateFormat:
    """The DateFormat that ``%d{option}`` selects."""
    pattern = option if option is not None else ISO8601
    named = {"ISO8601": ISO8601, "ABSOLUTE": ABSOLUTE, "DATE": DATE}
    if pattern.upper() in named:
        return SimpleDateFormat(named[pattern.upper()])
    try:
        return SimpleDateFormat(pattern)
    except DateFormatError:
        errors.append(f"log4j:ERROR Could not instantiate SimpleDateFormat with {pattern}")
        return SimpleDateFormat(ISO8601)


class _Parser:
    """org.apache.log4j.helpers.PatternParser, state for state."""

    LITERAL, CONVERTER, DOT, MIN, MAX = range(5)

    def __init__(self, pattern: str, enhanced: bool = False):
        self.enhanced = enhanced
        self.handles_throwable = False
        self.p = pattern
        self.i = 0
        self.parts: list[_Part] = []
        self.errors: list[str] = []
        self.lit: list[str] = []
        self.fmt = _Fmt()

    def option(self) -> str | None:
        if self.i < len(self.p) and self.p[self.i] == "{":
            end = self.p.find("}", self.i)
            if end > self.i:
                r = self.p[self.i + 1 : end]
                self.i = end + 1
                return r
        return None

    def precision(self) -> int:
        opt = self.option()
        if opt is None:
            return 0
        body = opt[1:] if opt[:1] in "+-" else opt
        try:
            # Integer.parseInt: an optional sign and ASCII digits, no spaces.
            if not (body.isascii() and body.isdigit()):
                raise ValueError(opt)
            r = int(opt)
        except ValueError:
            self.errors.append(f'log4j:ERROR Category option "{opt}" not a decimal integer.')
            return 0
        if r <= 0:
            self.errors.append(f"log4j:ERROR Precision option ({opt}) isn't a positive integer.")
            return 0
        return r

    def flush_literal(self) -> None:
        if self.lit:
            self.parts.append(_Part("".join(self.lit)))
        self.lit = []

    def finalize(self, c: str) -> None:
        if self.enhanced:
            self.finalize_enhanced(c)
            return
        conv: Converter | None = None
        if c == "c":
            conv = _named(lambda r: r.name, self.precision())
        elif c == "C":
            conv = _named(class_name, self.precision())
        elif c == "d":
            conv = date_converter(date_format(self.option(), self.errors))
        elif c == "F":
            conv = lambda r: r.filename  # noqa: E731
        elif c == "l":
            conv = _location
        elif c == "L":
            conv = lambda r: str(r.lineno)  # noqa: E731
        elif c == "m":
            conv = lambda r: r.getMessage()  # noqa: E731
        elif c == "M":
            conv = lambda r: r.funcName  # noqa: E731
        elif c == "p":
            conv = lambda r: log4j_name(r.levelno, r.levelname)  # noqa: E731
        elif c == "r":
            conv = lambda r: str(int(r.relativeCreated))  # noqa: E731
        elif c == "t":
            conv = lambda r: r.threadName  # noqa: E731
        elif c == "x":
            # EnhancedPatternLayout appends getNDC() as is: no NDC prints "null".
            conv = (lambda r: record_ndc(r) or "null") if self.enhanced else record_ndc
        elif c == "X":
            conv = _mdc(self.option())
        if conv is None:
            self.errors.append(
                f"log4j:ERROR Unexpected char [{c}] at position {self.i} in conversion patterrn."
            )
            self.parts.append(_Part("".join(self.lit)))
        else:
            self.parts.append(_Part(None, conv, self.fmt))
        self.lit = []
        self.fmt = _Fmt()

    def options(self) -> list[str]:
        opts = []
        while self.i < len(self.p) and self.p[self.i] == "{":
            end = self.p.find("}", self.i)
            if end == -1:
                break
            opts.append(self.p[self.i + 1 : end])
            self.i = end + 1
        return opts

    def finalize_enhanced(self, c: str) -> None:
        """org.apache.log4j.pattern.PatternParser: a conversion *word* (the longest identifier,
        then its longest known prefix; the rest stays literal) and any number of {options}."""
        word = ""
        if c.isalpha():  # Character.isUnicodeIdentifierStart
            word = c
            while self.i < len(self.p) and (self.p[self.i].isalnum() or self.p[self.i] == "_"):
                word += self.p[self.i]
                self.lit.append(self.p[self.i])
                self.i += 1
        opts = self.options()
        from .enhanced import WORDS, converter

        name = next((word[:k] for k in range(len(word), 0, -1) if word[:k] in WORDS), None)
        if name is None:
            self.errors.append(f"log4j:ERROR Unrecognized format specifier [{word}]")
            what = f"Unrecognized conversion specifier [{word}]" if word else "Empty conversion specifier"
            self.errors.append(f"log4j:ERROR {what} starting at position {self.i} in conversion pattern.")
            self.parts.append(_Part("".join(self.lit)))
        else:
            rest = word[len(name) :]
            conv, handles_throwable = converter(WORDS[name], opts, self.errors)
            self.handles_throwable |= handles_throwable
            self.parts.append(_Part(None, conv, self.fmt))
            if rest:
                self.parts.append(_Part(rest))
        self.lit = []
        self.fmt = _Fmt()

    def parse(self) -> list[_Part]:
        p, n = self.p, len(self.p)
        state = self.LITERAL
        while self.i < n:
            c = p[self.i]
            self.i += 1
            if state == self.LITERAL:
                if self.i == n:
                    self.lit.append(c)
                    continue
                if c == "%":
                    nxt = p[self.i]
                    if nxt == "%":
                        self.lit.append(c)
                        self.i += 1
                    elif nxt == "n" and not self.enhanced:
                        self.lit.append(LINE_SEP)
                        self.i += 1
                    else:
                        self.flush_literal()
                        self.lit.append(c)
                        state = self.CONVERTER
                        self.fmt = _Fmt()
                else:
                    self.lit.append(c)
            elif state == self.CONVERTER:
                self.lit.append(c)
                if c == "-":
                    self.fmt.left = True
                elif c == ".":
                    state = self.DOT
                elif "0" <= c <= "9":
                    self.fmt.min = ord(c) - 48
                    state = self.MIN
                else:
                    self.finalize(c)
                    state = self.LITERAL
            elif state == self.MIN:
                self.lit.append(c)
                if "0" <= c <= "9":
                    self.fmt.min = self.fmt.min * 10 + ord(c) - 48
                elif c == ".":
                    state = self.DOT
                else:
                    self.finalize(c)
                    state = self.LITERAL
            elif state == self.DOT:
                self.lit.append(c)
                if "0" <= c <= "9":
                    self.fmt.max = ord(c) - 48
                    state = self.MAX
                else:
                    self.errors.append(
                        f"log4j:ERROR Error occured in position {self.i}.\n"
                        f' Was expecting digit, instead got char "{c}".'
                    )
                    state = self.LITERAL
            else:  # MAX
                self.lit.append(c)
                if "0" <= c <= "9":
                    self.fmt.max = self.fmt.max * 10 + ord(c) - 48
                else:
                    self.finalize(c)
                    state = self.LITERAL
        self.flush_literal()
        return self.parts


SIMPLE: dict[str, Converter] = {
    "F": lambda r: r.filename,
    "l": _location,
    "L": lambda r: str(r.lineno),
    "m": lambda r: r.getMessage(),
    "M": lambda r: r.funcName,
    "p": lambda r: log4j_name(r.levelno, r.levelname),
    "r": lambda r: str(int(r.relativeCreated)),
    "t": lambda r: r.threadName,
}


def parse_pattern(pattern: str, enhanced: bool = False) -> tuple[list[_Part], list[str]]:
    """Parse a conversion pattern; also return the messages log4j would print for it."""
    parts, errors, _ = _parse(pattern, enhanced)
    return parts, errors


def _parse(pattern: str, enhanced: bool) -> tuple[list[_Part], list[str], bool]:
    parser = _Parser(pattern, enhanced)
    parts = parser.parse()
    return parts, parser.errors, parser.handles_throwable


def _render(parts: list[_Part], record: logging.LogRecord) -> str:
    out: list[str] = []
    for part in parts:
        if part.literal is not None:
            out.append(part.literal)
            continue
        assert part.convert is not None and part.fmt is not None
        s = part.convert(record)
        f = part.fmt
        if s is None:
            if f.min > 0:
                out.append(" " * f.min)
            continue
        n = len(s)
        if n > f.max:
            out.append(s[n - f.max :])
        elif n < f.min:
            out.append(s + " " * (f.min - n) if f.left else " " * (f.min - n) + s)
        else:
            out.append(s)
    return "".join(out)


class PatternLayoutFormatter(logging.Formatter):
    """A formatter that renders log4j 1.2 ``PatternLayout`` conversion patterns byte for byte.

    ``PatternLayoutFormatter("%d %-5p [%t] %c - %m%n")``. The pattern carries its own line end
    (``%n``), so handlers that add one (``StreamHandler.terminator``) should have it set to ``""``;
    logbridge's log4j handlers do.
    """

    def __init__(self, pattern: str = "%m%n", *, ignores_throwable: bool = True, _enhanced: bool = False):
        super().__init__()
        self.pattern = pattern
        self._parts, self.errors, handles = _parse(pattern, _enhanced)
        # EnhancedPatternLayout with %throwable prints the throwable itself.
        self.ignores_throwable = ignores_throwable and not handles

    def format_layout(self, record: logging.LogRecord) -> str:
        """What log4j's ``Layout.format(event)`` returns, without the throwable."""
        return _render(self._parts, record)

    def format(self, record: logging.LogRecord) -> str:
        text = self.format_layout(record)
        if self.ignores_throwable:
            lines = throwable_lines(record, self)
            if lines:
                text += "".join(line + LINE_SEP for line in lines)
        return text
