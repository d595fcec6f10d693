"""The shipper's loop: discover files, resolve their identity, read batches, forward, checkpoint.

One thread does the work, one batch at a time, round-robin over the open files: memory is one
batch whatever the backlog, and a busy file cannot starve the others. File events (watchdog)
only wake the loop; every decision is taken here, from ``stat``/``fstat`` and the bytes.

Exactly once, end to end, rests on three things: an offset moves only after the collector's
2xx (or its "already stored"); every batch names its source and byte range, so the collector
drops what it already has (and says where to resume with 409); and a restarted shipper cuts the
same ranges again (`batch`), or is told by the 409 where the collector stands. The offsets are
written once per ``checkpoint_interval`` and at shutdown, never per batch (`checkpoint` says why
an older checkpoint is safe).

Descriptors are bounded: at most ``max_open_files`` files are held open (by default half the
soft RLIMIT_NOFILE, at most 1,024). A file with bytes to read and no free slot waits in
`Shipper.waiting`; a slot is made by closing the least recently grown file that has nothing to
send (read to the end; failing that, holding only an unfinished last line). A closed file is
found again by the scans and reopened by identity (device, inode, first bytes: `identity`), so a
rename while it was closed is followed. A file that is gone (deleted, or renamed out of the
globs) is never closed early: its unread bytes are only reachable through the descriptor.
Running out of descriptors anyway (EMFILE/ENFILE: something else in the process, a lower limit)
is never fatal: the shipper closes files, lowers its cap for a while, and retries what failed.

Which bytes belong to which entry while writers, ``cp``/copytruncate, renames and scans race
the reads and acks (the check hashed from the shipped bytes, the head checked again after each
read, copies recognised while still being written): the rules are stated in `identity`.
"""

from __future__ import annotations

import errno
import gc
import heapq
import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..client import CollectorClient, DeadLetter, Result, Stopped
from ..errors import StateDirBusy as StateDirBusy  # defined in the one tree; raised here
from ..fileio import LockFile
from . import current
from .checkpoint import CheckpointStore, Entry
from .config import ShipperConfig
from .discover import Watcher, match
from .identity import (
    CHECK_BYTES,
    Fingerprint,
    check_and_line_end_hashes,
    fingerprint,
    hash_bytes,
    head_matches,
)
from .losses import Loss, LossLog
from .metrics import Metrics
from .tail import Batch, Tail

log = logging.getLogger("logbridge.shipper")

Key = tuple[int, int]  # (st_dev, st_ino)

AUTO_MAX_OPEN = 1024  # the default cap's ceiling, whatever the descriptor limit
FD_RESERVE = 64  # descriptors left for the rest: the connection, checkpoint, scans, inotify, logs
FD_BACKOFF = 30.0  # after running out of descriptors: how long before the cap is raised again


@dataclass(slots=True)
class Waiting:
    """A file with bytes to read that has no descriptor yet (``max_open_files`` reached)."""

    path: str
    index: int  # its input
    entry: Entry | None  # None: not identified yet (it could not be opened at all)
    size: int  # as last seen by a scan (for the backlog)
    initial: bool = False  # found by the first scan (``read_from: end``)


@dataclass
class Totals:
    lines: int = 0
    bytes: int = 0
    batches: int = 0
    duplicates: int = 0
    dead_lettered_lines: int = 0
    oversized: int = 0
    lost_bytes: int = 0
    lost_files: int = 0
    dead_letter_files: list[str] = field(default_factory=list)


class Shipper:
    def __init__(
        self,
        cfg: ShipperConfig,
        *,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        metrics: Metrics | None = None,
        on_ack: Callable[[int, int], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
        watch: bool = True,
    ):
        """``clock``, ``sleep`` (the forwarder's backoff) and ``watch`` (file events through
        watchdog) are there so a test can drive the engine step by step (`step`) on its own
        clock: tests/shipper/test_engine_model.py."""
        self.cfg = cfg
        self.clock = clock
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self.rescan = threading.Event()
        self.metrics = metrics or Metrics()
        self.on_ack = on_ack
        self.on_start = on_start  # called with the backlog in bytes after the first scan
        self.totals = Totals()
        Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_state_dir(cfg.state_dir)
        self.store = CheckpointStore(cfg.state_dir)
        self.first_run = not self.store.exists()
        self.entries: dict[str, Entry] = self.store.load()
        self.tails: dict[Key, Tail] = {}  # the open files
        self.waiting: dict[Key, Waiting] = {}  # files to read, in the order they asked
        self.open_limit = open_files_cap(cfg.max_open_files)
        self.max_open = self.open_limit  # lowered for a while after running out of descriptors
        self._fd_short = False  # ran out of descriptors during this scan or admission
        self._fd_lowered_at = 0.0
        self._fd_warned = -FD_BACKOFF
        self._save_warned = -FD_BACKOFF
        # Unfinished last lines of files closed to make room: (size, partial_since, last_growth),
        # given back when the file is reopened unchanged (close_inactive still ships them).
        self._parked: dict[Key, tuple[int, float | None, float]] = {}
        self._vanished_at_open: dict[Key, tuple[str, int]] = {}  # stat'd, then ENOENT at open
        self._sending: Tail | None = None
        self._by_key: dict[Key, list[Entry]] = {}  # entries by inode (see _index)
        self._by_head: dict[tuple[int, str], list[Entry]] = {}  # and by first-line hash
        self._partial_heads: set[int] = set()  # lengths of heads shipped without their newline
        self._index_stale = True
        self.copies: dict[Key, str] = {}  # live copies of tailed files (same bytes): not shipped
        self.pending: dict[str, float] = {}  # path → first seen; first line not complete yet
        # The collector client (`logbridge.client`); its backoff keeps discovering files.
        self.forwarder = CollectorClient.from_target(
            cfg.collector,
            cfg.node,
            stop=self.stop,
            transport=transport,
            on_retry=self._on_retry,
            on_wait=self._discover_while_waiting,
            on_switch=self._on_switch,
            clock=clock,
            sleep=sleep,
            logger=log,
        )
        self.metrics.current_collector(self.forwarder.collectors.names, self.forwarder.collectors.name)
        self._record_collector(None)
        self.dead_letter = DeadLetter(Path(cfg.state_dir) / "dead-letter")
        self.losses = LossLog(cfg.state_dir)
        self.watcher = Watcher(list(cfg.inputs), self.wake, self.rescan) if watch else None
        self._dirty = False
        # Entries made since the last checkpoint: saved at the end of the scan that made them,
        # and in any case before their first batch goes out. The source id holds the inode, so
        # a file a restarted shipper has no entry for gets a new id: if its bytes went out under
        # the old one (SIGKILL before the checkpoint) and it was then copied (copytruncate's .1,
        # another inode), the copy would be shipped again in full under an id the collector
        # cannot tell from a new file's; and if it was deleted, nothing would say it was lost.
        self._unsaved: set[str] = set()
        self._last_save = 0.0
        self._next_scan = 0.0
        self._last_event_scan = 0.0
        self._once = False

    # ------------------------------------------------------------------------------------ loop

    def run(self, *, once: bool = False) -> Totals:
        """Ship until `stop` is set; with ``once``, until the files found at start are shipped."""
        try:
            self.start(once=once)
            while not self.stop.is_set():
                worked = self.step()
                if once and not self.tails and not self.pending and not self.waiting:
                    break
                if not worked:
                    self.wake.wait(self.cfg.poll_interval)
                    self.wake.clear()
        except Stopped:
            log.info("stopping: the batch in flight is re-sent (same range) on the next start")
        finally:
            self.close()
        return self.totals

    def start(self, *, once: bool = False) -> None:
        """Watch the inputs and take the first look at them (before the first `step`)."""
        self._once = once
        if not once and self.watcher is not None:
            self.watcher.refresh()
        self.scan(self.clock(), initial=True)
        if self.on_start is not None:
            self.on_start(self.backlog())

    def step(self) -> bool:
        """One round: scan if due, at most one batch per open file, admit waiting files, save
        the checkpoint if its interval is up. True when something was done (else the caller
        waits for a file event or ``poll_interval``). `Stopped` when asked to stop mid-batch."""
        now = self.clock()
        once = self._once
        if not self._scan_if_due(now) and once and self.pending:
            self.scan(now, only_pending=True)
        worked = False
        for key, tail in list(self.tails.items()):
            if self.stop.is_set():
                break
            if self.tails.get(key) is not tail:
                continue  # closed to make room meanwhile (a scan between retries)
            if self.pump(key, tail, now, once):
                worked = True
                # Between two batches too, not only once per round: a round sends a batch per
                # file, so with many files behind (a rotation storm, a slow collector) it
                # outlasts a backup's life, and a file created and deleted during it was never
                # opened (lost without a word).
                self._scan_if_due(self.clock())
        if self.waiting and not self.stop.is_set():
            worked |= self._admit(self.clock())
        self._maybe_save(now)
        return worked

    def _scan_if_due(self, now: float) -> bool:
        """Scan when the scan interval is up, or a file event asked (at most every 0.2 s)."""
        if self._once or not (
            now >= self._next_scan or (self.rescan.is_set() and now - self._last_event_scan >= 0.2)
        ):
            return False
        self._last_event_scan = now
        self.rescan.clear()
        self.scan(now)
        return True

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for tail in self.tails.values():
            tail.close()
        self.tails.clear()
        self.save()
        self.forwarder.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def backlog(self) -> int:
        """Bytes of the open and waiting files not yet acknowledged."""
        lag = sum(max(0, t.size - t.entry.offset) for t in self.tails.values())
        return lag + sum(max(0, w.size - (w.entry.offset if w.entry else 0)) for w in self.waiting.values())

    # ------------------------------------------------------------------------------- discovery

    def scan(self, now: float, *, initial: bool = False, only_pending: bool = False) -> None:
        """Match the globs; open new files, follow renamed ones, notice vanished ones."""
        self._fd_short = False
        if not self._fd_free():
            self._fd_pressure(now, "listing the inputs")
            self._next_scan = now + self.cfg.poll_interval
            return
        found = match(list(self.cfg.inputs))
        if not self._fd_free():
            # glob skips a directory it cannot open: this answer may lack files that are there.
            self._fd_pressure(now, "listing the inputs")
            self._next_scan = now + self.cfg.poll_interval
            return
        if only_pending:
            found = {p: i for p, i in found.items() if p in self.pending}
        wall = time.time()
        seen: dict[Key, int] = {}  # the files matched now → their size
        self._index()
        for path, index in found.items():
            try:
                st = os.stat(path)
            except OSError:
                continue  # vanished between glob and stat
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue  # a second name (symlink, hard link) of a file already handled
            seen[key] = st.st_size
            tail = self.tails.get(key)
            if tail is not None:
                tail.path = tail.entry.path = path
                tail.entry.seen = wall
                continue
            waiting = self.waiting.get(key)
            if waiting is not None:  # keeps its place; identified again when opened
                waiting.path, waiting.index, waiting.size = path, index, st.st_size
                if waiting.entry is not None:
                    self._follow_rename(waiting.entry, path, key)
                    waiting.entry.seen = wall
                continue
            same = self._by_key.get(key)
            known = same[-1] if same else None
            unchanged = known is not None and known.size == st.st_size and known.mtime_ns == st.st_mtime_ns
            parked = self._parked.get(key)
            if (
                known is not None
                and unchanged
                and (
                    known.offset == known.size
                    or (parked is not None and now - parked[2] < self.cfg.close_inactive)
                )
            ):
                # Shipped to the end, or up to an unfinished last line (closed to make room), and
                # not written since (or closed as inactive, or after a restart): opened again,
                # and checked, once it changes. (A reused inode is a new file written later: its
                # mtime differs.)
                known.path, known.seen = path, wall
                continue
            if known is not None and (self.waiting or len(self.tails) >= self.max_open or self._fd_short):
                # A file seen before, with bytes to read and no free slot: it waits its turn
                # without being opened (its identity is checked when it is).
                self._follow_rename(known, path, key)
                known.seen = wall
                self.waiting[key] = Waiting(path, index, known, st.st_size, initial)
                continue
            self._open(path, index, key, now, wall, initial, st.st_size)
        # Files whose first line is not complete yet are looked at again soon: their writes
        # only wake the loop, which reads open files.
        self._next_scan = now + (self.cfg.poll_interval if self.pending else self.cfg.scan_interval)
        if only_pending:
            return
        for key, tail in self.tails.items():
            if key not in seen:
                tail.gone = True  # renamed out of the globs or deleted: read to the end, then close
        for path in list(self.pending):
            if path not in found:
                del self.pending[path]
        for key, (path, size) in list(self._vanished_at_open.items()):
            del self._vanished_at_open[key]
            if key not in seen:
                self._deleted_unread(path, key, size)
        for key in [k for k in self.waiting if k not in seen]:
            del self.waiting[key]  # gone before it could be opened (counted below if unread)
        for key in [k for k in self._parked if k not in seen]:
            del self._parked[key]
        self._account_vanished(seen, wall)
        if self._unsaved:
            # Files found by this scan are on disk before anything else happens: a shipper
            # killed before it read one, which is then deleted, leaves its successor a name to
            # report lost (and a copy of it is known for what it is). One write per scan that
            # found files, whatever their number.
            self.save()
        if not self._fd_short:
            self._admit(now)
        self.metrics.files.set(len(self.tails))
        self.metrics.waiting.set(len(self.waiting))
        self.metrics.lag.set(self.backlog())
        if not initial and self.watcher is not None:
            self.watcher.refresh()

    def _follow_rename(self, entry: Entry, path: str, key: Key) -> None:
        """``path`` is the inode of ``entry``, which is not open: the entry takes the new name
        only if the file still begins with its head. The inode may be another file's now (the
        entry's deleted while it waited for a descriptor): its loss is then reported under the
        name it had, not the new file's. (Out of descriptors, the name is left as it was.)"""
        if entry.path == path:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == key and head_matches(fd, entry.head_len, entry.head_hash):
                entry.path = path
        finally:
            os.close(fd)

    def _open(
        self,
        path: str,
        index: int,
        key: Key,
        now: float,
        wall: float,
        initial: bool,
        size: int,
        *,
        admitted: bool = False,
    ) -> None:
        """Identify the file and tail it; with no free slot (``admitted``: one was made for
        it), its entry is made and it waits in `waiting`."""
        if self._fd_short:  # this scan already ran out: do not try every file
            self.waiting.setdefault(key, Waiting(path, index, None, size, initial))
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            # Deleted, or renamed since the scan's stat (logrotate shifts .1 → .2 → … one rename
            # at a time, so a path is missing for a moment while its file lives on): the next
            # scan tells which, and only then is it reported lost.
            if self._once:  # no later scan to tell
                self._deleted_unread(path, key, size)
            else:
                self._vanished_at_open[key] = (path, size)
                self.rescan.set()
            return
        except OSError as exc:
            if out_of_descriptors(exc):
                self._fd_pressure(now, f"opening {path}")
                self.waiting.setdefault(key, Waiting(path, index, None, size, initial))
            else:
                log.warning("cannot open %s: %s (will retry)", path, exc.strerror)
            return
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != key:  # replaced between stat and open: next scan
                os.close(fd)
                return
            first_seen = self.pending.get(path, now)
            force = now - first_seen >= self.cfg.partial_line_timeout
            fp = fingerprint(fd, force=force)
            if fp is None:
                os.close(fd)
                if self._once and st.st_size == 0:
                    self.pending.pop(path, None)  # nothing to ship now, and --once does not wait
                else:
                    self.pending[path] = first_seen
                return
            was_pending = self.pending.pop(path, None) is not None
            entry = self._resolve(fp, fd, st.st_size, path, index, wall, initial)
            if entry is None:
                os.close(fd)
                return
        except BaseException:
            os.close(fd)
            raise
        if not admitted and (self.waiting or len(self.tails) >= self.max_open):
            os.close(fd)  # known now (its entry exists): reopened by identity when its turn comes
            self.waiting[key] = Waiting(path, index, entry, st.st_size)
            return
        tail = Tail(fd, path, entry, self.cfg.inputs[index], now)
        if was_pending and force:
            tail.partial_since = first_seen  # its first line has been waiting that long already
        parked = self._parked.pop(key, None)
        if parked is not None and parked[0] == tail.size:
            _, tail.partial_since, tail.last_growth = parked
        self.tails[key] = tail
        self.wake.set()

    # ------------------------------------------------------------------------ open-file cap

    def _admit(self, now: float) -> bool:
        """Open files waiting for a descriptor, first come first served, closing the least
        recently grown files with nothing to send to make room. True when one was opened."""
        if not self.waiting:
            return False
        self._fd_short = False
        if self.max_open < self.open_limit and now - self._fd_lowered_at >= FD_BACKOFF:
            self.max_open = min(self.open_limit, self.max_open * 2)
            self._fd_lowered_at = now
            if self.max_open == self.open_limit:
                log.info("holding up to %d files open again", self.max_open)
        short = len(self.waiting) - (self.max_open - len(self.tails))
        if short > 0:
            self._evict(short)
        if len(self.tails) >= self.max_open:
            return False
        self._index()
        wall = time.time()
        opened = False
        while self.waiting and len(self.tails) < self.max_open and not self._fd_short:
            key, waiting = next(iter(self.waiting.items()))
            del self.waiting[key]
            try:
                st = os.stat(waiting.path)
            except OSError:
                st = None
            if st is None or (st.st_dev, st.st_ino) != key:
                self.rescan.set()  # renamed or deleted meanwhile: the next scan finds it (or not)
                continue
            self._open(
                waiting.path, waiting.index, key, now, wall, waiting.initial, st.st_size, admitted=True
            )
            opened = True
        self.metrics.files.set(len(self.tails))
        self.metrics.waiting.set(len(self.waiting))
        return opened

    def _evict(self, count: int, *, busy: bool = False) -> int:
        """Close up to ``count`` open files, least recently grown first: those read to the end,
        then those holding only an unfinished last line, then (``busy``: out of descriptors)
        any other. Never a file that is gone (its unread bytes are only reachable through the
        descriptor), nor the one being sent."""
        ranked = []
        for key, tail in self.tails.items():
            if tail.gone or tail is self._sending or tail.fd < 0:
                continue
            if tail.linger_since is None and tail.partial_since is None and tail.entry.offset >= tail.size:
                rank = 0
            elif tail.linger_since is None and tail.partial_since is not None and not self._once:
                rank = 1  # (--once ships these at its end; they cannot be found again)
            elif busy:
                rank = 2
            else:
                continue
            ranked.append((rank, tail.last_growth, key))
        closed = 0
        for rank, _, key in heapq.nsmallest(count, ranked):
            tail = self.tails.pop(key)
            if rank == 1:
                # Reopened when the file changes, or when close_inactive would ship the line.
                self._parked[key] = (tail.size, tail.partial_since, tail.last_growth)
            elif rank == 2:  # bytes to send: back in the queue (--once does not scan again)
                index = next(i for i, inp in enumerate(self.cfg.inputs) if inp is tail.input)
                self.waiting[key] = Waiting(tail.path, index, tail.entry, tail.size)
            tail.close()
            closed += 1
        if closed:
            self.metrics.files.set(len(self.tails))
        return closed

    def _fd_free(self) -> bool:
        """Is a descriptor available right now? (Probed with a dup of the lock's.)"""
        try:
            os.close(os.dup(self._lock_fd))
        except OSError as exc:
            if out_of_descriptors(exc):
                return False
            raise
        return True

    def _fd_pressure(self, now: float, doing: str, *, busy: bool = False) -> None:
        """The process ran out of descriptors while ``doing``: close some files now (least
        recently grown first; ``busy``: even files with bytes to send, which are reopened by
        identity later), hold fewer open for `FD_BACKOFF` seconds, then try more again."""
        self._fd_short = True
        held = len(self.tails)
        target = max(1, min(held * 3 // 4, held - 4))
        self._evict(held - target, busy=busy)
        self.max_open = max(1, min(self.max_open, target))
        self._fd_lowered_at = now
        self.metrics.fd_shortages.inc()
        if now - self._fd_warned >= FD_BACKOFF:
            self._fd_warned = now
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warning(
                "too many open files (the process's limit is %d) while %s: holding at most %d files "
                "open for now (max_open_files: %d)",
                soft,
                doing,
                self.max_open,
                self.open_limit,
            )

    def _index(self) -> None:
        """(Re)build the entries-by-inode and by-first-line maps `_resolve` looks in, if an
        entry was added, removed or moved since. (A loop over every entry for every file
        opened was quadratic: 3,000 files → 9 million comparisons per scan.)"""
        if not self._index_stale:
            return
        self._by_key, self._by_head, self._partial_heads = {}, {}, set()
        for entry in self.entries.values():
            self._by_key.setdefault((entry.dev, entry.ino), []).append(entry)
            self._by_head.setdefault((entry.head_len, entry.head_hash), []).append(entry)
            if entry.head_partial:
                self._partial_heads.add(entry.head_len)
        self._index_stale = False

    def _on_retry(self) -> None:
        """Between retries of a batch: keep discovering files, so that a file created and
        rotated away while the collector is unreachable is held open and not lost."""
        self.metrics.retries.inc()
        self.metrics.collector_failures.labels(self.forwarder.collectors.name).inc()
        now = self.clock()
        if out_of_descriptors(self.forwarder.last_error):
            # No descriptor for the connection: the files held open are what can give some back.
            self._fd_pressure(now, "connecting to the collector", busy=True)
        self._discover_while_waiting(now)

    def _on_switch(self, old: str, new: str) -> None:
        """Another collector of ``collector.urls`` takes the batches now (the client logged why)."""
        self.metrics.collector_switches.inc()
        self.metrics.current_collector(self.forwarder.collectors.names, new)
        self._record_collector(old)

    def _record_collector(self, left: str | None) -> None:
        """For ``ship --status`` (`current`), when there are several collectors."""
        pool = self.forwarder.collectors
        if len(pool) < 2:
            return
        why = None
        if left is not None and left in pool.names:
            why = pool.problems.get(pool.names.index(left))
        current.save(
            self.cfg.state_dir,
            current.CurrentCollector(
                pool.name, pool.current, time.time(), pool.switches, os.getpid(), left, why
            ),
        )

    def _discover_while_waiting(self, now: float | None = None) -> None:
        """While a batch waits out a backoff: scan when a file event or the scan interval asks,
        so new files are opened (up to the open-file cap) during an outage, not after it."""
        now = self.clock() if now is None else now
        if not self._once and (now >= self._next_scan or self.rescan.is_set()):
            self.rescan.clear()
            self.scan(now)

    def _deleted_unread(self, path: str, key: Key, size: int) -> None:
        """A file seen by the scan but deleted before it could be opened: whatever part of it
        no checkpoint covers is lost."""
        self._index()
        shipped = max((e.offset for e in self._by_key.get(key, ())), default=0)
        self._report_loss(path, size - shipped, shipped, "was deleted before it could be read")
        self.pending.pop(path, None)

    def _resolve(
        self, fp: Fingerprint, fd: int, size: int, path: str, index: int, wall: float, initial: bool
    ) -> Entry | None:
        """The checkpoint entry this file continues, a new one, or None for a copy of a file
        that is being tailed (its bytes are already on their way)."""
        key = (fp.dev, fp.ino)
        self._index()
        # 1. The same file as before (also after a rename while the shipper was down); an
        #    entry on this inode whose head no longer matches is a replaced file: not applied.
        for entry in self._by_key.get(key, ()):
            if not entry.matches(fd):
                continue
            if size < entry.offset:
                # Cut shorter than what was shipped: whatever follows is new bytes at offsets the
                # collector has already seen for this source, so it becomes a new source below.
                self._lose(entry, entry.size - entry.offset, path, "was truncated below its checkpoint")
                entry.size = entry.offset
                break
            entry.path, entry.seen, entry.size = path, wall, size
            return entry
        # 2. A copy of a file we know (copytruncate's .1): the same bytes under a new inode. A
        #    file that only shares the first line (a constant header) is not one.
        for entry in self._same_head(fp, fd):
            if (entry.dev, entry.ino) == key:
                continue
            if not entry.matches(fd):
                if self._copy_in_progress(entry, fd):
                    log.info("%s is being copied from %s: looked at again at the next scan", path, entry.path)
                    self._set_aside(entry, key, fd, size)
                    return None
                if size <= entry.offset and (
                    entry.known_copy(fp.dev, fp.ino, fd) or entry.shipped_copy(fd, size)
                ):
                    # A copy made before the file grew further (copytruncate's .1, then more
                    # lines shipped from the original, then the truncation): shorter than the
                    # check, so not comparable with it, but every byte of it was shipped.
                    if self.copies.get(key) != entry.source:
                        log.info("%s is an older copy of %s: everything in it was shipped", path, entry.path)
                    self._set_aside(entry, key, fd, size)
                    return None
                continue
            if size < entry.offset:
                # The same bytes as far as the check goes, and shorter than what was shipped: a
                # copy made before the original was shipped further (and then truncated).
                if self.copies.get(key) != entry.source:
                    log.info("%s is an older copy of %s: everything in it was shipped", path, entry.path)
                self._set_aside(entry, key, fd, size)
                return None
            if self._original_alive(entry):
                if self.copies.get(key) != entry.source:
                    log.info(
                        "%s is a copy of %s, which is being shipped: not shipping it twice", path, entry.path
                    )
                self._set_aside(entry, key, fd, size)  # looked at again at each scan, in case it diverges
                return None
            log.info("%s continues %s (copied before it was truncated or removed)", path, entry.path)
            self.copies.pop(key, None)
            old = self.tails.get((entry.dev, entry.ino))
            if old is not None and old.entry is entry and old is not self._sending:
                # Its file was truncated or rewritten (not yet noticed by `pump`): what is left
                # to read is read from the copy. (The tail being sent is let go by `_truncated`.)
                old.close()
                del self.tails[(entry.dev, entry.ino)]
            self._by_key[(entry.dev, entry.ino)].remove(entry)
            self._by_key.setdefault(key, []).append(entry)
            entry.dev, entry.ino, entry.path, entry.seen, entry.size = fp.dev, fp.ino, path, wall, size
            self._moved(entry)
            return entry
        self.copies.pop(key, None)
        # 3. A new file.
        source = base = fp.source_id(self.cfg.node)
        generation = 1
        while source in self.entries:
            # Same inode and first line as a file shipped before, but other bytes (rewritten in
            # place): a new source, or the collector would take its ranges for the old file's.
            generation += 1
            source = f"{base}~{generation}"
        offset = 0
        if initial and self.first_run and self.cfg.inputs[index].read_from == "end":
            offset = _last_line_end(fd, size)
        entry = Entry(source, path, fp.dev, fp.ino, fp.head_len, fp.head_hash, offset, None, size, wall)
        if os.pread(fd, 1, fp.head_len - 1) != b"\n":
            entry.head_partial = True
            self._partial_heads.add(fp.head_len)
        self.entries[source] = entry
        self._by_key.setdefault(key, []).append(entry)
        self._by_head.setdefault((fp.head_len, fp.head_hash), []).append(entry)
        self._dirty = True
        self._unsaved.add(source)
        return entry

    def _same_head(self, fp: Fingerprint, fd: int) -> list[Entry]:
        """Entries with this file's first line: the same head, or a head shipped before its
        newline came that this file begins with."""
        found = list(self._by_head.get((fp.head_len, fp.head_hash), ()))
        for length in self._partial_heads:
            if length < fp.head_len:
                key = (length, hash_bytes(os.pread(fd, length, 0)))
                found += [e for e in self._by_head.get(key, ()) if e.head_partial]
        return found

    def _set_aside(self, entry: Entry, key: Key, fd: int, size: int) -> None:
        """``fd`` is a copy of ``entry``'s file (its bytes are shipped from the original): not
        shipped, and remembered in the checkpoint (saved at the end of this scan), so that it
        is still known for a copy once the original is truncated, after a restart too."""
        self.copies[key] = entry.source
        if entry.note_copy(key[0], key[1], os.pread(fd, min(size, CHECK_BYTES), 0)):
            self._dirty = True
            self._unsaved.add(entry.source)

    def _copy_in_progress(self, entry: Entry, fd: int) -> bool:
        """Is ``fd`` a copy of ``entry``'s tailed file still being written (``cp``, logrotate's
        copytruncate): shorter than the entry's check, and every byte of it equal to the
        tailed file's bytes at the same place? Such a file is not a new one: taken for one,
        the copy would be shipped again in full once complete. (The original need not be open:
        one closed to make room, or read to its end, is opened for the comparison.)"""
        size = os.fstat(fd).st_size
        if size >= entry.check_len:
            return False  # long enough to be compared with the check: it did not match
        data = os.pread(fd, size, 0)
        if len(data) != size:
            return False
        tail = self.tails.get((entry.dev, entry.ino))
        if tail is not None and tail.entry is entry and tail.fd >= 0:
            return data == os.pread(tail.fd, size, 0) and _head_still(tail)
        try:
            original = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            st = os.fstat(original)
            return (
                (st.st_dev, st.st_ino) == (entry.dev, entry.ino)
                and data == os.pread(original, size, 0)
                and head_matches(original, entry.head_len, entry.head_hash)
            )
        finally:
            os.close(original)

    def _original_alive(self, entry: Entry) -> bool:
        tail = self.tails.get((entry.dev, entry.ino))
        if tail is not None:
            return tail.fd >= 0 and head_matches(tail.fd, entry.head_len, entry.head_hash)
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            # Out of descriptors, nothing is known: taken as alive, the copy is only set aside
            # until the next scan; taken as dead, the entry would move to the copy for good.
            return out_of_descriptors(exc)
        try:
            st = os.fstat(fd)
            return (st.st_dev, st.st_ino) == (entry.dev, entry.ino) and head_matches(
                fd, entry.head_len, entry.head_hash
            )
        finally:
            os.close(fd)

    def _account_vanished(self, seen: dict[Key, int], wall: float) -> None:
        """Entries whose bytes cannot be read any more are counted as lost: their file is gone,
        or its inode now holds other bytes. Old entries of gone files expire."""
        open_sources = {t.entry.source for t in self.tails.values()}
        for source, entry in list(self.entries.items()):
            key = (entry.dev, entry.ino)
            if source in open_sources:
                continue
            if key in seen:
                # A file that still holds this entry's bytes is open now (or was shipped to its
                # end: nothing to lose). Otherwise it was truncated or rewritten while it was not
                # open: another source is read from its inode, or it is shorter than when last
                # seen (its first line cut, so nothing can be resumed from it).
                if key in self.tails or seen[key] < entry.size:
                    self._lose(entry, entry.size - entry.offset, entry.path, "was truncated or replaced")
                    entry.size = entry.offset
                continue
            if entry.size > entry.offset:
                self._lose(entry, entry.size - entry.offset, entry.path, "is gone")
                entry.size = entry.offset
            if wall - entry.seen > self.cfg.checkpoint_ttl:
                del self.entries[source]
                self._index_stale = True
                self._dirty = True

    def _lose(self, entry: Entry, nbytes: int, path: str, why: str) -> None:
        if nbytes > 0:
            self._report_loss(path, nbytes, entry.offset, why)
            self._dirty = True

    def _report_loss(self, path: str, nbytes: int, offset: int, why: str) -> None:
        """Bytes that will never be shipped: one log line naming the file, the metrics, the
        totals of this run (``--once``'s summary and exit code) and ``lost.json`` (``--status``)."""
        if nbytes <= 0:
            return
        self.metrics.lost.inc(nbytes)
        self.metrics.lost_files.inc()
        self.totals.lost_bytes += nbytes
        self.totals.lost_files += 1
        log.error("%s %s: %d bytes (from offset %d) were never read and are lost", path, why, nbytes, offset)
        self.losses.record(Loss(path, nbytes, offset, why, time.time()))

    # ------------------------------------------------------------------------------ shipping

    def pump(self, key: Key, tail: Tail, now: float, once: bool) -> bool:
        """Send at most one batch of ``tail``; True when something was done."""
        size_before, mtime_before = tail.size, tail.entry.mtime_ns
        if not tail.refresh(now) or (
            (tail.size != size_before or tail.entry.mtime_ns != mtime_before) and not _head_still(tail)
        ):
            # (An mtime change alone counts: truncated and written again to the same size.)
            self._truncated(key, tail, size_before)
            return True
        inactive = now - tail.last_growth >= self.cfg.close_inactive
        closing = once or tail.gone or tail.rotated or inactive
        batch = tail.next_batch(self.cfg, now, closing=closing)
        if batch is None:
            done = tail.entry.offset >= tail.size and tail.partial_since is None
            if done and (once or tail.gone or inactive):
                tail.close()
                del self.tails[key]
                self.metrics.files.set(len(self.tails))
            return False
        # The batch's bytes and what came before them are checked *after* they were read: a
        # file truncated and written again between the check above and the read gave the new
        # file's bytes at the old file's offsets, which must not go out under its source.
        batch.prefix = self._shipped_prefix(tail, batch)
        if not _head_still(tail):
            self._truncated(key, tail, tail.size)
            return True
        self.ship(tail, batch)
        # httpx's response and request form a reference cycle that keeps the batch body alive
        # until the cyclic GC gets to it: left alone, a dozen bodies pile up (~10 MB). The young
        # generations are small, so collecting them after each batch is cheap.
        gc.collect(1)
        return True

    def ship(self, tail: Tail, batch: Batch) -> None:
        entry = tail.entry
        if not batch.reproducible and entry.inflight != batch.end:
            # Remembered, not written now: a checkpoint written while this batch is out (a
            # shutdown during an outage) makes the next start re-send exactly this range. After
            # a SIGKILL the range may be cut longer; the collector's 409 says where to resume.
            entry.inflight = batch.end
            self._dirty = True
        if entry.source in self._unsaved:
            self.save()  # one write for every entry made since the last (a scan finds many)
        if batch.body.strip():
            marker = batch.kind == "oversized"
            self._sending = tail
            try:
                result = self.forwarder.send(
                    batch.body,
                    source=entry.source,
                    start=batch.start,
                    end=batch.end,
                    topic=None if marker else batch.topic,
                    routing_key=None if marker else batch.routing_key,
                    line_ends=batch.line_ends,
                )
            finally:
                self._sending = None
        else:
            result = None  # only blank lines: nothing to send
        if batch.kind == "oversized":
            self.metrics.oversized.inc()
            self.totals.oversized += 1
            log.warning(
                "%s: line at offset %d is over max_line_bytes (%d bytes): sent a marker to the dead letter",
                tail.path,
                batch.start,
                batch.end - batch.start,
            )
        if result is not None and result.rejected and not self._dead_letter(tail, batch, result):
            return  # not kept, so not acknowledged: the batch is cut and sent again next time
        if result is not None and result.kind == "high_water":
            high = result.high_water or 0
            log.info("collector holds %s up to %d: resuming there", entry.source, high)
            if high > batch.start:
                self._advance(
                    tail, min(high, tail.size), batch.body[: high - batch.start].count(b"\n"), batch.prefix
                )
            else:
                log.error(
                    "collector's high-water mark %d for %s is before this batch (%d-%d): re-sending from it",
                    high,
                    entry.source,
                    batch.start,
                    batch.end,
                )
                entry.offset, entry.inflight = high, None
            return
        if result is not None and result.kind == "duplicate":
            self.totals.duplicates += 1
        self.metrics.batches.labels(result.kind if result else "empty").inc()
        self._advance(tail, batch.end, batch.lines, batch.prefix)

    def _dead_letter(self, tail: Tail, batch: Batch, result: Result) -> bool:
        """Keeps what the collector refused (all of the batch, or lines of it after a 413
        split); False when it could not be kept for want of descriptors."""
        for piece in result.rejected:
            whole = piece.start == batch.start and piece.end == batch.end
            lines = batch.lines if whole else piece.lines
            try:
                path = self.dead_letter.write(
                    piece.body,
                    reason=piece.reason,
                    lines=lines,
                    source=tail.entry.source,
                    file=tail.path,
                    range=f"{piece.start}-{piece.end}",
                    status=piece.status,
                    response=piece.response,
                )
            except OSError as exc:
                if not out_of_descriptors(exc):
                    raise
                self._fd_pressure(self.clock(), "writing the dead letter", busy=True)
                return False
            self.metrics.dead_lines.inc(lines)
            self.totals.dead_lettered_lines += lines
            self.totals.dead_letter_files.append(str(path))
            log.error(
                "collector refused %d lines of %s (range %s-%s) with HTTP %d %s: kept in %s",
                lines,
                tail.path,
                piece.start,
                piece.end,
                piece.status,
                piece.response[:200],
                path,
            )
        return True

    def _shipped_prefix(self, tail: Tail, batch: Batch) -> bytes | None:
        """The file's first bytes up to the end of ``batch`` (at most `CHECK_BYTES`), as they
        are shipped: what the entry's check is extended to once the batch is acknowledged.
        The batch's own bytes, after the bytes before it as the file holds them now, read after
        the batch: used only if they still begin with the entry's head and check (the same
        file). None: nothing to extend, or the file is no longer the entry's."""
        entry = tail.entry
        want = min(batch.end, CHECK_BYTES)
        if entry.check_len >= want:
            return None
        start = min(batch.start, CHECK_BYTES)
        prefix = os.pread(tail.fd, start, 0) + batch.check[: want - start]
        if len(prefix) != want or not _begins_as(prefix, entry):
            return None
        return prefix

    def _advance(self, tail: Tail, end: int, lines: int, prefix: bytes | None = None) -> None:
        entry = tail.entry
        nbytes = end - entry.offset
        entry.offset = end
        if prefix is not None and entry.check_len < CHECK_BYTES:
            # The check covers bytes that were shipped, held since they were read: never the
            # file as it is now, which copytruncate may have emptied (or a writer refilled) while
            # the batch was out; a check taken from those would not recognise the copy.
            length = min(end, len(prefix))
            if length > entry.check_len and _begins_as(prefix, entry):
                check_hash, line_ends = check_and_line_end_hashes(prefix[:length], entry.check_len)
                entry.remember_line_ends(line_ends)
                entry.check_len, entry.check_hash = length, check_hash
        if entry.inflight is not None and entry.inflight <= end:
            entry.inflight = None
        self._dirty = True
        self.totals.lines += lines
        self.totals.bytes += nbytes
        self.totals.batches += 1
        self.metrics.lines.inc(lines)
        self.metrics.bytes.inc(nbytes)
        if self.on_ack is not None:
            self.on_ack(lines, nbytes)

    def _truncated(self, key: Key, tail: Tail, size_before: int) -> None:
        """The file shrank or was rewritten in place (copytruncate): finish the old bytes from
        the copy when one matches the globs, count them as lost otherwise, start over at 0."""
        entry = tail.entry
        tail.close()
        del self.tails[key]
        if (entry.dev, entry.ino) != key:
            # A scan found the copy after the truncation and moved the entry there (`_resolve`):
            # it is read from the copy already.
            log.info("%s was truncated; %s continues it", tail.path, entry.path)
            self.rescan.set()
            self.wake.set()
            return
        unread = max(0, size_before - entry.offset)
        log.info("%s was truncated at offset %d (%d bytes unread)", tail.path, entry.offset, unread)
        copy = self._find_copy(entry, key) if unread or entry.inflight else None
        if copy is not None:
            path, fd, index = copy
            st = os.fstat(fd)
            entry.dev, entry.ino, entry.path = st.st_dev, st.st_ino, path
            self._moved(entry)
            copy_tail = Tail(fd, path, entry, self.cfg.inputs[index], self.clock())
            copy_tail.first_path = ""  # a rotated file: finished, then closed
            self.tails[(st.st_dev, st.st_ino)] = copy_tail
            self.copies.pop((st.st_dev, st.st_ino), None)
            log.info("finishing %s from its copy %s", tail.path, path)
        else:
            self._lose(entry, unread, tail.path, "was truncated and no copy matches the globs")
            entry.size = entry.offset
            # The entry keeps its old inode: a new head there is a new file (see _resolve).
        self.rescan.set()
        self.wake.set()
        self._next_scan = 0.0

    def _moved(self, entry: Entry) -> None:
        """``entry`` continues in another inode (its copy): saved at the end of this scan or
        before its next batch, like a new file (rule 7). A SIGKILL before that left the
        checkpoint on the truncated original, whose unread rest then vanished without a loss
        report when the copy was deleted."""
        self._index_stale = True
        self._dirty = True
        self._unsaved.add(entry.source)

    def _find_copy(self, entry: Entry, old: Key) -> tuple[str, int, int] | None:
        for path, index in match(list(self.cfg.inputs)).items():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key != old and st.st_size >= entry.offset and entry.matches(fd) and self._take_over(key, fd):
                return path, fd, index
            os.close(fd)
        return None

    def _take_over(self, key: Key, fd: int) -> bool:
        """May the file ``key`` become a copy that continues another entry? Not when an entry
        of its own has shipped from it already (its bytes are on their way under that source);
        an entry of its own that has shipped nothing yet (a scan took the copy for a new file:
        its first line differed, the original's was shipped before its newline) is dropped."""
        self._index()
        own = list(self._by_key.get(key, ()))
        # Entries of a deleted file whose inode the copy reused hold other bytes: not its own.
        if any((e.offset > 0 or e.inflight is not None) and e.matches(fd) for e in own):
            return False
        tail = self.tails.get(key)
        if tail is not None:
            if tail is self._sending:
                return False
            tail.close()
            del self.tails[key]
        self.waiting.pop(key, None)
        for e in own:
            if not e.matches(fd):
                # Not this file's: a deleted file's, whose inode the copy reused (it was waiting
                # for a descriptor). Its unread bytes went with it.
                self._lose(e, e.size - e.offset, e.path, "is gone")
            del self.entries[e.source]
            self._unsaved.discard(e.source)
        if own:
            self._index_stale = True
            self._dirty = True
        return True

    # ---------------------------------------------------------------------------- checkpoint

    def _maybe_save(self, now: float) -> None:
        if self._dirty and now - self._last_save >= self.cfg.checkpoint_interval:
            self.save()
            self.metrics.lag.set(self.backlog())

    def save(self) -> None:
        """Write the checkpoint file. A failure is logged and the write tried again an interval
        later: until then a restart re-sends from the older offsets, which the collector
        answers as duplicates (see `checkpoint`)."""
        now = self._last_save = self.clock()
        try:
            self.store.save(self.entries)
        except OSError as exc:
            if out_of_descriptors(exc):
                self._fd_pressure(now, "writing the checkpoint")
            elif now - self._save_warned >= FD_BACKOFF:
                self._save_warned = now
                log.error(
                    "cannot write the checkpoint %s: %s (trying again every %.0f s; a restart until "
                    "then re-sends what was shipped since the last one, which the collector drops)",
                    self.store.path,
                    exc,
                    self.cfg.checkpoint_interval,
                )
            return
        self._dirty = False
        self._unsaved.clear()


def open_files_cap(configured: int | None) -> int:
    """How many tailed files may be open at once: ``max_open_files``, or by default half the
    soft RLIMIT_NOFILE (at most `AUTO_MAX_OPEN`); never closer to the limit than `FD_RESERVE`."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    if configured is None:
        return max(1, min(AUTO_MAX_OPEN, soft // 2))
    room = max(1, soft - FD_RESERVE)
    if configured > room:
        log.warning(
            "max_open_files %d does not fit under the process's descriptor limit (%d): holding at "
            "most %d files open",
            configured,
            soft,
            room,
        )
        return room
    return configured


def out_of_descriptors(exc: BaseException | None) -> bool:
    """Is ``exc`` (or what caused it: httpx wraps the socket's OSError) EMFILE or ENFILE?"""
    for _ in range(8):
        if exc is None:
            return False
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _head_still(tail: Tail) -> bool:
    return head_matches(tail.fd, tail.entry.head_len, tail.entry.head_hash)


def _begins_as(prefix: bytes, entry: Entry) -> bool:
    """Do these first bytes of a file hold ``entry``'s first line and checked prefix (as far
    as they go)?"""
    if len(prefix) < entry.check_len:
        return False
    if len(prefix) >= entry.head_len and hash_bytes(prefix[: entry.head_len]) != entry.head_hash:
        return False
    return entry.check_len == 0 or hash_bytes(prefix[: entry.check_len]) == entry.check_hash


def _last_line_end(fd: int, size: int) -> int:
    """Where ``read_from: end`` starts: after the last complete line."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def _lock_state_dir(state_dir: str) -> int:
    """Take ``state_dir/lock`` (`logbridge.fileio.LockFile`) or raise `StateDirBusy`; the
    locked descriptor, which `Shipper.close` closes."""
    lock = LockFile(os.path.join(state_dir, "lock"), mode=0o600)
    lock.acquire(
        lambda holder: StateDirBusy(
            f"another logbridge shipper is running with state_dir {state_dir}; "
            "give each shipper its own state_dir"
        )
    )
    return lock.fd
