"""Retention without loss: rolling appenders that keep a backup until the shipper has shipped it.

log4j's ``RollingFileAppender`` deletes ``file.N`` at every rollover past ``MaxBackupIndex``, and
``DailyRollingFileAppender`` deletes a dated file that is in the way of a rename. When the shipper
has not shipped that file yet (the collector was down, the shipper was stopped), its unshipped
lines are gone, and no process ever said so: a shipper that never saw the file cannot report it.

The guard (off by default: without a ``retention`` argument the handlers are log4j's, byte for
byte) reads the shipper's checkpoint at rollover time (`logbridge.shipper.shipped`) and:

- ``keep_unshipped: true`` (the default once ``retention`` is given): a backup the rollover would
  drop is kept while the checkpoint says it has unacknowledged bytes. Kept backups live past
  log4j's chain, as ``file.N+1``, ``file.N+2`` …, oldest last, renumbered without gaps at each
  rollover, and deleted at the first rollover after they are shipped. The shipper follows the
  renames by inode, so renumbering re-sends nothing. With ``MaxBackupIndex=0`` the live file is
  kept the same way (moved to ``file.1``) instead of being truncated. A daily appender sets the
  dated file in its way aside as ``<dated name>.1`` (``.2`` …) and never deletes it, as log4j
  never deletes dated files.
- Caps: at most ``max_kept_files`` (default 100) kept backups holding ``max_kept_bytes`` (default
  1 GiB); past them the oldest kept backups are deleted, and that is a loss.
- ``keep_unshipped: false``: log4j's deletions, each one checked against the checkpoint first.

Whatever the mode, a deletion of unshipped bytes (a cap reached, keeping off, or a checkpoint
that cannot be read, when nothing is known to be shipped) is reported: a ``log4j:ERROR`` line on
stderr naming the file, the counters of `RetentionStats` (``handler.retention.stats``), and an
audit event ``logbridge-backup-lost`` on the ``dku.audit.generic-failure`` logger, written once
the rollover is over, so that the loss reaches the store in the trail itself. A checkpoint that
cannot be read keeps every backup (within the caps) and says so once on stderr.

A deletion reported here is lost for sure only if no shipper holds the file open: a running
shipper reads a file it has open to the end even after it is deleted (and reports what it could
not read itself).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..shipper.shipped import CachedView, CheckpointUnreadable, FileShipping, ShippedView, unknown
from ..units import parse_size

LOSS_TOPIC = "generic-failure"
LOSS_MSG_TYPE = "logbridge-backup-lost"
DEFAULT_MAX_KEPT_FILES = 100
DEFAULT_MAX_KEPT_BYTES = 1024**3
RECENT_LOSSES = 20

RETAINING_APPENDERS = ("org.apache.log4j.RollingFileAppender", "org.apache.log4j.DailyRollingFileAppender")

# The ``.logbridge.*`` options of a properties file (log4j itself skips keys with a dot after the
# appender's prefix, so a JVM reading the same file ignores them) → the settings' names.
PROPERTY_KEYS = {
    "shipperStateDir": "shipper_state_dir",
    "keepUnshipped": "keep_unshipped",
    "maxKeptFiles": "max_kept_files",
    "maxKeptBytes": "max_kept_bytes",
}


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    shipper_state_dir: str
    keep_unshipped: bool = True
    max_kept_files: int = DEFAULT_MAX_KEPT_FILES
    max_kept_bytes: int = DEFAULT_MAX_KEPT_BYTES

    @classmethod
    def from_config(
        cls, value: Mapping[str, Any], where: str, key: Callable[[str], str] = " retention.{}".format
    ) -> RetentionSettings:
        """From a handler's ``retention`` mapping; `ConfigError` naming ``where`` and the key
        (as ``key`` spells it: the properties file has its own names)."""
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} retention: expected a mapping with shipper_state_dir, got {value!r}")
        unknown_keys = sorted(set(value) - set(cls.__slots__))
        if unknown_keys:
            raise ConfigError(
                f"{where} retention: unknown key(s) {', '.join(map(str, unknown_keys))}; "
                f"expected {', '.join(cls.__slots__)}"
            )
        state_dir = value.get("shipper_state_dir")
        if not isinstance(state_dir, str | os.PathLike) or not os.fspath(state_dir).strip():
            raise ConfigError(
                f"{where}{key('shipper_state_dir')}: expected the shipper's state_dir (where its "
                f"checkpoints.json is), got {state_dir!r}"
            )
        keep = value.get("keep_unshipped", True)
        if isinstance(keep, str) and keep.strip().lower() in ("true", "false"):
            keep = keep.strip().lower() == "true"
        if not isinstance(keep, bool):
            raise ConfigError(f"{where}{key('keep_unshipped')}: expected true or false, got {keep!r}")
        try:
            files = int(value.get("max_kept_files", DEFAULT_MAX_KEPT_FILES))
            if files < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(
                f"{where}{key('max_kept_files')}: expected a whole number >= 0, "
                f"got {value.get('max_kept_files')!r}"
            ) from None
        try:
            size = parse_size(value.get("max_kept_bytes", DEFAULT_MAX_KEPT_BYTES))
        except ValueError as exc:
            raise ConfigError(f"{where}{key('max_kept_bytes')}: {exc}") from None
        return cls(os.fspath(state_dir), keep, files, size)

    def as_config(self) -> dict[str, Any]:
        """The ``retention`` mapping of a dictConfig handler (what ``convert`` prints)."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class BackupLoss:
    path: str
    size: int
    unshipped: int
    why: str


@dataclass(slots=True)
class RetentionStats:
    """What the guard did, for the user (``handler.retention.stats``) and tests."""

    kept_files: int = 0  # backups kept past MaxBackupIndex now (after the last rollover)
    kept_bytes: int = 0
    deleted_shipped: int = 0  # backups deleted once the shipper had every byte
    lost_files: int = 0  # backups deleted with unshipped bytes
    lost_bytes: int = 0  # their unshipped bytes
    recent: list[BackupLoss] = field(default_factory=list)  # the latest losses, oldest first


def numbered_backups(base: str) -> list[int]:
    """The indexes ``i`` of the files ``base.i`` that exist (log4j's names: no leading zero)."""
    folder, name = os.path.split(base)
    prefix = name + "."
    found = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    for entry in names:
        rest = entry[len(prefix) :] if entry.startswith(prefix) else ""
        if rest.isascii() and rest.isdigit() and not rest.startswith("0"):
            found.append(int(rest))
    return sorted(found)


def compaction_moves(sources: list[int], first: int) -> list[tuple[int, int]]:
    """Renames that put the files ``sources`` (increasing indexes) at ``first``, ``first+1`` …
    keeping their order, in an order where no rename lands on a file still to be moved.

    Each target is at most its source + 1 (the sources are distinct and all >= ``first - 1``).
    Moves down go first, lowest first: the slot each takes is empty or was just left by a lower
    source. Then moves up (by exactly one), highest first, like log4j's own shift."""
    assert all(s >= first - 1 for s in sources) and sources == sorted(set(sources))
    pairs = [(s, first + k) for k, s in enumerate(sources)]
    down = [(s, t) for s, t in pairs if t < s]
    up = [(s, t) for s, t in reversed(pairs) if t > s]
    return down + up


class RetentionGuard:
    """The guard of one rolling handler; every method runs under the handler's lock."""

    def __init__(self, settings: RetentionSettings, owner: str, say: Callable[[str, str], None]):
        self.settings = settings
        self.owner = owner  # for messages: the appender's name and file
        self.say = say  # (level, message): a log4j:ERROR/WARN line on stderr
        self.stats = RetentionStats()
        self._pending: list[BackupLoss] = []
        self._unreadable_said: str | None = None
        self._reporting = threading.local()
        self._checkpoint = CachedView(settings.shipper_state_dir)

    @property
    def keeps(self) -> bool:
        return self.settings.keep_unshipped

    # ------------------------------------------------------------------ the checkpoint

    def _view(self) -> ShippedView | None:
        try:
            view = self._checkpoint.read()
        except CheckpointUnreadable as exc:
            if self._unreadable_said != str(exc):
                self._unreadable_said = str(exc)
                self.say(
                    "WARN",
                    f"{self.owner}: {exc}; no backup is known to be shipped"
                    + (", so backups are kept (within the caps)." if self.keeps else "."),
                )
            return None
        self._unreadable_said = None
        return view

    def _shipping(self, view: ShippedView | None, path: str) -> FileShipping:
        return view.of(path) if view is not None else unknown(path)

    def _why_unknown(self, why: str) -> str:
        if self._unreadable_said is not None:
            return f"{why}; {self._unreadable_said}"
        return why

    # ------------------------------------------------------------------ rolling appender

    def make_room(self, base: str, max_index: int, close_live: Callable[[], None]) -> tuple[bool, bool]:
        """Before log4j's shift of ``base.1 … base.N-1``: delete what is past ``base.N-1`` and
        shipped, keep the rest (within the caps) as ``base.N+1 …``, so that ``base.N`` is free.
        With ``max_index`` 0 the live file ``base`` itself is a candidate (kept as ``base.1``).
        Returns (every rename succeeded, the live file was moved)."""
        view = self._view()
        candidates: list[tuple[int, str]] = []
        if max_index == 0 and _size(base) > 0:
            candidates.append((0, base))
        candidates += [(i, f"{base}.{i}") for i in numbered_backups(base) if i >= max(max_index, 1)]
        kept: list[tuple[int, FileShipping]] = []
        files = size = 0
        for index, path in candidates:  # newest first
            try:
                state = self._shipping(view, path)
            except OSError:
                continue  # gone meanwhile
            if state.shipped:
                if index and attempt(os.remove, path):
                    self.stats.deleted_shipped += 1
                continue
            s = self.settings
            if files + 1 > s.max_kept_files or size + state.size > s.max_kept_bytes:
                why = f"max_kept_files={s.max_kept_files} / max_kept_bytes={s.max_kept_bytes} reached"
                self._lost(state, self._why_unknown(why))
                if index:
                    attempt(os.remove, path)  # the live file (index 0) is truncated by the reopen
                continue
            files += 1
            size += state.size
            kept.append((index, state))
        self.stats.kept_files, self.stats.kept_bytes = files, size
        sources = [index for index, _ in kept]
        moved_live = 0 in sources
        if moved_live:
            close_live()
        for src, dst in compaction_moves(sources, max_index + 1):
            if not attempt(os.rename, base if src == 0 else f"{base}.{src}", f"{base}.{dst}"):
                return False, moved_live
        return True, moved_live

    # ------------------------------------------------------------------ log4j's own deletions

    def retire(self, path: str, why: str, *, set_aside: bool) -> None:
        """log4j is about to delete ``path``: with ``set_aside`` and keeping on, an unshipped file
        is renamed to ``path.1`` (``.2`` …) instead; otherwise an unshipped file is reported."""
        view = self._view()
        try:
            state = self._shipping(view, path)
        except OSError:
            return
        if state.shipped:
            self.stats.deleted_shipped += 1
            return
        if set_aside and self.keeps:
            k = 1
            while os.path.lexists(f"{path}.{k}"):
                k += 1
            if attempt(os.rename, path, f"{path}.{k}"):
                self.stats.kept_files += 1
                self.stats.kept_bytes += state.size
                return
        self._lost(state, self._why_unknown(why))

    # ------------------------------------------------------------------ reporting

    def _lost(self, state: FileShipping, why: str) -> None:
        loss = BackupLoss(state.path, state.size, state.unshipped, why)
        self.stats.lost_files += 1
        self.stats.lost_bytes += loss.unshipped
        self.stats.recent = [*self.stats.recent, loss][-RECENT_LOSSES:]
        self.say(
            "ERROR",
            f"{self.owner}: deleted [{loss.path}] before the shipper had shipped it: "
            f"{loss.unshipped} of its {loss.size} bytes were not acknowledged ({why}).",
        )
        self._pending.append(loss)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def report_pending(self, appender: str, lock: AbstractContextManager[Any]) -> None:
        """Write an audit event per loss not yet written. Called by the handler after its rollover,
        *outside* its lock (``lock`` guards the list only): the event goes to other handlers,
        whose locks must never be taken while this one is held (two guarded handlers reporting to
        each other would deadlock), and it may well come back to this same handler."""
        if getattr(self._reporting, "active", False):
            return  # an event written by this thread's report came back here: the next call
        self._reporting.active = True
        try:
            from .. import audit

            # One pass: losses that these events cause in turn (they may roll this very file)
            # wait for the next record, so a file smaller than an event cannot loop forever.
            with lock:
                losses, self._pending = self._pending, []
            for loss in losses:
                audit.emit(
                    LOSS_TOPIC,
                    LOSS_MSG_TYPE,
                    appender=appender,
                    file=loss.path,
                    bytes=loss.size,
                    unshippedBytes=loss.unshipped,
                    reason=loss.why,
                )
        finally:
            self._reporting.active = False


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def attempt(fn: Callable[..., Any], *args: str) -> bool:
    """``fn(*args)``; False when it raised `OSError` (log4j's renames and deletes report
    failure by their return value and go on)."""
    try:
        fn(*args)
        return True
    except OSError:
        return False


def settings_from_properties(options: Mapping[str, str], prefix: str) -> RetentionSettings | None:
    """The settings of an appender's ``<prefix>.*`` options (bean-style names, as `model`
    collects them); None when ``ShipperStateDir`` is not set."""
    if "shipperStateDir" not in options:
        return None
    spelled = {snake: bean[0].upper() + bean[1:] for bean, snake in PROPERTY_KEYS.items()}
    return RetentionSettings.from_config(
        {PROPERTY_KEYS[k]: v for k, v in options.items()}, prefix, lambda name: f".{spelled[name]}"
    )
