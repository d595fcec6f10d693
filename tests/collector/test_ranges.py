"""``X-Logbridge-Range`` parsing: ASCII digits, ``start <= end``, 63 bits — or a 400 (DESIGN §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.collector.app import parse_range_headers
from logbridge.errors import BodyError

MAX = 2**63 - 1


@given(st.integers(0, MAX), st.integers(0, MAX))
def test_every_valid_pair_parses_back(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    assert parse_range_headers("s", f"{start}-{end}".encode()) == ("s", start, end)


@given(st.binary(max_size=40))
def test_anything_else_is_a_400_never_a_crash(raw: bytes) -> None:
    try:
        source, start, end = parse_range_headers("s", raw)
    except BodyError as exc:
        assert exc.status == 400
        return
    # Accepted only if it is exactly two ASCII-digit offsets within 63 bits, in order.
    text = raw.strip().decode("ascii")
    left, right = text.split("-")
    assert left.isascii() and left.isdigit() and right.isascii() and right.isdigit()
    assert start is not None and end is not None and 0 <= start <= end <= MAX
    assert (start, end) == (int(left), int(right))


@pytest.mark.parametrize(
    "raw",
    [
        b"0-18446744073709551616",  # 2^64
        b"0-9223372036854775808",  # 2^63
        "²-³".encode(),  # str.isdigit() says yes
        "١-٢".encode(),  # Arabic-Indic digits: int() says yes
        b"5-3",
        b"1_0-20",  # int() takes underscores
        b"+1-5",
        b"-5",
        b"5-",
        b"0x1-5",
        b"",
        b"1-2-3",
        b" 1 - 2",
    ],
)
def test_refused(raw: bytes) -> None:
    with pytest.raises(BodyError):
        parse_range_headers("s", raw)


def test_source_and_range_go_together() -> None:
    assert parse_range_headers(None, None) == (None, None, None)
    with pytest.raises(BodyError):
        parse_range_headers("s", None)
    with pytest.raises(BodyError):
        parse_range_headers(None, b"0-1")
    assert parse_range_headers("s", b"0-9223372036854775807") == ("s", 0, MAX)
