"""Request bodies: encodings, bounds, and splitting."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest
import zstandard

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
