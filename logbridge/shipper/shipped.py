"""What a shipper has shipped, as another process may ask it: a read-only view of the checkpoint.

A rolling file appender that must not delete a backup the shipper still needs (`logbridge.log4j.
retention`) asks, at rollover time only, "how many bytes of this file are not acknowledged by the
collector yet?". The answer comes from the shipper's ``<state_dir>/checkpoints.json``:

- Read, never written: the shipper owns the file and its state dir (a lock); this view takes no
  lock and never moves a bad file aside (`CheckpointStore.load` does that, for the shipper only).
- Consistent: the shipper replaces the file atomically (temp, fsync, rename), so one ``read``
  sees the old or the new checkpoint whole, never a mix.
- Conservative: the checkpoint is written about once a second, so it may be behind the collector,
  never ahead of it (an offset is an acknowledged batch end). A file is "shipped" only when an
  entry with the file's identity (device, inode, first line, and the hashed prefix the shipper
  checked: `identity`) has an offset at or past the file's size. A file the checkpoint does not
  know — never seen, or its inode reused by new bytes — is wholly unshipped.
- Cheap: at a rollover, one ``stat`` of the checkpoint, and a read and parse only when it
  changed since the last rollover (`CachedView`); a scan of the parsed entries per backup asked
  about, and two small ``pread`` calls. Numbers: bench/README.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointUnreadable
from .checkpoint import FILE_NAME, Entry, file_records

__all__ = ["CheckpointUnreadable", "CachedView", "FileShipping", "ShippedView", "unknown"]


@dataclass(frozen=True, slots=True)
class FileShipping:
    """How much of one file the collector has acknowledged."""

    path: str
    size: int
    acked: int  # bytes from the start that the collector has (0 when the checkpoint does not know the file)

    @property
    def unshipped(self) -> int:
        return max(0, self.size - self.acked)

    @property
    def shipped(self) -> bool:
        return self.unshipped == 0


class ShippedView:
    """One snapshot of a shipper's checkpoint.

    Entries stay parsed JSON objects, and a lookup scans them for the file's (device, inode):
    a guard asks about one or two backups per rollover, and building all 3,000 `Entry` objects
    of a large checkpoint (or an index of them) cost more than the parse itself."""

    def __init__(self, records: list[dict[str, Any]]):
        self._records = records

    @classmethod
    def read(cls, state_dir: str | os.PathLike[str]) -> ShippedView:
        """The checkpoint of the shipper whose ``state_dir`` this is; `CheckpointUnreadable` when
        there is none or it cannot be read."""
        path = Path(state_dir) / FILE_NAME
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise CheckpointUnreadable(
                f"cannot read the shipper's checkpoint {path}: {exc.strerror}"
            ) from exc
        try:
            return cls(file_records(raw))
        except ValueError as exc:
            raise CheckpointUnreadable(f"the shipper's checkpoint {path} is unreadable: {exc}") from exc

    def of(self, path: str | os.PathLike[str]) -> FileShipping:
        """How much of the file at ``path`` is shipped (`OSError` if it cannot be opened). A
        malformed entry counts as nothing shipped."""
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            acked = 0
            dev, ino = st.st_dev, st.st_ino
            for record in self._records:
                if not isinstance(record, dict) or record.get("ino") != ino or record.get("dev") != dev:
                    continue
                try:
                    entry = Entry(**record)
                except TypeError:
                    continue
                if isinstance(entry.offset, int) and entry.offset > acked and entry.matches(fd):
                    acked = entry.offset
            return FileShipping(os.fspath(path), st.st_size, min(acked, st.st_size))
        finally:
            os.close(fd)


class CachedView:
    """`ShippedView.read` again only when the checkpoint file changed: the shipper replaces it
    by a rename, so a new checkpoint is a new inode (or size, or mtime)."""

    def __init__(self, state_dir: str | os.PathLike[str]):
        self.state_dir = state_dir
        self._key: tuple[int, int, int, int] | None = None
        self._view: ShippedView | None = None

    def read(self) -> ShippedView:
        try:
            st = os.stat(Path(self.state_dir) / FILE_NAME)
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        if key is None or key != self._key or self._view is None:
            self._view, self._key = None, None
            self._view = ShippedView.read(self.state_dir)
            self._key = key
        return self._view


def unknown(path: str | os.PathLike[str]) -> FileShipping:
    """A file of which nothing is known to be shipped (no checkpoint): all of it is at risk."""
    return FileShipping(os.fspath(path), os.stat(path).st_size, 0)
