"""A staged file's digest: SHA-256, line count, line digests, first and last line.

Kept up to date as batches are appended (the bytes are in memory then), so that sealing a file
at roll time costs no re-read. An append that does not start where the digest ends (a batch cut
back by a rollback, a file cut at recovery) makes the digest stale; the file is then read again
(`digest_file`). Only whole lines are ever appended, so each batch's lines are split on their own.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import orjson

from .. import envelope
from .manifest import DIGEST_SIZE

_CHUNK = 4 * 1024 * 1024


def line_digests(data: bytes) -> bytes:
    """The digests of ``data``'s lines (whole lines: a last line without its newline counts too)."""
    if not data:
        return b""
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()
    sha = hashlib.sha256
    return b"".join([sha(line).digest()[:DIGEST_SIZE] for line in lines])


class FileDigest:
    """``per_line=False``: no line digests (``manifest: {line_digests: false}``), a third of the cost."""

    def __init__(self, per_line: bool = True) -> None:
        self.per_line = per_line
        self.sha = hashlib.sha256()
        self.size = 0
        self.lines = 0
        self.digests = bytearray()
        self.first_line: bytes | None = None
        self.last_line: bytes | None = None
        self.stale = False
        self._lock = threading.Lock()  # a prestaged file is digested off the writer thread

    def update(self, offset: int, data: bytes) -> None:
        """``data`` was written at ``offset``."""
        with self._lock:
            if self.stale or offset != self.size:
                self.stale = True
                return
            self.sha.update(data)
            self.size += len(data)
            if self.per_line:
                digests = line_digests(data)
                self.digests += digests
                self.lines += len(digests) // DIGEST_SIZE
            else:
                self.lines += data.count(b"\n")
            if data:
                if self.first_line is None:
                    self.first_line = data[: data.find(b"\n")] if b"\n" in data else data
                body = data[:-1] if data.endswith(b"\n") else data
                self.last_line = body[body.rfind(b"\n") + 1 :]

    def result(self, size: int) -> FileDigest | None:
        """This digest if it covers exactly ``size`` bytes, else None (read the file again)."""
        return self if not self.stale and self.size == size else None


def digest_file(path: Path, size: int, *, per_line: bool = True) -> FileDigest:
    """The digest of the first ``size`` bytes of ``path`` (a staged file after a restart or a cut)."""
    digest = FileDigest(per_line)
    tail = b""
    done = 0
    with open(path, "rb") as fh:
        while done < size:
            chunk = fh.read(min(_CHUNK, size - done))
            if not chunk:
                raise OSError(f"{path} is shorter than its acknowledged {size} bytes")
            done += len(chunk)
            data = tail + chunk
            cut = data.rfind(b"\n") + 1 if done < size else len(data)
            digest.update(digest.size, data[:cut])
            tail = data[cut:]
    return digest


def line_time(line: bytes | None) -> str | None:
    """The event time of one stored line, as the collector reads it (ISO), or None."""
    if not line:
        return None
    try:
        stored: Any = orjson.loads(line)
        if not isinstance(stored, dict):
            return None
        original = envelope.restore(stored) if "clientEvent" in stored else stored
        u = envelope.unwrap(original) if isinstance(original, dict) else None
        raw = u.event_time if u is not None and u.event_time is not None else stored.get("serverTimestamp")
        epoch = envelope.event_epoch(raw)
    except (orjson.JSONDecodeError, envelope.EnvelopeError, KeyError, TypeError, AttributeError, ValueError):
        return None
    return envelope.format_timestamp(epoch) if epoch is not None else None
