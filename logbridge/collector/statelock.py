"""One collector process per ``state_dir``.

A second collector on the same state dir would run start-up recovery on the first one's live
staging files, publish them while they still grow and compact its journal away. So before
anything in the state dir is touched, the process takes an exclusive ``flock`` on
``state_dir/collector.lock`` and writes its pid and address there, for the message a second one
prints. The kernel drops the lock when the process dies, even by SIGKILL: no stale lock to clean.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from ..errors import ConfigError


class StateDirInUse(ConfigError):
    """Another live process holds the state dir."""


class StateLock:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.path = state_dir / "collector.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, owner: str = "") -> None:
        """Take the lock or raise `StateDirInUse` naming the holder. Idempotent."""
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"pid {holder[0]}" if holder else "a process that has not written its pid yet"
            where = f", listening on {holder[1]}" if len(holder) > 1 else ""
            raise StateDirInUse(
                f"state_dir {self.state_dir} is in use by another collector ({who}{where}); "
                "stop it first, or give this collector its own state_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {owner}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
