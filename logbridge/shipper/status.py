"""``logbridge ship --status``: the collector in use when ``collector.urls`` lists several (from
``collector.json``), each known file's lag, read from the checkpoint file, the bytes lost so
far, from ``lost.json`` (safe while a shipper runs: these files are replaced atomically), and
the inputs that match no file."""

from __future__ import annotations

import os
import time

from . import current
from .checkpoint import CheckpointStore, Entry
from .config import ShipperConfig
from .discover import idle_inputs, match
from .losses import LossLog, LossReport

Key = tuple[int, int]


def file_lag(entry: Entry, inodes: dict[Key, str] | None = None) -> tuple[str, int | None, int | None]:
    """(state, size now, lag) of one entry, looking at the file on disk: by path, then checked
    by inode and first bytes (a reused inode under the old name is another file). A file renamed
    since the checkpoint was written (a rotation) is found by its inode in its directory, or in
    ``inodes`` (the files the inputs match now, by (device, inode)): state "renamed to <path>",
    with its lag (a backlog of rotated files is a lag too, not "rotated away")."""
    state = _look(entry, entry.path)
    if state is not None:
        return state
    for path in _candidates(entry, inodes):
        found = _look(entry, path)
        if found is not None:
            return (f"renamed to {path}", found[1], found[2])
    return ("gone", None, None)


def _candidates(entry: Entry, inodes: dict[Key, str] | None) -> list[str]:
    key = (entry.dev, entry.ino)
    if inodes is not None:
        return [inodes[key]] if key in inodes else []
    directory = os.path.dirname(entry.path) or "."
    out = []
    try:
        with os.scandir(directory) as names:
            for item in names:
                try:
                    st = item.stat()
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) == key:
                    out.append(item.path)
    except OSError:
        pass
    return out


def _look(entry: Entry, path: str) -> tuple[str, int | None, int | None] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (entry.dev, entry.ino) or not entry.matches(fd):
            return None
        return ("ok", st.st_size, max(0, st.st_size - entry.offset))
    finally:
        os.close(fd)


def inputs_by_inode(cfg: ShipperConfig) -> dict[Key, str]:
    """The files the inputs match now, by (device, inode)."""
    out: dict[Key, str] = {}
    for path in match(list(cfg.inputs)):
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.setdefault((st.st_dev, st.st_ino), path)
    return out


def render(cfg: ShipperConfig) -> str:
    in_use = current.describe(cfg.state_dir, cfg.collector.endpoints)
    lines = [in_use] if in_use else []
    lines.append(_lag_table(cfg.state_dir, inputs_by_inode(cfg)))
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


def _lag_table(state_dir: str, inodes: dict[Key, str]) -> str:
    entries = CheckpointStore(state_dir).load()
    if not entries:
        return f"no checkpoint in {state_dir}: nothing shipped yet"
    rows = [("FILE", "OFFSET", "SIZE", "LAG", "STATE")]
    total = 0
    for entry in sorted(entries.values(), key=lambda e: e.path):
        state, size, lag = file_lag(entry, inodes)
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
