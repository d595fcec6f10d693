"""Which files to tail: each input's glob minus its excludes, found three ways.

- watchdog's native observer (inotify) wakes the shipper as soon as a file is created, moved
  or written, so a rotation is seen before the next write lands;
- a periodic rescan catches whatever events miss (a full inotify queue, a directory created
  after the start, a file replaced while the shipper was busy);
- on NFS/CIFS mounts, where inotify sees only local writers, or when inotify is not available
  at all (watch limit reached), watchdog's polling observer is used instead.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .config import InputConfig

log = logging.getLogger("logbridge.shipper")

NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "ceph", "glusterfs"}
)


def base_dir(pattern: str) -> str:
    """The longest leading directory of a glob with no wildcard in it."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def excluded(path: str, excludes: Iterable[str]) -> bool:
    """An exclude matches the whole path or the file name (``*.gz`` excludes every .gz)."""
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(path, pat) or fnmatch.fnmatchcase(name, pat) for pat in excludes)


def match(inputs: list[InputConfig]) -> dict[str, int]:
    """Regular files matched now: path → index of the first input that matches it."""
    found: dict[str, int] = {}
    for index, inp in enumerate(inputs):
        pattern = os.path.expanduser(inp.path)
        for path in sorted(glob.glob(pattern, recursive="**" in pattern)):
            if path in found or excluded(path, inp.exclude):
                continue
            if os.path.isfile(path):  # follows symlinks: a link to a file is that file
                found[path] = index
    return found


@dataclass(frozen=True, slots=True)
class IdleInput:
    """An input that matches no file now."""

    index: int
    pattern: str  # as configured
    directory: str  # the glob's leading directory without wildcards
    missing: bool  # that directory does not exist (a set-up error, not a node that is still new)

    def __str__(self) -> str:
        name = f"input {self.index} ({self.pattern})"
        if not self.missing:
            return f"{name} matches no file"
        if os.path.exists(self.directory):
            return f"{name}: {self.directory} is not a directory"
        return f"{name}: directory {self.directory} does not exist"


def idle_inputs(inputs: list[InputConfig]) -> list[IdleInput]:
    """The inputs that would read nothing if the shipper started now. A glob that matches no
    file in a directory that exists is normal on a fresh node; a missing directory usually is
    a typo or a service that is not installed, and otherwise looks just like a quiet node."""
    idle = []
    for index, inp in enumerate(inputs):
        directory = base_dir(os.path.expanduser(inp.path))
        if not os.path.isdir(directory):
            idle.append(IdleInput(index, inp.path, directory, missing=True))
        elif not match([inp]):  # on its own: a file taken by an earlier input is still matched
            idle.append(IdleInput(index, inp.path, directory, missing=False))
    return idle


def fs_type(path: str) -> str | None:
    """File system type of the mount holding ``path`` (Linux /proc/mounts), None if unknown."""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1:3] for line in fh if len(line.split()) >= 3]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for mount_point, kind in mounts:
        mount_point = mount_point.replace("\\040", " ")
        if (real == mount_point or real.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(
            best
        ):
            best, best_type = mount_point, kind
    return best_type


class _Waker(FileSystemEventHandler):
    def __init__(self, wake: threading.Event, rescan: threading.Event):
        self.wake = wake
        self.rescan = rescan

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            # created, moved, deleted: the set of files changed; modified: maybe a file that
            # was closed as inactive has grown (the loop rate-limits the rescans).
            self.rescan.set()
        self.wake.set()


class Watcher:
    """Watches the base directories of the inputs; events only wake the shipper's loop."""

    def __init__(self, inputs: list[InputConfig], wake: threading.Event, rescan: threading.Event):
        self.inputs = inputs
        self.handler = _Waker(wake, rescan)
        self.observers: dict[str, BaseObserver] = {}

    def refresh(self) -> None:
        """Start watching any base directory that exists now and is not watched yet."""
        for inp in self.inputs:
            directory = os.path.realpath(base_dir(os.path.expanduser(inp.path)))
            if directory in self.observers or not os.path.isdir(directory):
                continue
            self.observers[directory] = self._observe(directory, inp, recursive="**" in inp.path)

    def _observe(self, directory: str, inp: InputConfig, recursive: bool) -> BaseObserver:
        poll = inp.poll
        if poll is None:
            kind = fs_type(directory)
            poll = kind in NETWORK_FS
            if poll:
                log.info(
                    "%s is on %s: polling it (inotify does not see other hosts' writes)", directory, kind
                )
        if not poll:
            try:
                observer: BaseObserver = Observer()
                observer.schedule(self.handler, directory, recursive=recursive)
                observer.start()
                return observer
            except OSError as exc:
                log.warning("cannot watch %s with inotify (%s): polling it instead", directory, exc)
        observer = PollingObserver(timeout=1.0)
        observer.schedule(self.handler, directory, recursive=recursive)
        observer.start()
        return observer

    def stop(self) -> None:
        for observer in self.observers.values():
            observer.stop()
        for observer in self.observers.values():
            observer.join(timeout=5)
        self.observers.clear()
