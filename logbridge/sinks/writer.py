"""The partitioned writer: local staging files, rolled by size and age, published through fsspec.

A partition's lines are appended to a staging file under the collector's ``state_dir``
(``staging/<destination>/<partition>/<final name>``), never inside the store, so the store only
ever holds complete files. When a staging file is old or big enough it is *published*: renamed
into place for ``file://`` (copied, then renamed, across file systems) or uploaded for object
stores, then removed. Publishing the same staging file twice writes the same final name, so a
publish interrupted by a crash is simply done again at the next start.

Staging files are written unbuffered, one ``write`` per batch and partition: what the writer
believes a file holds is what the OS holds, so a failed batch is cut back off exactly (a
buffer flushed after the cut would tear a line). Durability is not decided here: the collector
journals each staging file's size (and fsyncs, under ``durability: fsync``) before it
acknowledges; a staging file is published only up to that journaled size.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import secrets
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from ..errors import DestinationError, StorageUnavailable
from ..fileio import fsync_dir, write_all, write_beside
from .encoders import Encoder
from .fs import describe, is_local, is_object_store, map_storage_errors, open_filesystem

log = structlog.get_logger("logbridge.sinks")

_seq = itertools.count(1)  # next() is atomic: names are made on the writer thread and the ingest pool
PUBLISH_CONCURRENCY = 8


def unique_file_name(suffix: str = ".ndjson") -> str:
    """``events-20260122T101500Z-host-1234-9f8e7d6c-000001.ndjson``: unique across writers,
    processes and restarts (time + host + pid + random + sequence)."""
    seq = next(_seq)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    host = socket.gethostname().split(".")[0][:32] or "host"
    return f"events-{stamp}-{host}-{os.getpid()}-{secrets.token_hex(4)}-{seq:06d}{suffix}"


@dataclass(eq=False)
class StagingFile:
    relpath: str  # "<partition>/<name>", also the final path under the destination root
    path: Path
    handle: BinaryIO | None
    opened_at: float
    size: int = 0  # bytes written
    synced: int = 0  # bytes flushed and reported by the last sync
    journaled: int = 0  # bytes the collector has made durable in its journal
    digest: Any = None  # its running digest (`logbridge.store.digest.FileDigest`), for its manifest
    manifest: Any = None  # its sealed manifest (`logbridge.store.manifest.Manifest`), once rolled


@dataclass
class PublishStats:
    files: int = 0
    bytes: int = 0
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float = 0.0
    pending: list[str] = field(default_factory=list)


class PartitionedWriter:
    """Staging files for one destination (or the dead letter), and their publication."""

    def __init__(
        self,
        name: str,
        url: str,
        staging_dir: Path,
        *,
        storage_options: dict[str, Any] | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 300.0,
        encoder: Encoder | None = None,
        key: str | None = None,
    ):
        self.name = name
        self.url = url.rstrip("/")
        self.staging_dir = staging_dir
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.encoder = encoder  # None: published as staged (NDJSON), by rename or plain upload
        self.fs, self.root = open_filesystem(self.url, dict(storage_options or {}), key or name)
        self.local = is_local(self.fs)
        self.object_store = is_object_store(self.fs)
        self.open_files: dict[str, StagingFile] = {}  # partition → current staging file
        self.sealed: list[StagingFile] = []  # full: no more appends, published once acknowledged
        self.to_publish: list[StagingFile] = []  # closed, waiting for a (retried) publish
        self._publishing: list[StagingFile] = []  # taken off to_publish by a publication round
        # The event loop queues files while a worker thread publishes: a short lock guards the
        # queue, a second one keeps two publication rounds (maintenance, shutdown) apart.
        self._queue_lock = threading.Lock()
        self._queue_changed = threading.Condition(self._queue_lock)  # queued, or a publication ended
        self._publish_lock = threading.Lock()
        self.stats = PublishStats()
        # Manifests (`logbridge.store.sealer.Sealer`): sealed as files roll, published after them.
        self.sealer: Any = None
        staging_dir.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- writing (event loop)

    def append(self, partition: str, data: bytes) -> tuple[StagingFile, int]:
        """Append whole lines to the partition's staging file; returns it and its size before.

        Raises `StorageUnavailable`."""
        staging = self.open_files.get(partition)
        if staging is not None and staging.size > 0 and staging.size + len(data) > self.max_bytes:
            # Roll before passing max_bytes (one batch is never split, so only a batch bigger
            # than max_bytes makes a bigger file). Sealed, it is published once acknowledged.
            del self.open_files[partition]
            self.sealed.append(staging)
            staging = None
        if staging is None:
            staging = self._open(partition)
        size_before = staging.size
        try:
            assert staging.handle is not None
            write_all(staging.handle.fileno(), data)
        except OSError as exc:
            self.rollback(staging, size_before)
            raise StorageUnavailable(f"{self.name}: cannot write staging file: {exc.strerror}") from exc
        staging.size += len(data)
        return staging, size_before

    def _open(self, partition: str) -> StagingFile:
        relpath = f"{partition}/{unique_file_name()}"
        path = self.staging_dir / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "ab", buffering=0)  # noqa: SIM115 - lives across requests
        except OSError as exc:
            raise StorageUnavailable(
                f"{self.name}: cannot create staging file {path}: {exc.strerror}"
            ) from exc
        staging = StagingFile(relpath, path, handle, time.monotonic())
        self.open_files[partition] = staging
        return staging

    def prestage(self, partition: str, data: bytes) -> StagingFile:
        """A new staging file holding only ``data``, not yet part of this writer (any thread: it
        touches no shared state). `adopt` makes it one, `discard` removes it. A big batch brings
        its own files this way, written off the writer thread. Raises `StorageUnavailable`."""
        relpath = f"{partition}/{unique_file_name()}"
        path = self.staging_dir / relpath
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "ab", buffering=0)  # noqa: SIM115 - lives until it is rolled
        except OSError as exc:
            raise StorageUnavailable(
                f"{self.name}: cannot create staging file {path}: {exc.strerror}"
            ) from exc
        staging = StagingFile(relpath, path, handle, time.monotonic())
        try:
            write_all(handle.fileno(), data)
        except OSError as exc:
            self.discard(staging)
            raise StorageUnavailable(f"{self.name}: cannot write staging file: {exc.strerror}") from exc
        staging.size = len(data)
        return staging

    def adopt(self, staging: StagingFile) -> None:
        """Take a prestaged file in, sealed: it takes no appends and is published once acknowledged."""
        self.sealed.append(staging)

    def discard(self, staging: StagingFile) -> None:
        self._close(staging)
        with contextlib.suppress(OSError):
            staging.path.unlink()

    def rollback(self, staging: StagingFile, size: int) -> None:
        """Undo a failed batch: cut the file back to ``size`` (its bytes past it were never
        acknowledged). Should the cut fail, the file takes no more appends and is published only
        up to ``size``."""
        staging.size = size
        try:
            assert staging.handle is not None
            os.ftruncate(staging.handle.fileno(), size)
        except (OSError, ValueError, AssertionError):
            for partition, open_staging in list(self.open_files.items()):
                if open_staging is staging:
                    del self.open_files[partition]
                    self.sealed.append(staging)

    def live_files(self) -> list[StagingFile]:
        """Every staging file that still has a handle: open ones and sealed ones."""
        return [*self.open_files.values(), *self.sealed]

    def staged_files(self) -> list[StagingFile]:
        """Every staging file not yet published: live, queued, or being published right now.
        (Their acknowledged sizes must survive a journal compaction.)"""
        with self._queue_lock:
            return [*self.live_files(), *self.to_publish, *self._publishing]

    # ---------------------------------------------------------------- rolling and publishing

    def due(self, now: float, force: bool = False) -> list[StagingFile]:
        """Close and queue the staging files due for publication (only fully journaled ones)."""
        rolled = []
        if force:
            # Shutting down: only what was acknowledged is published.
            for staging in self.live_files():
                staging.size = min(staging.size, staging.journaled)
        for staging in list(self.sealed):
            if force or staging.journaled >= staging.size:
                self.sealed.remove(staging)
                self._close(staging)
                rolled.append(staging)
        for partition, staging in list(self.open_files.items()):
            if staging.journaled < staging.size:
                continue  # part of it is not acknowledged yet: roll at the next tick
            if force or staging.size >= self.max_bytes or now - staging.opened_at >= self.max_age:
                if staging.size == 0 and not force:
                    continue
                del self.open_files[partition]
                self._close(staging)
                rolled.append(staging)
        if self.sealer is not None:
            try:
                self.sealer.seal([s for s in rolled if s.size > 0])
            except OSError as exc:  # sealed at publication instead (and retried until it is)
                log.error(
                    "cannot seal rolled files: their manifests are made when they are published",
                    destination=self.name,
                    error=describe(exc),
                )
        with self._queue_changed:  # a round under way takes them at once
            self.to_publish.extend(s for s in rolled if s.size > 0)
            self._queue_changed.notify_all()
        for staging in rolled:
            if staging.size == 0:
                with contextlib.suppress(OSError):
                    staging.path.unlink()
        return rolled

    @staticmethod
    def _close(staging: StagingFile) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            staging.handle.close()  # type: ignore[union-attr]
        staging.handle = None

    def publish_pending(self) -> int:
        """Publish queued files until the queue is empty (a publisher thread); returns how many
        went. A file that fails stays queued, behind the ones not tried yet.

        Object stores get up to `PUBLISH_CONCURRENCY` uploads at once, a new one starting as soon
        as a file is queued (by `due`, while the round runs) and a place is free, so a slow upload
        holds up no other: a backfill touches hundreds of hour partitions, and one
        upload at a time would spend minutes on latency. Local files are renamed one at a time
        (a rename is no round trip). The first failure ends the round: uploads under way finish,
        no new one starts. Against a store that is down every upload would spend the SDK's whole
        retry schedule failing the same way (about 30 s with gcsfs, 85 s with the Azure SDK),
        and a backlog of hundreds of files would keep the destination from being reported
        blocked for hours. A failed file goes behind the others, so that one file the store
        refuses (a prefix the credentials may not write) cannot starve the rest."""
        with self._publish_lock:
            failures: list[tuple[StagingFile, str]] = []
            published = 0
            running = 0

            def finished(staging: StagingFile, error: str | None) -> None:
                nonlocal published, running
                with self._queue_changed:
                    running -= 1
                    self._publishing.remove(staging)
                    if error is None:
                        published += 1
                        if not failures:  # the store takes files again (a round can run long)
                            self.stats.last_error = None
                    else:
                        failures.append((staging, error))
                        self.stats.failures += 1
                        self.stats.last_error = error
                        self.stats.last_failure_at = time.monotonic()
                    self._queue_changed.notify_all()
                if error is not None:
                    log.warning(
                        "publish failed, will retry", destination=self.name, file=staging.relpath, error=error
                    )

            def publish_one(staging: StagingFile) -> None:
                error: str | None = f"{self.name}: cannot publish {staging.relpath}: a bug, see the log"
                try:
                    error = self._try_publish(staging)
                except Exception:  # a bug: logged, and the file stays queued
                    log.exception("publication failed unexpectedly", destination=self.name)
                finally:
                    finished(staging, error)

            limit = 1 if self.local else PUBLISH_CONCURRENCY
            # The lock is released first on the way out, then the (idle) workers are joined.
            with (
                ThreadPoolExecutor(limit, thread_name_prefix=f"logbridge-publish-{self.name}") as pool,
                self._queue_changed,
            ):
                while True:
                    while not failures and self.to_publish and running < limit:
                        staging = self.to_publish.pop(0)
                        self._publishing.append(staging)  # still staged, for journal snapshots
                        running += 1
                        pool.submit(publish_one, staging)
                    if running == 0 and (failures or not self.to_publish):
                        break
                    # Woken by a finished publication, or by `due` queueing more files.
                    self._queue_changed.wait()
                self.to_publish.extend(staging for staging, _ in failures)
            return published

    def _try_publish(self, staging: StagingFile) -> str | None:
        try:
            _cut_to(staging.path, staging.size)
            if self.sealer is not None:
                self.sealer.ensure_sealed(staging)
            with map_storage_errors(self.name, f"cannot publish {staging.relpath}"):
                self.publish(staging.path, staging.relpath)
            if self.sealer is not None:
                self.sealer.published(staging, self)
        except DestinationError as exc:  # kept queued, retried at the next round
            return str(exc)
        except OSError as exc:  # the staging side (state_dir)
            return f"{self.name}: cannot read staging file {staging.relpath}: {describe(exc)}"
        return None

    @property
    def unpublished(self) -> int:
        """Closed files not published yet: queued, or in the round under way."""
        with self._queue_lock:
            return len(self.to_publish) + len(self._publishing)

    @property
    def healthy(self) -> bool:
        return self.stats.last_error is None

    @property
    def blocked(self) -> bool:
        """Publishing fails with files waiting: refuse new lines for this destination (503)
        rather than let the backlog grow without bound. Files being retried count as waiting:
        a retry may spend a minute in the SDK, and the destination stays refused until one
        publication succeeds."""
        return not self.healthy and self.unpublished > 0

    def publish(self, source: Path, relpath: str) -> str:
        """Publish one complete staging file to ``{root}/{relpath}``; idempotent.

        Encoding writes to the destination's side, never to the staging disk: a full staging
        disk must still be able to empty itself by publishing."""
        encoder = self.encoder
        if encoder is not None:
            relpath = encoder.published_name(relpath)
        target = f"{self.root}/{relpath}"
        if self.local:
            size = _publish_local(source, Path(target), encoder)
        else:
            if not self.object_store:  # an fsspec file system with real folders (sftp, smb, …)
                parent = target.rsplit("/", 1)[0]
                with contextlib.suppress(OSError, FileExistsError, NotImplementedError):
                    self.fs.makedirs(parent, exist_ok=True)
            # Object stores show an object only once its upload is complete (a single request,
            # or blocks/parts committed at the end), and the target's name is the staging file's:
            # an upload cut by a crash leaves nothing, and its redo at the next start writes
            # the same object again, never a second one.
            if encoder is not None:
                # In memory (a staging file is at most max_bytes, and audit JSON compresses ~10x),
                # uploaded whole: an object store never shows a partial object.
                data = _encode_bytes(source, encoder)
                self.fs.pipe_file(target, data)
                size = len(data)
            else:
                size = source.stat().st_size
                self.fs.put_file(str(source), target)
            source.unlink(missing_ok=True)
        with self._queue_lock:
            self.stats.files += 1
            self.stats.bytes += size
        log.info("published", destination=self.name, file=relpath, bytes=size)
        return target

    def leftover_staging(self) -> list[tuple[Path, str]]:
        """Staging files left by an earlier process: (path, relpath)."""
        found = []
        for path in sorted(self.staging_dir.rglob("*")):
            if path.is_file():
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
                    continue
                found.append((path, path.relative_to(self.staging_dir).as_posix()))
        return found

    def close(self) -> None:
        for staging in self.live_files():
            self._close(staging)
        self.open_files.clear()
        self.sealed.clear()


def _publish_local(source: Path, target: Path, encoder: Encoder | None) -> int:
    """Rename the staging file into place (same file system, no compression), or write it beside
    the target under a hidden name and rename that, so a reader never sees half a file. The
    hidden name is the target's own (target names are unique): a retry reuses it, and a failed
    copy removes it. Returns the published size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    renamed = False
    if encoder is None:
        try:
            os.replace(source, target)
            renamed = True
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    if not renamed:

        def fill(dst: BinaryIO) -> None:
            with open(source, "rb") as src:
                if encoder is not None:
                    encoder.encode(src, dst)
                else:
                    shutil.copyfileobj(src, dst, 1024 * 1024)

        write_beside(target, fill)
        source.unlink()
    else:
        fsync_dir(target.parent)
    return target.stat().st_size


def _encode_bytes(source: Path, encoder: Encoder) -> bytes:
    out = io.BytesIO()
    with open(source, "rb") as src:
        encoder.encode(src, out)
    return out.getvalue()


def _cut_to(path: Path, size: int) -> None:
    """Cut a staging file to the size the collector acknowledged (a no-op unless a failed batch
    could not be cut off when it failed)."""
    if path.stat().st_size > size:
        os.truncate(path, size)
