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

The record accessors live in `converters` (shared with every layout); EnhancedPatternLayout's
parser is a subclass of `PatternParser` (`logbridge.log4j.enhanced`), so this module imports
nothing of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .converters import (
    LINE_SEP,
    SIMPLE,
    Converter,
    class_name,
    date_converter,
    java_sorted,
    last_elements,
    logger_name,
    mdc_converter,
    record_ndc,
    throwable_lines,
)
from .dateformat import ISO8601, DateFormatError, SimpleDateFormat, named_pattern

_MAX = 2**31 - 1


@dataclass
class _Fmt:
    min: int = -1
    max: int = _MAX
    left: bool = False


@dataclass
class _Part:
    literal: str | None
    convert: Converter | None = None
    fmt: _Fmt | None = None


def _named(get: Converter, precision: int) -> Converter:
    """``%c{n}``/``%C{n}``: the last ``n`` elements of the name."""
    if precision <= 0:
        return get

    def convert(r: logging.LogRecord) -> str | None:
        n = get(r)
        return None if n is None else last_elements(n, precision)

    return convert


def date_format(option: str | None, errors: list[str]) -> SimpleDateFormat:
    """The DateFormat that ``%d{option}`` selects."""
    pattern = named_pattern(option) if option is not None else ISO8601
    try:
        return SimpleDateFormat(pattern)
    except DateFormatError:
        errors.append(f"log4j:ERROR Could not instantiate SimpleDateFormat with {pattern}")
        return SimpleDateFormat(ISO8601)


# PatternLayout's one-letter conversions that take no option.
_LETTERS: dict[str, Converter] = {**SIMPLE, "x": record_ndc}


class PatternParser:
    """org.apache.log4j.helpers.PatternParser, state for state.

    `parse` is the state machine both layouts share; `finalize` turns one conversion into a
    part, and is what `logbridge.log4j.enhanced.EnhancedPatternParser` overrides (with
    ``literal_newline`` off: there ``%n`` is a conversion word like any other).
    """

    LITERAL, CONVERTER, DOT, MIN, MAX = range(5)
    literal_newline = True  # PatternParser turns "%n" into the line separator as it reads it

    def __init__(self, pattern: str):
        self.handles_throwable = False  # whether the layout prints the throwable itself
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
        # Integer.parseInt: an optional sign and ASCII digits, no spaces.
        if not (body.isascii() and body.isdigit()):
            self.errors.append(f'log4j:ERROR Category option "{opt}" not a decimal integer.')
            return 0
        r = int(opt)
        if r <= 0:
            self.errors.append(f"log4j:ERROR Precision option ({opt}) isn't a positive integer.")
            return 0
        return r

    def flush_literal(self) -> None:
        if self.lit:
            self.parts.append(_Part("".join(self.lit)))
        self.lit = []

    def add_converter(self, conv: Converter) -> None:
        """End the conversion being read with ``conv`` (its text so far is dropped)."""
        self.parts.append(_Part(None, conv, self.fmt))
        self.lit = []
        self.fmt = _Fmt()

    def add_unknown(self) -> None:
        """End the conversion being read as literal text, as log4j does with what it cannot read."""
        self.parts.append(_Part("".join(self.lit)))
        self.lit = []
        self.fmt = _Fmt()

    def finalize(self, c: str) -> None:
        conv: Converter | None
        if c == "c":
            conv = _named(logger_name, self.precision())
        elif c == "C":
            conv = _named(class_name, self.precision())
        elif c == "d":
            conv = date_converter(date_format(self.option(), self.errors))
        elif c == "X":
            conv = mdc_converter(self.option(), java_sorted)
        else:
            conv = _LETTERS.get(c)
        if conv is None:
            self.errors.append(
                f"log4j:ERROR Unexpected char [{c}] at position {self.i} in conversion patterrn."
            )
            self.add_unknown()
        else:
            self.add_converter(conv)

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
                    elif nxt == "n" and self.literal_newline:
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


def parse_pattern(pattern: str) -> tuple[list[_Part], list[str]]:
    """Parse a PatternLayout conversion pattern; also return the messages log4j would print."""
    parser = PatternParser(pattern)
    return parser.parse(), parser.errors


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

    parser: type[PatternParser] = PatternParser

    def __init__(self, pattern: str = "%m%n", *, ignores_throwable: bool = True):
        super().__init__()
        self.pattern = pattern
        parser = self.parser(pattern)
        self._parts = parser.parse()
        self.errors = parser.errors
        # EnhancedPatternLayout with %throwable prints the throwable itself.
        self.ignores_throwable = ignores_throwable and not parser.handles_throwable

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
