"""``logbridge ship --status``: each known file's lag, read from the checkpoint file, the
bytes lost so far, from ``lost.json`` (safe while a shipper runs: both files are replaced
atomically), and the inputs that match no file."""

from __future__ import annotations

import os
import time

from .checkpoint import CheckpointStore, Entry
from .config import ShipperConfig
from .discover import idle_inputs
from .losses import LossLog, LossReport


def file_lag(entry: Entry) -> tuple[str, int | None, int | None]:
    """(state, size now, lag) of one entry, looking at the file on disk (by path, then checked
    by inode and first bytes: a reused inode under the old name is another file)."""
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ("gone", None, None)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (entry.dev, entry.ino) or not entry.matches(fd):
            return ("rotated away", None, None)
        return ("ok", st.st_size, max(0, st.st_size - entry.offset))
    finally:
        os.close(fd)


def render(cfg: ShipperConfig) -> str:
    lines = [_lag_table(cfg.state_dir)]
    lost = LossLog(cfg.state_dir).load()
    if lost.files:
        lines.extend(_losses(lost))
    for item in idle_inputs(list(cfg.inputs)):
        lines.append(f"warning: {item}" if item.missing else str(item))
    return "\n".join(lines)


def _losses(report: LossReport) -> list[str]:
    shown = " (the latest below)" if len(report.recent) < report.files else ""
    out = [f"lost: {report.bytes:,} bytes in {report.files} files, never read (see the log){shown}:"]
    for loss in report.recent:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(loss.time))
        out.append(f"  {stamp}  {loss.path} {loss.why}: {loss.bytes:,} bytes from offset {loss.offset:,}")
    return out


def _lag_table(state_dir: str) -> str:
    entries = CheckpointStore(state_dir).load()
    if not entries:
        return f"no checkpoint in {state_dir}: nothing shipped yet"
    rows = [("FILE", "OFFSET", "SIZE", "LAG", "STATE")]
    total = 0
    for entry in sorted(entries.values(), key=lambda e: e.path):
        state, size, lag = file_lag(entry)
        total += lag or 0
        rows.append(
            (
                entry.path,
                f"{entry.offset:,}",
                f"{size:,}" if size is not None else "-",
                f"{lag:,}" if lag is not None else "-",
                state + (" (a range in flight)" if entry.inflight else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            c.ljust(w) if i in (0, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.append(f"total lag: {total:,} bytes in {len(entries)} files")
    return "\n".join(line.rstrip() for line in lines)
