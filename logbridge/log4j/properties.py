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

import bisect
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
        # Java's maps keep a key where it was first put; the order log4j walks depends on it.
        self._first_put: dict[str, None] = {}
        for e in entries or []:
            self._first_put.setdefault(e.key)
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

    def keys_java_order(self) -> list[str]:
        """The order of ``Properties.keys()`` in JDK 17 (its ConcurrentHashMap's order), which
        log4j's ``parseAppenderFilters`` walks."""
        return _concurrent_hash_map_order(list(self._first_put))

    def property_names_java_order(self) -> list[str]:
        """The order of ``Properties.propertyNames()`` in JDK 17 (a fresh Hashtable filled in
        ``keys()`` order), which log4j walks to configure loggers and set options: the order in
        which it prints its messages."""
        return _hashtable_order(self.keys_java_order())


def java_string_hash(s: str) -> int:
    """String.hashCode() over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    for unit in _utf16_units(s):
        h = (31 * h + unit) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _utf16_units(s: str) -> Iterator[int]:
    for ch in s:
        cp = ord(ch)
        if cp > 0xFFFF:
            cp -= 0x10000
            yield 0xD800 | (cp >> 10)
            yield 0xDC00 | (cp & 0x3FF)
        else:
            yield cp


def _concurrent_hash_map_order(keys: list[str]) -> list[str]:
    """Iteration order of JDK 17's ``new ConcurrentHashMap<>(8)`` after putting ``keys`` in order
    (as ``Properties.load`` does): 16 bins to start, doubled when the count reaches 3/4 of them;
    a resize splits each bin into a low and a high list, keeping the tail that shares one
    destination (``lastRun``) in order and prepending the nodes before it. Not reproduced: a bin
    of more than 8 keys, which the JDK treeifies or answers with an early resize (astronomically
    rare for real files); only the order of log4j's messages could then differ."""
    n = 16
    table: list[list[tuple[int, str]]] = [[] for _ in range(n)]
    for count, key in enumerate(keys, 1):
        h = java_string_hash(key) & 0xFFFFFFFF
        spread = (h ^ (h >> 16)) & 0x7FFFFFFF
        table[spread & (n - 1)].append((spread, key))
        if count >= n - (n >> 2):
            table = _chm_transfer(table, n)
            n *= 2
    return [key for bin_ in table for _, key in bin_]


def _chm_transfer(table: list[list[tuple[int, str]]], n: int) -> list[list[tuple[int, str]]]:
    new: list[list[tuple[int, str]]] = [[] for _ in range(2 * n)]
    for i, nodes in enumerate(table):
        if not nodes:
            continue
        run_bit = nodes[0][0] & n
        last_run = 0
        for j in range(1, len(nodes)):
            b = nodes[j][0] & n
            if b != run_bit:
                run_bit, last_run = b, j
        low = nodes[last_run:] if run_bit == 0 else []
        high = nodes[last_run:] if run_bit != 0 else []
        for node in nodes[:last_run]:
            (high if node[0] & n else low).insert(0, node)
        new[i], new[i + n] = low, high
    return new


def _hashtable_order(keys: list[str]) -> list[str]:
    """Enumeration order of a ``new Hashtable<>()`` (11 buckets, load factor 0.75) after putting
    ``keys`` in order: new entries go to the head of their bucket; a rehash to 2n+1 buckets walks
    the old buckets from the last; the enumeration walks buckets from the last."""
    cap, threshold = 11, 8
    table: list[list[tuple[int, str]]] = [[] for _ in range(cap)]
    for count, key in enumerate(keys):
        h = java_string_hash(key) & 0x7FFFFFFF
        if count >= threshold:
            old, cap = table, cap * 2 + 1
            threshold = int(cap * 0.75)
            table = [[] for _ in range(cap)]
            for bucket in reversed(old):
                for node in bucket:
                    table[node[0] % cap].insert(0, node)
        table[h % cap].insert(0, (h, key))
    return [key for bucket in reversed(table) for _, key in bucket]


def _line_starts(text: str) -> list[int]:
    """Offsets where natural lines begin (after \n, \r, or \r\n)."""
    starts = [0]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\r" and i + 1 < n and text[i + 1] == "\n":
            i += 1
        if c in "\r\n":
            starts.append(i + 1)
        i += 1
    return starts


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first natural line number, logical line with continuations joined, escapes raw).

    A port of JDK 17's ``Properties.LineReader.readLine``, character for character: a ``#`` or
    ``!`` starts a comment whenever the logical line is still empty (so also right after a
    continuation of a line that held only a backslash).
    """
    starts = _line_starts(text)
    n = len(text)
    i = 0
    buf: list[str] = []
    first = 0  # offset of the logical line's first character
    skip_ws, appended_begin, preceding_backslash, skip_lf = True, False, False, False
    while True:
        if i >= n:
            if buf:
                yield bisect.bisect_right(starts, first), "".join(buf[:-1] if preceding_backslash else buf)
            return
        c = text[i]
        i += 1
        if skip_lf:
            skip_lf = False
            if c == "\n":
                continue
        if skip_ws:
            if c in _WS:
                continue
            if not appended_begin and c in "\r\n":
                continue
            skip_ws = False
            appended_begin = False
        if not buf and c in "#!":
            while i < n and text[i] not in "\r\n":
                i += 1
            skip_ws = True
            continue
        if c not in "\r\n":
            if not buf:
                first = i - 1
            buf.append(c)
            preceding_backslash = (not preceding_backslash) if c == "\\" else False
            continue
        # End of a natural line.
        if not buf:
            skip_ws = True
            continue
        if i >= n:
            # The line end was the last character: the JDK returns the line as it is, even
            # when dropping a final backslash leaves it empty (an entry "" = "").
            yield bisect.bisect_right(starts, first), "".join(buf[:-1] if preceding_backslash else buf)
            return
        if preceding_backslash:
            buf.pop()  # the backslash at the end of the line is not part of it
            skip_ws, appended_begin, preceding_backslash = True, True, False
            skip_lf = c == "\r"
            continue
        yield bisect.bisect_right(starts, first), "".join(buf)
        buf = []
        skip_ws, appended_begin, preceding_backslash = True, False, False


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
