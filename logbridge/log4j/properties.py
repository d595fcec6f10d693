"""A ``java.util.Properties`` reader that remembers where each key came from.

log4j 1.2's ``PropertyConfigurator`` reads its file with ``Properties.load(InputStream)``, so the
rules here are the JDK's ``LineReader``/``loadConvert`` rules, not an INI or shell dialect:

- bytes are ISO-8859-1; ``\\uXXXX`` escapes give other characters (a malformed one makes the JDK
  throw, and log4j then ignores the whole file);
- a natural line ending in an odd number of backslashes continues on the next line, whose leading
  whitespace is dropped; comment lines (first non-blank char ``#`` or ``!``) never continue;
- the key ends at the first unescaped ``=``, ``:`` or whitespace; then whitespace, at most one
  ``=``/``:`` and whitespace again are skipped; the value keeps its trailing whitespace;
- ``\\t \\n \\r \\f`` are escapes, a backslash before any other char yields that char;
- a key given twice keeps the last value (and, here, the last line number).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import Log4jConfigError

_WS = " \t\f"


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int  # 1-based line where the logical line starts


class Properties:
    """Ordered key → value map with the line each key was (last) defined on."""

    def __init__(self, entries: list[Entry] | None = None, source: str = "<properties>"):
        self.source = source
        self._entries: dict[str, Entry] = {}
        for e in entries or []:
            # Last wins, as Hashtable.put does; the key keeps its newest line for messages.
            self._entries.pop(e.key, None)
            self._entries[e.key] = e

    def get(self, key: str) -> str | None:
        e = self._entries.get(key)
        return e.value if e is not None else None

    def line(self, key: str) -> int | None:
        e = self._entries.get(key)
        return e.line if e is not None else None

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def as_dict(self) -> dict[str, str]:
        return {k: e.value for k, e in self._entries.items()}


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first natural line number, logical line with continuations joined, escapes raw)."""
    i, n, lineno = 0, len(text), 1
    while i < n:
        # Skip leading whitespace and blank lines of a new natural line.
        while i < n and text[i] in _WS:
            i += 1
        if i >= n:
            return
        c = text[i]
        if c in "\r\n":
            i, lineno = _skip_eol(text, i, lineno)
            continue
        start_line = lineno
        if c in "#!":
            # A comment runs to the end of its natural line; backslashes do not continue it.
            while i < n and text[i] not in "\r\n":
                i += 1
            if i < n:
                i, lineno = _skip_eol(text, i, lineno)
            continue
        buf: list[str] = []
        while True:
            j = i
            while j < n and text[j] not in "\r\n":
                j += 1
            chunk = text[i:j]
            # Count trailing backslashes: an odd number means the line continues.
            k = len(chunk)
            while k > 0 and chunk[k - 1] == "\\":
                k -= 1
            continues = (len(chunk) - k) % 2 == 1
            if continues:
                buf.append(chunk[:-1])
            else:
                buf.append(chunk)
            i = j
            if i < n:
                i, lineno = _skip_eol(text, i, lineno)
            if not continues or i >= n:
                break
            # The continuation's leading whitespace is dropped; a blank line ends the logical line.
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] in "\r\n":
                i, lineno = _skip_eol(text, i, lineno)
                break
        yield start_line, "".join(buf)


def _skip_eol(text: str, i: int, lineno: int) -> tuple[int, int]:
    if text[i] == "\r" and i + 1 < len(text) and text[i + 1] == "\n":
        return i + 2, lineno + 1
    return i + 1, lineno + 1


def _split_key(line: str) -> tuple[str, str]:
    """Split a raw logical line into raw key and raw value (escapes still in place)."""
    n = len(line)
    key_len, value_start, has_sep, backslash = 0, n, False, False
    while key_len < n:
        c = line[key_len]
        if c in "=:" and not backslash:
            value_start, has_sep = key_len + 1, True
            break
        if c in _WS and not backslash:
            value_start = key_len + 1
            break
        backslash = (not backslash) if c == "\\" else False
        key_len += 1
    while value_start < n:
        c = line[value_start]
        if c not in _WS:
            if not has_sep and c in "=:":
                has_sep = True
            else:
                break
        value_start += 1
    return line[:key_len], line[value_start:]


def _unescape(raw: str, where: str) -> str:
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        if i >= n:
            break  # a lone trailing backslash (only possible at end of file) is dropped
        c = raw[i]
        i += 1
        if c == "u":
            digits = raw[i : i + 4]
            if len(digits) < 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise Log4jConfigError(
                    f"{where}: malformed \\uxxxx escape (\\u{digits}); Java's Properties.load rejects it "
                    "and log4j would ignore the whole file. Write four hex digits, e.g. \\u00e9."
                )
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append({"t": "\t", "r": "\r", "n": "\n", "f": "\f"}.get(c, c))
    text = "".join(out)
    # \uD83D\uDE00 is one character to Java (a UTF-16 pair); join such pairs into one code point.
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "surrogatepass")
    return text


def parse_properties(text: str, source: str = "<properties>") -> Properties:
    """Parse properties text (already decoded) with java.util.Properties rules."""
    entries = []
    for lineno, line in _logical_lines(text):
        raw_key, raw_value = _split_key(line)
        where = f"{source}:{lineno}"
        entries.append(Entry(_unescape(raw_key, where), _unescape(raw_value, where), lineno))
    return Properties(entries, source)


def load_properties(path: str | os.PathLike[str]) -> Properties:
    """Read a .properties file as Properties.load(InputStream) does: ISO-8859-1 bytes."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise Log4jConfigError(
            f"cannot read log4j properties file {os.fspath(path)}: {exc.strerror}"
        ) from exc
    return parse_properties(data.decode("latin-1"), source=os.fspath(path))


def escape_key(key: str) -> str:
    """Escape a key so that parse_properties reads it back unchanged (for tests and tools)."""
    return _escape(key, is_key=True)


def escape_value(value: str) -> str:
    return _escape(value, is_key=False)


def _escape(s: str, *, is_key: bool) -> str:
    out = []
    for idx, c in enumerate(s):
        if c == "\\":
            out.append("\\\\")
        elif c == "\t":
            out.append("\\t")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\f":
            out.append("\\f")
        elif c in "=:#!" or (c == " " and (is_key or idx == 0)):
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            raw = c.encode("utf-16-be", "surrogatepass")
            out.append(
                "".join(f"\\u{int.from_bytes(raw[k : k + 2], 'big'):04x}" for k in range(0, len(raw), 2))
            )
        else:
            out.append(c)
    return "".join(out)
