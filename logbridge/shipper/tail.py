"""Reading one open file: the next batch of whole lines from the acknowledged offset.

The file descriptor stays open while the file is tailed, so a rename (rotation) or an unlink
does not lose the bytes not yet read: they are read to the end through the same descriptor.
(Only a file with nothing left to send is closed to make room under ``max_open_files``; it is
reopened by identity when it grows: `engine`.)
Memory is bounded by one batch (``batch.max_bytes``) plus one line (``max_line_bytes``),
whatever the backlog: the file is the buffer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import orjson

from .batch import cut, first_long_line
from .checkpoint import Entry
from .config import InputConfig, ShipperConfig
from .identity import CHECK_BYTES

SCAN_CHUNK = 1024 * 1024
MARKER_HEAD = 1024  # bytes of an oversized line kept in its dead-letter marker
OVERSIZED_MSG_TYPE = "logbridge-oversized-line"


@dataclass(slots=True)
class Batch:
    start: int
    end: int
    body: bytes
    lines: int
    # "full": reproducible from ``start`` after a restart; "short": cut where the data ended
    # (a restart may cut it longer: the collector's 409 settles it); "oversized": one marker
    # standing for one line over max_line_bytes.
    kind: Literal["full", "short", "oversized"]
    topic: str | None = None
    routing_key: str | None = None
    reproducible: bool = True  # False: ``end`` is remembered as the entry's ``inflight``
    # The file's bytes of this range that fall in its first `CHECK_BYTES`, as read for this batch
    # (not the body: a text input's body is rewritten): what the entry's check is extended with.
    check: bytes = b""
    # Set by the engine before sending: the file's first bytes up to ``end`` (at most
    # CHECK_BYTES) as shipped, for the entry's check once the batch is acknowledged.
    prefix: bytes | None = None
    # Where each line of ``body`` ends in the file, when the body is rewritten (text inputs):
    # what a batch split in two (a 413) needs for each half's range.
    line_ends: list[int] | None = None

    def __post_init__(self) -> None:
        if self.kind == "short":
            self.reproducible = False


class Tail:
    """One tailed file, identified by its checkpoint entry."""

    def __init__(self, fd: int, path: str, entry: Entry, inp: InputConfig, now: float):
        self.fd = fd
        self.path = path
        self.first_path = path
        self.entry = entry
        self.input = inp
        st = os.fstat(fd)
        self.size = entry.size = st.st_size
        entry.mtime_ns = st.st_mtime_ns
        self.last_growth = now
        self.partial_since: float | None = None
        self.linger_since: float | None = None
        self.gone = False  # deleted, or no longer matched by the input's glob
        self.avg_line = 256.0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    @property
    def rotated(self) -> bool:
        return self.gone or self.path != self.first_path

    def refresh(self, now: float) -> bool:
        """Re-read size and link count; False when the file shrank below the acknowledged
        offset (copytruncate, or truncated by hand)."""
        st = os.fstat(self.fd)
        if st.st_nlink == 0:
            self.gone = True
        if st.st_size != self.size or st.st_mtime_ns != self.entry.mtime_ns:
            if st.st_size != self.size:
                self.last_growth = now
            self.size = self.entry.size = st.st_size
            self.entry.mtime_ns = st.st_mtime_ns
        return st.st_size >= self.entry.offset

    # --------------------------------------------------------------------------------- batching

    def next_batch(self, cfg: ShipperConfig, now: float, *, closing: bool) -> Batch | None:
        """The batch to send now, or None (nothing complete yet, or lingering for more).

        ``closing``: the file will not be read again soon (shutdown of ``--once``, file rotated
        away, deleted, inactive): a last line without newline may then be shipped as it is,
        once it has waited ``partial_line_timeout``.
        """
        start = self.entry.offset
        available = self.size - start
        if available <= 0:
            self.partial_since = self.linger_since = None
            return None
        inflight = self.entry.inflight
        if inflight is not None and start < inflight <= self.size:
            # A restart: the range that was in flight goes again with the same boundaries.
            if inflight - start > max(cfg.batch.max_bytes, cfg.max_line_bytes):
                return self._long_line(cfg, start, now, True, end=inflight)
            data = os.pread(self.fd, inflight - start, start)
            if first_long_line(data, len(data), cfg.max_line_bytes) == 0:  # it was a marker
                return self._long_line(cfg, start, now, True, end=inflight)
            return self._batch(start, data, data.count(b"\n") + (data[-1:] != b"\n"), "short")
        max_bytes = cfg.batch.max_bytes
        max_events = cfg.batch.max_events
        want = min(max_bytes, int(self.avg_line * max_events * 1.1) + 4096)
        data = os.pread(self.fd, want, start)
        at_eof = len(data) < want
        max_line = cfg.max_line_bytes if cfg.max_line_bytes < len(data) else None
        guess = int(self.avg_line * max_events)
        c = cut(data, max_events, max_bytes, at_eof=at_eof, max_line=max_line, guess=guess)
        if not at_eof and want < max_bytes and (c is None or c.lines < max_events):
            # The guess was short of max_events lines: the cut is only final on a full window.
            data += os.pread(self.fd, max_bytes - want, start + want)
            at_eof = len(data) < max_bytes
            max_line = cfg.max_line_bytes if cfg.max_line_bytes < len(data) else None
            c = cut(data, max_events, max_bytes, at_eof=at_eof, max_line=max_line, guess=guess)
        if c is not None:
            self.partial_since = None
            if not c.full and not closing:
                if self.linger_since is None:
                    self.linger_since = now
                if now - self.linger_since < cfg.batch.linger:
                    return None
            self.linger_since = None
            self.avg_line = self.avg_line * 0.5 + (c.length / c.lines) * 0.5
            return self._batch(start, data[: c.length], c.lines, "full" if c.full else "short")
        # No complete line of ordinary length at the start.
        newline = data.find(b"\n")
        if newline > cfg.max_line_bytes or (newline < 0 and len(data) > cfg.max_line_bytes):
            return self._long_line(cfg, start, now, closing)
        if newline < 0 and len(data) >= max_bytes:
            return self._long_line(cfg, start, now, closing)
        # A last line still being written: hold it until its newline comes.
        if self.partial_since is None:
            self.partial_since = now
        if closing and now - self.partial_since >= cfg.partial_line_timeout:
            self.partial_since = None
            return self._batch(start, data, 1, "short")
        return None

    def _long_line(
        self, cfg: ShipperConfig, start: int, now: float, closing: bool, end: int | None = None
    ) -> Batch | None:
        """A line longer than one batch window: shipped alone, or as an oversized marker.
        ``end``: the line's end is already known (a persisted in-flight range)."""
        reproducible = True
        if end is None:
            pos = start
            while pos < self.size:
                chunk = os.pread(self.fd, SCAN_CHUNK, pos)
                if not chunk:
                    break
                nl = chunk.find(b"\n")
                if nl >= 0:
                    end = pos + nl + 1
                    break
                pos += len(chunk)
        if end is None:  # its newline has not been written yet
            if self.partial_since is None:
                self.partial_since = now
            if not (closing and now - self.partial_since >= cfg.partial_line_timeout):
                return None
            end, reproducible = self.size, False
        self.partial_since = None
        length = end - start - (1 if os.pread(self.fd, 1, end - 1) == b"\n" else 0)
        if length <= cfg.max_line_bytes:
            kind: Literal["full", "short"] = "full" if reproducible else "short"
            return self._batch(start, os.pread(self.fd, end - start, start), 1, kind)
        head = os.pread(self.fd, MARKER_HEAD, start)
        marker = {
            "msgType": OVERSIZED_MSG_TYPE,
            "reason": f"line of {length} bytes is over max_line_bytes ({cfg.max_line_bytes}); not shipped",
            "bytes": length,
            "maxLineBytes": cfg.max_line_bytes,
            "file": self.path,
            "offset": start,
            "node": cfg.node,
            "head": head.decode("utf-8", "replace"),
        }
        check = os.pread(self.fd, min(end, CHECK_BYTES) - start, start) if start < CHECK_BYTES else b""
        # No topic anywhere (not even the input's): the collector puts it in its dead letter.
        return Batch(
            start, end, orjson.dumps(marker) + b"\n", 1, "oversized", reproducible=reproducible, check=check
        )

    def _batch(self, start: int, data: bytes, lines: int, kind: Literal["full", "short"]) -> Batch:
        inp = self.input
        line_ends = None
        if inp.format == "text":
            body, line_ends = text_events(data, start)
        elif data.endswith(b"\n"):
            body = data  # sent as it is: the collector unwraps the envelopes
        else:
            body = data + b"\n"  # a last line shipped without its newline
        check = data[: CHECK_BYTES - start] if start < CHECK_BYTES else b""
        return Batch(
            start,
            start + len(data),
            body,
            lines,
            kind,
            inp.topic,
            inp.routing_key,
            check=check,
            line_ends=line_ends,
        )


def text_events(data: bytes, start: int = 0) -> tuple[bytes, list[int]]:
    """Plain text lines → NDJSON bare events ``{"message": line}`` (blank lines carry nothing),
    and the file offset (from ``start``) at which each event's line ends."""
    out = []
    ends = []
    dumps = orjson.dumps
    pos = start
    last = start + len(data)
    for line in data.split(b"\n"):
        pos += len(line) + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if line.strip():
            out.append(dumps({"message": line.decode("utf-8", "replace")}))
            ends.append(min(pos, last))
    out.append(b"")
    return b"\n".join(out), ends
