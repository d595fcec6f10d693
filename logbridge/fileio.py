"""Small file-system steps that must not leave torn or stray files behind."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write temp, fsync, rename over, fsync the directory: never a torn file (and no temp file
    left behind when it fails). ``fsync=False``: still never torn, but a power loss may bring
    back the previous version (for state where being behind only costs a resend)."""
    write_beside(path, lambda fh: fh.write(data), fsync=fsync)


def write_beside(path: Path, fill: Callable[[BinaryIO], object], *, fsync: bool = True) -> None:
    """Create or replace ``path`` through a hidden temp file beside it (``.<name>.tmp``): ``fill``
    writes it, then fsync, rename over, fsync the directory. A reader never sees half a file; a
    failure removes the temp file; a retry reuses its name, so nothing piles up."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fill(fh)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
