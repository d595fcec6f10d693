"""The spool: a byte stream of whole lines between the handler and the sender.

Every line gets a fixed byte offset in the stream, and a batch is the byte range ``start-end``
of that stream under a source id that lives as long as the spool: the idempotence headers of
DESIGN.md §4 come from here. ``acked`` only moves forward (a 200, a 409, or lines kept in the
dead letter), so the spool drains in order.

- `MemorySpool`: without a ``spool_dir``; lost if the process dies.
- `FileSpool`: numbered segment files in a slot of ``spool_dir`` that one process holds
  (``flock``), the acknowledged offset beside them; a restart resends what was not acknowledged
  under the same source and ranges, and the collector stores it once. Lines the collector
  refused for good go to the slot's ``dead-letter/`` (`logbridge.client.DeadLetter`).

Both are bounded by ``max_bytes`` of unacknowledged lines: `append` takes what fits. What does
not fit (and what the handler's queue could not take) is counted by the handler, logged, and, as
soon as the spool has room again, recorded in the trail itself: `drop_marker` is a line of its
own, an audit event ``logbridge-events-dropped`` on the ``generic-failure`` topic giving the number
of events dropped and why, sent in order after the lines that came before the gap. So a gap in a
node's trail is visible in the store where it happened, not only in the node's own log.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from ..client import DeadLetter
from ..envelope import AUDIT_LOGGER_PREFIX
from ..errors import ConfigError
from ..fileio import write_atomic

log = logging.getLogger("logbridge.handlers")

DROP_TOPIC = "generic-failure"
DROP_MSG_TYPE = "logbridge-events-dropped"


def drop_marker(queue_full: int, spool_full: int, where: str, max_bytes: int) -> bytes:
    """The spool line that records a gap: ``queue_full`` events dropped because the handler's
    queue was full, ``spool_full`` because the spool (``where``) held ``max_bytes`` unsent. A log4j
    file envelope (DESIGN.md §2.1) of the ``dku.audit.generic-failure`` logger, as any record."""
    from ..log4j.jsonaudit import envelope

    event = {
        "msgType": DROP_MSG_TYPE,
        "events": queue_full + spool_full,
        "queueFull": queue_full,
        "spoolFull": spool_full,
        "spool": where,
        "spoolMaxBytes": max_bytes,
    }
    record = logging.LogRecord(AUDIT_LOGGER_PREFIX + DROP_TOPIC, logging.WARNING, "", 0, event, None, None)
    record.mdc = {}
    return orjson.dumps(envelope(record, event)) + b"\n"


class MemorySpool:
    """The spool without a ``spool_dir``: lines in memory, lost if the process dies."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.source = "pyh-" + uuid.uuid4().hex
        self.where = "memory"
        self._lines: deque[bytes] = deque()
        self._lock = threading.Lock()
        self.acked = 0  # stream offset of the first unacknowledged line
        self.end = 0  # stream offset after the last line
        self.pending_events = 0
        self.dead_letters: DeadLetter | None = None  # nowhere to keep them: the sender logs the loss

    def append(self, lines: list[bytes]) -> int:
        """Adds lines while the bound allows; returns how many were taken."""
        taken = 0
        with self._lock:
            room = self.max_bytes - (self.end - self.acked)
            for line in lines:
                if len(line) > room:
                    break
                room -= len(line)
                self._lines.append(line)
                self.end += len(line)
                taken += 1
            self.pending_events += taken
        return taken

    def read(self, max_events: int, max_bytes: int) -> list[bytes]:
        """The first unacknowledged lines (at least one if any), within the limits."""
        out: list[bytes] = []
        size = 0
        with self._lock:
            for line in self._lines:
                if out and (len(out) >= max_events or size + len(line) > max_bytes):
                    break
                out.append(line)
                size += len(line)
        return out

    def ack(self, offset: int, events: int | None = None) -> None:
        """Everything before ``offset`` (a line boundary) is delivered."""
        with self._lock:
            while self._lines and self.acked < offset:
                line = self._lines.popleft()
                self.acked += len(line)
                self.pending_events -= 1

    def close(self) -> None:
        pass


class FileSpool:
    """The spool in ``spool_dir``: numbered segment files of lines plus the acknowledged offset.

    ``spool_dir/<slot>/`` holds one process's spool: a process takes the first slot whose
    ``lock`` it can ``flock``, so several worker processes sharing a config each get their
    own stream, and a restarted worker picks up (and drains) what its predecessor left.

    - ``source``: the stream's id, written once; it is the X-Logbridge-Source of every batch.
    - ``<offset>.ndjson``: segments; the name is the stream offset of the segment's first byte.
    - ``acked``: the stream offset up to which the collector has the data (written temp+rename;
      being behind after a crash only means a resend that the collector recognises).
    """

    SEGMENT_BYTES = 16 * 1024 * 1024

    def __init__(self, spool_dir: str | os.PathLike[str], max_bytes: int, fsync: bool = False):
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.segment_bytes = max(64 * 1024, min(self.SEGMENT_BYTES, max_bytes // 4))
        base = Path(spool_dir)
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"EventServerHandler spool_dir {base}: cannot create it: {exc.strerror}"
            ) from exc
        self.dir, self._lock_fd = self._take_slot(base)
        self.where = str(self.dir)
        self.dead_letters: DeadLetter | None = DeadLetter(self.dir / "dead-letter")
        self._lock = threading.Lock()
        self.source = self._load_source()
        self._segments: list[tuple[int, Path]] = []  # (start offset, path), in order
        self._recover()
        self._writer: Any = None
        self._reader: tuple[int, Any] | None = None  # (segment start, open file)

    # ------------------------------------------------------------------------ setup

    @staticmethod
    def _take_slot(base: Path) -> tuple[Path, int]:
        for slot in range(256):
            slot_dir = base / str(slot)
            try:
                slot_dir.mkdir(exist_ok=True)
                fd = os.open(slot_dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise ConfigError(
                    f"EventServerHandler spool_dir {base}: cannot write in it: {exc.strerror}"
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    continue  # another process's spool
                raise
            return slot_dir, fd
        raise ConfigError(f"EventServerHandler spool_dir {base}: all 256 slots are in use by other processes")

    def _load_source(self) -> str:
        path = self.dir / "source"
        try:
            source = path.read_text(encoding="ascii").strip()
            if source:
                return source
        except FileNotFoundError:
            pass
        source = "pyh-" + uuid.uuid4().hex
        write_atomic(path, source.encode(), durable=self.fsync)
        return source

    def _recover(self) -> None:
        for path in self.dir.glob("*.ndjson"):
            if path.stem.isdigit():
                self._segments.append((int(path.stem), path))
        self._segments.sort()
        self.end = 0
        if self._segments:
            start, last = self._segments[-1]
            data = last.read_bytes()
            whole = data.rfind(b"\n") + 1
            if whole < len(data):  # a line cut short by a crash: it was never sent, drop it
                log.warning(
                    "EventServerHandler: spool %s: the last line of %s was cut short by a crash "
                    "(%d bytes, never sent); dropped",
                    self.dir,
                    last.name,
                    len(data) - whole,
                )
                with open(last, "r+b") as f:
                    f.truncate(whole)
            self.end = start + whole
        try:
            acked = int((self.dir / "acked").read_text(encoding="ascii").strip() or 0)
        except (FileNotFoundError, ValueError):
            acked = 0
        first = self._segments[0][0] if self._segments else self.end
        self.acked = min(max(acked, first), self.end)
        self.pending_events = sum(self._count_lines(start, path) for start, path in self._segments)

    def _count_lines(self, start: int, path: Path) -> int:
        data = path.read_bytes()
        skip = max(0, self.acked - start)
        return data.count(b"\n", skip)

    # ------------------------------------------------------------------------ write

    def append(self, lines: list[bytes]) -> int:
        with self._lock:
            room = self.max_bytes - (self.end - self.acked)
            taken = 0
            size = 0
            for line in lines:
                if size + len(line) > room:
                    break
                size += len(line)
                taken += 1
            if not taken:
                return 0
            if self._writer is None or self.end - self._segments[-1][0] >= self.segment_bytes:
                self._roll()
            self._writer.write(b"".join(lines[:taken]))
            self._writer.flush()
            if self.fsync:
                os.fsync(self._writer.fileno())
            self.end += size
            self.pending_events += taken
        return taken

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._segments and self._segments[-1][0] + self._segment_size(self._segments[-1][1]) == self.end:
            last_start, last_path = self._segments[-1]
            if self.end - last_start < self.segment_bytes:  # reopen the unfinished last segment
                self._writer = open(last_path, "ab")  # noqa: SIM115 - held until the next roll
                return
        path = self.dir / f"{self.end:020d}.ndjson"
        self._writer = open(path, "ab")  # noqa: SIM115 - held until the next roll
        self._segments.append((self.end, path))

    @staticmethod
    def _segment_size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------------- read

    def read(self, max_events: int, max_bytes: int) -> list[bytes]:
        with self._lock:
            start, end = self.acked, self.end
            if start >= end:
                return []
            seg_start, path = next((s, p) for s, p in reversed(self._segments) if s <= start)
            idx = self._segments.index((seg_start, path))
            seg_end = self._segments[idx + 1][0] if idx + 1 < len(self._segments) else end
        if self._reader is None or self._reader[0] != seg_start:
            if self._reader is not None:
                self._reader[1].close()
            self._reader = (seg_start, open(path, "rb"))  # noqa: SIM115 - reused across reads
        f = self._reader[1]
        f.seek(start - seg_start)
        limit = min(seg_end - start, max_bytes)
        data = f.read(limit)
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # one line longer than max_bytes: it still goes, alone
            data += f.read(seg_end - start - len(data))
            cut = data.find(b"\n") + 1
        if cut == 0:
            # The segment ends before the next one starts: its tail is missing from the disk
            # (removed by hand?). Nothing to send there; go on from the next segment.
            with self._lock:
                if self.acked == start and idx + 1 < len(self._segments):
                    log.warning(
                        "EventServerHandler: spool %s: bytes %d-%d are missing", self.dir, start, seg_end
                    )
                    self.acked = seg_end
            return self.read(max_events, max_bytes) if idx + 1 < len(self._segments) else []
        lines = data[:cut].splitlines(keepends=True)
        return lines[:max_events]

    def ack(self, offset: int, events: int | None = None) -> None:
        """Everything before ``offset`` (a line boundary) is delivered: ``events`` lines."""
        with self._lock:
            offset = min(offset, self.end)
            if offset <= self.acked:
                return
            if events is None:
                events = self._lines_between(self.acked, offset)
            self.pending_events -= events
            self.acked = offset
            write_atomic(self.dir / "acked", str(offset).encode(), durable=self.fsync)
            # Segments wholly delivered go, except the one being written.
            while len(self._segments) > 1 and self._segments[1][0] <= offset:
                _, path = self._segments.pop(0)
                if self._reader is not None and self._reader[1].name == str(path):
                    self._reader[1].close()
                    self._reader = None
                path.unlink(missing_ok=True)

    def _lines_between(self, start: int, end: int) -> int:
        count = 0
        for i, (seg_start, path) in enumerate(self._segments):
            seg_end = self._segments[i + 1][0] if i + 1 < len(self._segments) else self.end
            if seg_end <= start or seg_start >= end:
                continue
            with open(path, "rb") as f:
                f.seek(max(0, start - seg_start))
                count += f.read(min(end, seg_end) - max(start, seg_start)).count(b"\n")
        return count

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._reader is not None:
                self._reader[1].close()
                self._reader = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock: the slot is free again
                self._lock_fd = -1


Spool = MemorySpool | FileSpool
