"""Request bodies: encodings, bounds, and splitting."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge.collector import body
from logbridge.errors import BodyError, BodyTooLarge, UnsupportedEncoding


def test_gzip_and_zstd_round_trip() -> None:
    data = b'{"msgType":"a"}\n' * 100
    assert body.decode(gzip.compress(data), "gzip", 10_000) == data
    assert body.decode(zstandard.ZstdCompressor().compress(data), "zstd", 10_000) == data
    assert body.decode(gzip.compress(data[:800]) + gzip.compress(data[800:]), "gzip", 10_000) == data


def test_gzip_bomb_is_cut_off_without_inflating_it_all() -> None:
    bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(BodyTooLarge):
        body.decode(bomb, "gzip", 16 * 1024 * 1024)


def test_zstd_bomb() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 * 1024 * 1024))
    with pytest.raises(BodyTooLarge):
        body.decode(bomb, "zstd", 1024 * 1024)


def test_unknown_encoding_and_garbage() -> None:
    with pytest.raises(UnsupportedEncoding):
        body.decode(b"x", "br", 100)
    with pytest.raises(BodyError):
        body.decode(b"not gzip", "gzip", 100)
    with pytest.raises(BodyError):
        body.decode(gzip.compress(b"abc" * 100)[:20], "gzip", 10_000)
    assert zlib  # deflate path shares the inflater


def test_split_forms() -> None:
    assert body.split(b'{"a":1}\r\n{"b":2}\r\n', None) == [b'{"a":1}\r', b'{"b":2}']
    assert body.split(b'[{"a":1},{"b":2}]', "application/json") == [{"a": 1}, {"b": 2}]
    pretty = orjson.dumps({"loggerName": "x", "message": "m"}, option=orjson.OPT_INDENT_2)
    assert body.split(pretty, "application/json; charset=UTF-8") == [{"loggerName": "x", "message": "m"}]
    assert body.split(b"  \n", None) == []
    items = body.split(b'[1, {"a": 2}]', None)
    assert isinstance(items[0], body.Invalid) and items[1] == {"a": 2}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text(max_size=5), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8), max_size=3
        ),
        min_size=1,
    ),
    st.sampled_from([b"", b"\n", b"\n\n", b"\r\n", b" \n", b"\n ", b"\t"]),
    st.sampled_from([b"", b" ", b"\n"]),
)
def test_an_ndjson_body_splits_into_its_stripped_lines(objects: list[dict], tail: bytes, head: bytes) -> None:
    """However the body ends (the usual single newline is split without copying the body)."""
    data = head + b"\n".join(orjson.dumps(o) for o in objects) + tail
    assert body.split(data, None) == data.strip(b" \t\n\r\x0b\x0c").split(b"\n")
