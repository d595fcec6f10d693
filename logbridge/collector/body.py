"""Request bodies: bounded decompression and splitting into one item per event.

The body limit applies to what the collector must hold, so a gzip bomb is cut off as soon as
its *inflated* size passes ``max_body_bytes``, without inflating the rest.
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

import orjson
import zstandard

from ..errors import BodyError, BodyTooLarge, UnsupportedEncoding

_CHUNK = 256 * 1024


def decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding``; raises `BodyTooLarge` past ``limit`` inflated bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body
    if enc in ("gzip", "x-gzip", "deflate"):
        return _inflate(body, limit, wbits=31 if enc != "deflate" else 15)
    if enc == "zstd":
        return _unzstd(body, limit)
    raise UnsupportedEncoding(f"Content-Encoding {encoding!r} is not supported (use gzip, zstd or none)")


def _inflate(body: bytes, limit: int, wbits: int) -> bytes:
    out = bytearray()
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits)
            while True:
                room = limit - len(out) + 1
                chunk = inflater.decompress(data, min(room, _CHUNK))
                out += chunk
                if len(out) > limit:
                    raise BodyTooLarge(f"body inflates past the limit of {limit} bytes")
                data = inflater.unconsumed_tail
                if inflater.eof or not data:
                    break
            if not inflater.eof:
                raise BodyError("truncated gzip body")
            data = inflater.unused_data  # a concatenated gzip member follows
            if wbits != 31:
                break
    except zlib.error as exc:
        raise BodyError(f"body is not valid gzip data: {exc}") from None
    return bytes(out)


def _unzstd(body: bytes, limit: int) -> bytes:
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True)
        out = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise BodyError(f"body is not valid zstd data: {exc}") from None
    if len(out) > limit:
        raise BodyTooLarge(f"body inflates past the limit of {limit} bytes")
    return out


def split(body: bytes, content_type: str | None) -> list[Any]:
    """Items of a body: raw lines (bytes) of NDJSON, or parsed objects of a JSON array/object.

    A JSON array, or a single (possibly pretty-printed, as log4j 2's JsonLayout writes it)
    object, is recognised by parsing the whole body when it does not read as NDJSON.

    A big NDJSON body is split a megabyte at a time and never copied whole: one ``bytes.split``
    (or ``strip``) of 16 MiB is a C call of tens of ms, during which no other thread runs.
    """
    start, end = _content_bounds(body)
    if start == end:
        return []
    first = body[start : start + 1]
    if first == b"[":
        try:
            parsed = orjson.loads(body[start:end])
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(parsed, list):
                return [item if isinstance(item, dict) else _Invalid(item) for item in parsed]
    first_end = body.find(b"\n", start, end)
    if first_end >= 0 and first == b"{" and not body[start:first_end].rstrip().endswith(b"}"):
        # The first line is not a whole object: a pretty-printed single object.
        try:
            parsed = orjson.loads(body[start:end])
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(parsed, dict):
                return [parsed]
    if end - start <= _SPLIT_CHUNK:
        if start == 0 and body[end:] == b"\n":
            # The usual NDJSON body, a newline after its last line: split it as it is and drop
            # the empty piece after that newline, rather than copy the body without it.
            pieces = body.split(b"\n")
            pieces.pop()
            return pieces
        return (body if start == 0 and end == len(body) else body[start:end]).split(b"\n")
    lines: list[bytes] = []
    while start < end:
        cut = body.find(b"\n", min(start + _SPLIT_CHUNK, end), end)
        if cut < 0:
            cut = end
        lines.extend(body[start:cut].split(b"\n"))
        start = cut + 1
    return lines


_SPLIT_CHUNK = 1024 * 1024
_NOT_SPACE = re.compile(rb"[^ \t\n\r\x0b\x0c]")
_SPACE = frozenset(b" \t\n\r\x0b\x0c")


def _content_bounds(body: bytes) -> tuple[int, int]:
    """``body.strip()`` as (start, end), without the copy."""
    match = _NOT_SPACE.search(body)
    if match is None:
        return 0, 0
    end = len(body)
    while body[end - 1] in _SPACE:
        end -= 1
    return match.start(), end


class _Invalid:
    """An array element that is not an object; kept so it reaches the dead letter."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


Invalid = _Invalid
