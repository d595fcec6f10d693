"""Bytes the shipper could never read, remembered for ``ship --status``.

A file deleted, or cut shorter, before the shipper read it to the end takes its unread bytes
with it. The log line and the metrics that say so vanish with the process that saw it (a
``--once`` run from cron, a restarted daemon), so each loss is also kept in
``<state_dir>/lost.json``: running totals since the state dir was made, and the latest losses
by file. One shipper writes it (the state dir is locked); ``--status`` may read it meanwhile,
as it is replaced atomically. Deleting the file resets the count.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

from ..fileio import write_atomic

log = logging.getLogger("logbridge.shipper")

FILE_NAME = "lost.json"
VERSION = 1
KEEP = 20  # losses listed one by one; the totals count every one


@dataclass(frozen=True, slots=True)
class Loss:
    path: str
    bytes: int
    offset: int  # where the unread part began (what the collector has of the file)
    why: str  # e.g. "was deleted before it could be read"
    time: float  # wall clock


@dataclass(slots=True)
class LossReport:
    bytes: int = 0
    files: int = 0  # losses counted (a file that loses bytes twice counts twice)
    recent: list[Loss] = field(default_factory=list)  # oldest first, at most KEEP


class LossLog:
    """``<state_dir>/lost.json``."""

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.path = Path(state_dir) / FILE_NAME

    def load(self) -> LossReport:
        """What was recorded; empty when nothing was lost (or the file cannot be read: a report
        must never stop the shipper, so the next loss starts the count again)."""
        try:
            doc = orjson.loads(self.path.read_bytes())
            if doc.get("version") != VERSION:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            recent = [Loss(**item) for item in doc["recent"]]
            return LossReport(int(doc["bytes"]), int(doc["files"]), recent)
        except FileNotFoundError:
            return LossReport()
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("%s is unreadable (%s): its count of lost bytes starts over", self.path, exc)
            return LossReport()

    def record(self, loss: Loss) -> None:
        report = self.load()
        report.bytes += loss.bytes
        report.files += 1
        report.recent = [*report.recent, loss][-KEEP:]
        doc = {
            "version": VERSION,
            "bytes": report.bytes,
            "files": report.files,
            "recent": [asdict(item) for item in report.recent],
        }
        try:
            write_atomic(self.path, orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        except OSError as exc:  # the loss itself is in the log already; shipping goes on
            log.error("cannot record the loss in %s: %s", self.path, exc)
