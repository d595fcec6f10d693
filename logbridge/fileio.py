"""Small file-system steps that must not leave torn or stray files behind, and the lock that
keeps a state dir to one process.

- `write_atomic` / `write_beside`: a file is replaced whole or not at all (temp file beside it,
  fsync, rename over, directory fsync); ``durable=False`` skips the fsyncs where a torn write
  after a power cut only costs a resend.
- `LockFile`: one process per directory (the collector's and the shipper's ``state_dir``, a
  handler's spool slot): an exclusive, non-blocking ``flock`` on a file in it, holding the pid and
  the owner's address for the message a second process prints. The kernel drops the lock when
  the process dies, even by SIGKILL: there is never a stale lock to clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write temp, fsync, rename over, fsync the directory: never a torn file (and no temp file
    left behind when it fails). ``durable=False``: the same without the two fsyncs (a crash of
    the process still leaves the old or the new file whole; a power cut may not)."""
    write_beside(path, lambda fh: fh.write(data), durable=durable)


def write_beside(path: Path, fill: Callable[[BinaryIO], object], *, durable: bool = True) -> None:
    """Create or replace ``path`` through a hidden temp file beside it (``.<name>.tmp``): ``fill``
    writes it, then fsync, rename over, fsync the directory. A reader never sees half a file; a
    failure removes the temp file; a retry reuses its name, so nothing piles up."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fill(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def journal_generations(directory: Path) -> list[int]:
    """The generation numbers of the ``journal-NNNNNNNN.wal`` files in ``directory``, oldest
    first (the collector's and the writers' journals name their files alike)."""
    found = []
    for path in directory.glob("journal-*.wal"):
        digits = path.name[len("journal-") : -len(".wal")]
        if digits.isdigit():
            found.append(int(digits))
    return sorted(found)


def append_or_cut(fd: int, data: bytes, size: int) -> None:
    """Append ``data`` to the file ``fd``, ``size`` bytes long: all of it, or the file is cut
    back to ``size`` and the `OSError` raised (a journal never keeps half a record it could
    mistake for a whole one, e.g. on a full disk)."""
    try:
        write_all(fd, data)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


@dataclass(frozen=True)
class LockHolder:
    """What the process holding a `LockFile` wrote in it (either may be unknown: it may not
    have written yet, or be an older logbridge that wrote nothing)."""

    pid: str | None
    owner: str | None


class LockFile:
    """An exclusive ``flock`` on ``path`` (created if missing), for as long as this process
    holds it.

    `try_acquire` takes it or says who has it; `acquire` raises what ``busy`` makes of the
    holder (each command keeps its own message and `ConfigError` subclass). The holder writes
    ``<pid> <owner>`` into the file once it has the lock. The descriptor is close-on-exec, so a
    child process never inherits the lock.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o644):
        self.path = Path(path)
        self.mode = mode
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int:
        """The locked descriptor (closing it releases the lock)."""
        if self._fd is None:
            raise ValueError(f"{self.path} is not locked by this process")
        return self._fd

    def try_acquire(self, owner: str = "") -> LockHolder | None:
        """Take the lock: None once held (idempotent), else who holds it. `OSError` when the
        file cannot be opened at all."""
        if self._fd is not None:
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            words = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            os.close(fd)
            return LockHolder(words[0] if words else None, words[1] if len(words) > 1 else None)
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {owner}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return None

    def acquire(self, busy: Callable[[LockHolder], BaseException], owner: str = "") -> None:
        """Take the lock or raise ``busy(holder)`` (without the BlockingIOError as context)."""
        holder = self.try_acquire(owner)
        if holder is not None:
            raise busy(holder) from None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
