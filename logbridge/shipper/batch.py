"""Where a batch ends: whole lines only, bounded by events and bytes, and reproducible.

The hot path never parses a line: a batch is a slice of the file cut at a newline found with
``bytes.find``/``rfind``, sent as it is (the collector unwraps the envelopes).

Reproducible cuts are what let a restarted shipper re-send a batch with the same byte range
(``X-Logbridge-Range``) so that the collector recognises it as already stored: a batch that
stopped because it reached ``max_events`` or ``max_bytes`` ends at the same byte whenever it is
cut again from the same start, since the file only grows. Only a *short* batch (cut at the end
of the data available at that moment) is not: cut again after a restart it may end further on,
across what the collector already holds, and the collector's 409 (with its high-water mark)
says where to resume. Nothing is written to disk per batch (see `checkpoint`).
"""

from __future__ import annotations

from dataclasses import dataclass

NL = 10  # b"\n"


@dataclass(frozen=True, slots=True)
class Cut:
    length: int  # bytes from the batch start, ending just after a newline
    lines: int
    full: bool  # stopped at max_events/max_bytes: the same cut comes out again after a restart


def nth_newline(buf: bytes, n: int, guess: int | None = None) -> int:
    """Index of the ``n``-th newline (1-based) in ``buf``, or -1 when there are fewer.

    ``guess``: where it probably is (from the average line length). Counting up to the guess
    is one C call; from there only the few newlines between the guess and the answer are
    stepped over in Python, instead of all ``n``.
    """
    if guess is not None and 0 < guess < len(buf):
        before = buf.count(b"\n", 0, guess)
        if before >= n:  # it is before the guess: step back over the extra ones
            pos = guess
            for _ in range(before - n + 1):
                pos = buf.rfind(b"\n", 0, pos)
            return pos
        pos = guess - 1
        for _ in range(n - before):
            pos = buf.find(b"\n", pos + 1)
            if pos < 0:
                return -1
        return pos
    pos = -1
    find = buf.find
    for _ in range(n):
        pos = find(b"\n", pos + 1)
        if pos < 0:
            return -1
    return pos


def first_long_line(buf: bytes, end: int, max_line: int) -> int:
    """Start of the first line in ``buf[:end]`` longer than ``max_line`` bytes (newline
    excluded), or -1. Only called when ``max_line`` is below the window size."""
    pos = 0
    find = buf.find
    while pos < end:
        nl = find(b"\n", pos, end)
        if nl < 0:
            nl = end
        if nl - pos > max_line:
            return pos
        pos = nl + 1
    return -1


def cut(
    buf: bytes,
    max_events: int,
    max_bytes: int,
    *,
    at_eof: bool,
    max_line: int | None = None,
    guess: int | None = None,
) -> Cut | None:
    """The batch at the start of ``buf`` (bytes read from the batch start).

    ``at_eof``: ``buf`` holds everything the file has from the start (it is shorter than what
    was asked for). ``buf`` must hold ``max_bytes`` bytes unless ``at_eof``. None when ``buf``
    starts with no complete line, or with a line longer than ``max_line`` (the caller deals
    with long lines one at a time).
    """
    window = buf if len(buf) <= max_bytes else buf[:max_bytes]
    # The usual case, a backlog: max_events lines fit, and their end is all we need to know
    # (no count over the whole window).
    nth = nth_newline(window, max_events, guess)
    if nth >= 0:
        end, lines, full = nth + 1, max_events, True
    else:
        end = window.rfind(b"\n") + 1
        if end == 0:
            return None
        lines, full = window.count(b"\n", 0, end), not at_eof or len(window) == max_bytes
    if max_line is not None and max_line < end:
        long_start = first_long_line(window, end, max_line)
        if long_start == 0:
            return None
        if long_start > 0:  # stop just before it: the long line becomes its own batch
            return Cut(long_start, window.count(b"\n", 0, long_start), True)
    return Cut(end, lines, full)
