"""log4j's ``EnhancedPatternLayout``: the conversions of ``org.apache.log4j.pattern``.

The pattern is parsed by `logbridge.log4j.pattern`'s state machine (log4j shares it between both
layouts): `EnhancedPatternParser` subclasses its `PatternParser`. What differs lives here:
conversion *words* (``%level``, ``%logger``; the longest known prefix wins), name abbreviators
(``%c{1.}``, ``%c{-1}``), ``%d{pattern}{zone}``, ``%throwable`` inside the layout, ``%x``
printing ``null``, and ``%X`` in the order of log4j's MDC Hashtable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import converters
from .converters import Converter
from .dateformat import ISO8601, DateFormatError, SimpleDateFormat, named_pattern
from .pattern import PatternLayoutFormatter, PatternParser
from .timezone import java_time_zone

WORDS = {
    "c": "c", "logger": "c", "C": "C", "class": "C", "d": "d", "date": "d", "F": "F", "file": "F",
    "l": "l", "L": "L", "line": "L", "m": "m", "message": "m", "n": "n", "M": "M", "method": "M",
    "p": "p", "level": "p", "r": "r", "relative": "r", "t": "t", "thread": "t", "x": "x",
    "ndc": "x", "X": "X", "properties": "X", "throwable": "throwable", "sn": "sn", "sequenceNumber": "sn",
}  # fmt: skip


def converter(kind: str, opts: list[str], errors: list[str]) -> tuple[Converter, bool]:
    """The converter for a conversion word, and whether it prints the throwable itself."""
    opt = opts[0] if opts else None
    if kind == "c":
        return _abbreviated(converters.logger_name, opt), False
    if kind == "C":
        return _abbreviated(converters.class_name, opt), False
    if kind == "d":
        pattern = named_pattern(opt or "ISO8601")
        tz = None
        if len(opts) > 1:
            tz = java_time_zone(opts[1])
        try:
            fmt = SimpleDateFormat(pattern, tz)
        except DateFormatError:
            errors.append(f"log4j:WARN Could not instantiate SimpleDateFormat with pattern {opt}")
            fmt = SimpleDateFormat(ISO8601, tz)
        return converters.date_converter(fmt), False
    if kind == "n":
        return (lambda r: converters.LINE_SEP), False
    if kind == "x":
        # EnhancedPatternLayout appends getNDC() as is: no NDC prints "null".
        return (lambda r: converters.record_ndc(r) or "null"), False
    if kind == "X":
        return converters.mdc_converter(opt, _hashtable_order), False
    if kind == "throwable":
        return _throwable(opt), True
    if kind == "l":
        # FullLocationPatternConverter appends LocationInfo.fullInfo as is: unknown prints "null".
        return (lambda r: converters.location(r) or "null"), False
    if kind == "sn":
        return (lambda r: "0"), False  # log4j 1.2 events carry no sequence number
    return converters.SIMPLE[kind], False


class EnhancedPatternParser(PatternParser):
    """org.apache.log4j.pattern.PatternParser: the same state machine, but a conversion is a
    *word* (the longest identifier, then its longest known prefix; the rest stays literal)
    followed by any number of {options}, and ``%n`` is one of those words."""

    literal_newline = False

    def options(self) -> list[str]:
        opts = []
        while self.i < len(self.p) and self.p[self.i] == "{":
            end = self.p.find("}", self.i)
            if end == -1:
                break
            opts.append(self.p[self.i + 1 : end])
            self.i = end + 1
        return opts

    def finalize(self, c: str) -> None:
        word = ""
        if c.isalpha():  # Character.isUnicodeIdentifierStart
            word = c
            while self.i < len(self.p) and (self.p[self.i].isalnum() or self.p[self.i] == "_"):
                word += self.p[self.i]
                self.lit.append(self.p[self.i])
                self.i += 1
        opts = self.options()
        name = next((word[:k] for k in range(len(word), 0, -1) if word[:k] in WORDS), None)
        if name is None:
            self.errors.append(f"log4j:ERROR Unrecognized format specifier [{word}]")
            what = f"Unrecognized conversion specifier [{word}]" if word else "Empty conversion specifier"
            self.errors.append(f"log4j:ERROR {what} starting at position {self.i} in conversion pattern.")
            self.add_unknown()
            return
        conv, handles_throwable = converter(WORDS[name], opts, self.errors)
        self.handles_throwable |= handles_throwable
        self.add_converter(conv)
        rest = word[len(name) :]
        if rest:  # "%messages" is %message then the text "s"
            self.lit.append(rest)
            self.flush_literal()


def java_string_hash(s: str) -> int:
    """String.hashCode() over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    data = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - 2**32 if h >= 2**31 else h


def java_hashtable_order(keys: list[str]) -> list[str]:
    """The iteration order of ``new Hashtable(7)`` after putting ``keys`` in order: log4j's MDC
    is such a Hashtable (a fresh one after ``MDC.clear()``), and EnhancedPatternLayout's ``%X``
    prints it in this order."""
    cap, threshold = 7, 5
    table: list[list[str]] = [[] for _ in range(cap)]  # each chain head-first
    for count, k in enumerate(keys):
        if count >= threshold:
            new_cap = cap * 2 + 1
            new_table: list[list[str]] = [[] for _ in range(new_cap)]
            for i in range(cap - 1, -1, -1):
                for e in table[i]:
                    new_table[(java_string_hash(e) & 0x7FFFFFFF) % new_cap].insert(0, e)
            cap, table, threshold = new_cap, new_table, int(new_cap * 0.75)
        table[(java_string_hash(k) & 0x7FFFFFFF) % cap].insert(0, k)
    return [k for i in range(cap - 1, -1, -1) for k in table[i]]


def _hashtable_order(keys: Iterable[object]) -> list[str]:
    return java_hashtable_order([str(k) for k in keys])


_PLAIN = logging.Formatter()


def _abbreviated(get: Converter, opt: str | None) -> Converter:
    """EnhancedPatternLayout's NameAbbreviator: ``{2}`` keeps 2 elements, ``{-1}`` drops one,
    ``{1.}``/``{1~.}`` shortens every element but the last."""
    if opt is None or not opt.strip():
        return get
    t = opt.strip()
    i = 1 if t[0] == "-" else 0
    while i < len(t) and t[i].isdigit():
        i += 1
    if i == len(t) and t not in ("-",):
        n = int(t)

        def elements(r: logging.LogRecord) -> str | None:
            name = get(r)
            if name is None:
                return None
            if n >= 0:
                return converters.last_elements(name, n)
            count = -n
            pos = name.find(".")
            while pos != -1:
                count -= 1
                if count == 0:
                    return name[pos + 1 :]
                pos = name.find(".", pos + 1)
            return name

        return elements
    fragments: list[tuple[int, str]] = []
    pos = 0
    while 0 <= pos < len(t):
        ell_pos = pos
        if t[pos] == "*":
            count, ell_pos = 2**31 - 1, pos + 1
        elif t[pos].isdigit():
            count, ell_pos = int(t[pos]), pos + 1
        else:
            count = 0
        ellipsis = t[ell_pos] if ell_pos < len(t) and t[ell_pos] != "." else ""
        fragments.append((count, ellipsis))
        pos = t.find(".", pos)
        if pos == -1:
            break
        pos += 1

    def fragment(buf: str, start: int, frag: tuple[int, str]) -> tuple[str, int]:
        count, ellipsis = frag
        dot = buf.find(".", start)
        if dot == -1:
            return buf, -1
        if dot - start > count:
            buf = buf[: start + count] + ellipsis + buf[dot:]
            dot = start + count + len(ellipsis)
        return buf, dot + 1

    def abbreviate(r: logging.LogRecord) -> str | None:
        buf = get(r)
        if buf is None:
            return None
        pos = 0
        for frag in fragments[:-1]:
            if pos >= len(buf):
                break
            buf, pos = fragment(buf, pos, frag)
            if pos < 0:
                return buf
        while 0 <= pos < len(buf):
            buf, pos = fragment(buf, pos, fragments[-1])
        return buf

    return abbreviate


def _throwable(opt: str | None) -> Converter:
    """%throwable{n|short|full|none}: the throwable's first lines, inside the layout."""

    def convert(r: logging.LogRecord) -> str:
        lines = converters.throwable_lines(r, _PLAIN)
        if not lines:
            return ""
        n = len(lines)
        if opt == "none":
            n = 0
        elif opt == "short":
            n = 1
        elif opt is not None and opt != "full":
            try:
                n = min(n, int(opt))
            except ValueError:
                pass
        return "".join(line + "\n" for line in lines[:n])

    return convert


def convert_special_chars(s: str) -> str:
    """OptionConverter.convertSpecialChars: ``\\n``, ``\\t``… written in the pattern text."""
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        i += 1
        if c == "\\" and i < n:
            c = s[i]
            i += 1
            c = {"n": "\n", "r": "\r", "t": "\t", "f": "\f"}.get(c, c)
        out.append(c)
    return "".join(out)


class EnhancedPatternLayoutFormatter(PatternLayoutFormatter):
    """log4j's ``EnhancedPatternLayout``, for the conversions it shares with PatternLayout.

    It also turns ``\\n``/``\\t`` written in the pattern into the characters, as log4j does.
    """

    parser = EnhancedPatternParser

    def __init__(self, pattern: str = "%m%n"):
        super().__init__(convert_special_chars(pattern))
