"""What ``logbridge ship --once`` shows while it works: a rich progress bar on a terminal
(bytes, lines, rate, ETA), one plain log line every few seconds otherwise (CI, cron, pipes)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger("logbridge.shipper")


class ShipProgress:
    """Context manager; `advance` is the shipper's ``on_ack`` callback."""

    def __init__(self, total_bytes: int, *, tty: bool | None = None, every: float = 2.0):
        self.total = total_bytes
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.every = every
        self.lines = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ShipProgress:
        if self.tty:
            self._progress = Progress(
                TextColumn("[bold]shipping"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[lines]:,} lines"),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("ship", total=self.total or None, lines=0)
        return self

    def set_total(self, total_bytes: int) -> None:
        self.total = total_bytes
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total_bytes or None)

    def advance(self, lines: int, nbytes: int) -> None:
        self.lines += lines
        self.bytes += nbytes
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=nbytes, lines=self.lines)
            return
        now = time.monotonic()
        if now - self._last_log >= self.every:
            self._last_log = now
            log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.started)
        rate = self.bytes / elapsed
        left = max(0, self.total - self.bytes)
        eta = f", ETA {left / rate:.0f}s" if rate > 0 and left else ""
        return (
            f"shipped {self.lines:,} lines, {self.bytes / 1e6:.1f} of {self.total / 1e6:.1f} MB, "
            f"{self.lines / elapsed:,.0f} lines/s, {rate / 1e6:.1f} MB/s{eta}"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
