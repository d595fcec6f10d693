"""Where batches end: whole lines, bounded, and the same cut again after a restart."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge.shipper.batch import cut, first_long_line, nth_newline

line_st = st.binary(min_size=0, max_size=40).map(lambda b: b.replace(b"\n", b"x") + b"\n")
file_st = st.lists(line_st, min_size=0, max_size=60).map(b"".join)


def test_nth_newline() -> None:
    assert nth_newline(b"a\nb\nc\n", 2) == 3
    assert nth_newline(b"a\nb", 2) == -1


def test_cut_examples() -> None:
    assert cut(b"no newline yet", 10, 100, at_eof=True) is None
    c = cut(b"a\nb\nc", 10, 100, at_eof=True)
    assert c is not None and (c.length, c.lines, c.full) == (4, 2, False)
    c = cut(b"a\nb\nc\n", 2, 100, at_eof=True)
    assert c is not None and (c.length, c.lines, c.full) == (4, 2, True)
    c = cut(b"aaaa\nbbbb\ncc", 10, 7, at_eof=False)  # max_bytes reached: reproducible
    assert c is not None and (c.length, c.lines, c.full) == (5, 1, True)


def test_long_lines_are_cut_out() -> None:
    data = b"ok\n" + b"x" * 50 + b"\nok\n"
    assert first_long_line(data, len(data), 10) == 3
    c = cut(data, 100, 1000, at_eof=True, max_line=10)
    assert c is not None and c.length == 3 and c.full  # stops before the long line
    assert cut(data[3:], 100, 1000, at_eof=True, max_line=10) is None  # starts with it


@settings(max_examples=300, deadline=None)
@given(data=file_st, max_events=st.integers(1, 20), max_bytes=st.integers(1, 300))
def test_cut_is_whole_lines_within_bounds(data: bytes, max_events: int, max_bytes: int) -> None:
    window = data[:max_bytes]
    c = cut(window, max_events, max_bytes, at_eof=len(data) < max_bytes)
    if c is None:
        assert b"\n" not in window
        return
    chunk = data[: c.length]
    assert chunk.endswith(b"\n")
    assert chunk.count(b"\n") == c.lines <= max_events
    assert c.length <= max_bytes


@settings(max_examples=300, deadline=None)
@given(data=file_st, more=file_st, max_events=st.integers(1, 20), max_bytes=st.integers(1, 300))
def test_full_cuts_come_out_the_same_when_the_file_has_grown(
    data: bytes, more: bytes, max_events: int, max_bytes: int
) -> None:
    """The property a restart relies on: a cut marked full is independent of later bytes."""
    before = cut(data[:max_bytes], max_events, max_bytes, at_eof=len(data) < max_bytes)
    grown = data + more
    after = cut(grown[:max_bytes], max_events, max_bytes, at_eof=len(grown) < max_bytes)
    if before is not None and before.full:
        assert after == before


@settings(max_examples=200, deadline=None)
@given(data=file_st, max_events=st.integers(1, 7), max_bytes=st.integers(1, 120))
def test_consecutive_cuts_cover_the_file_exactly(data: bytes, max_events: int, max_bytes: int) -> None:
    pos, out = 0, b""
    while pos < len(data):
        window = data[pos : pos + max_bytes]
        c = cut(window, max_events, max_bytes, at_eof=len(data) - pos < max_bytes)
        if c is None:  # a line longer than the window: the tailer ships those alone
            end = data.index(b"\n", pos) + 1
            out += data[pos:end]
            pos = end
            continue
        out += data[pos : pos + c.length]
        pos += c.length
    assert out == data


@settings(max_examples=500, deadline=None)
@given(data=file_st, n=st.integers(1, 80), guess=st.integers(-5, 3000))
def test_nth_newline_with_a_guess_finds_the_same_newline(data: bytes, n: int, guess: int) -> None:
    assert nth_newline(data, n, guess) == nth_newline(data, n)


@settings(max_examples=200, deadline=None)
@given(data=file_st, max_events=st.integers(1, 20), max_bytes=st.integers(1, 300), guess=st.integers(0, 400))
def test_cut_does_not_depend_on_the_guess(data: bytes, max_events: int, max_bytes: int, guess: int) -> None:
    window, at_eof = data[:max_bytes], len(data) < max_bytes
    assert cut(window, max_events, max_bytes, at_eof=at_eof, guess=guess) == cut(
        window, max_events, max_bytes, at_eof=at_eof
    )
