"""One collector process per ``state_dir``.

A second collector on the same state dir would run start-up recovery on the first one's live
staging files, publish them while they still grow and compact its journal away. So before
anything in the state dir is touched, the process takes ``state_dir/collector.lock`` (a
`logbridge.fileio.LockFile`: an exclusive ``flock``) and writes its pid and address there, for
the message a second one prints. The kernel drops the lock when the process dies, even by
SIGKILL: no stale lock to clean.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StateDirInUse as StateDirInUse  # defined in the one tree; raised here
from ..fileio import LockFile, LockHolder


class StateLock:
    """``state_dir/collector.lock``: `acquire` or `StateDirInUse` naming the holder."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self._lock = LockFile(state_dir / "collector.lock")
        self.path = self._lock.path

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self, owner: str = "") -> None:
        """Take the lock or raise `StateDirInUse` naming the holder. Idempotent."""
        self._lock.acquire(self._in_use, owner)

    def release(self) -> None:
        self._lock.release()

    def _in_use(self, holder: LockHolder) -> StateDirInUse:
        who = f"pid {holder.pid}" if holder.pid else "a process that has not written its pid yet"
        where = f", listening on {holder.owner}" if holder.owner else ""
        return StateDirInUse(
            f"state_dir {self.state_dir} is in use by another collector ({who}{where}); "
            "stop it first, or give this collector its own state_dir"
        )
