"""A filesystem sink's manifests: sealed at roll time, published right after their file.

The partitioned writer calls three hooks (`logbridge.sinks.writer.PartitionedWriter.sealer`)::

    seal(files)            writer thread, when files roll: each gets its manifest (sequence number
                           and previous hash of its stream), kept pending in the state dir and
                           journaled in the chain log before the file is queued
    ensure_sealed(file)    publisher thread, before the upload or rename: seals a file whose roll
                           could not (the state dir was full then)
    published(file)        after it: the manifest goes (the same bytes again after a restart), and
                           the pending copy is dropped

The file goes first, then its manifest. A manifest that cannot be published then (the store
failed in between) stays pending and is retried at the start of each publication round, and
after a restart (a pending manifest whose staging file is gone); the file itself is not published
again. Meanwhile ``verify`` may briefly see a file without its manifest: on a live store, run it
with ``--until`` a few minutes back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from .. import envelope
from ..errors import DestinationError
from ..fileio import write_beside
from ..sinks.fs import map_storage_errors
from . import manifest as mf
from .chain import ChainState, Head
from .digest import FileDigest, digest_file, line_time
from .layout import PartitionLayout, iso, manifest_path

log = structlog.get_logger("logbridge.store")


class Sealer:
    def __init__(
        self,
        destination: str,
        chain_dir: Path,
        layout: PartitionLayout,
        *,
        key: bytes | None = None,
        encoding: str = "none",
        line_digests: bool = True,
        published_name: Callable[[str], str] = lambda relpath: relpath,
    ):
        self.destination = destination
        self.chain = ChainState(chain_dir)
        self.layout = layout
        self.key = key
        self.encoding = encoding
        self.line_digests = line_digests
        self.published_name = published_name
        # Manifests whose file is published but they are not (the store failed between the two,
        # or the process died): relpath → the manifest (None: read it from the pending dir).
        self.orphans: dict[str, mf.Manifest | None] = {}
        self._orphans_lock = threading.Lock()

    def stream_of(self, partition: str) -> str:
        return f"{self.chain.writer}/{self.destination}/{self.layout.stream_key(partition)}"

    # ------------------------------------------------------------------ writer side

    def track(self, staging: Any, offset: int, data: bytes) -> None:
        """``data`` was appended to ``staging`` at ``offset`` (any thread owning the file)."""
        if staging.digest is None:
            staging.digest = FileDigest(self.line_digests)
        staging.digest.update(offset, data)

    def seal(self, files: list[Any]) -> None:
        """Give each staging file its manifest, in order (writer thread). Raises `OSError`
        with none of them sealed."""
        with self.chain.lock:
            heads = dict(self.chain.heads)
            sealed: list[tuple[str, mf.Manifest]] = []
            fresh: list[Any] = []
            try:
                for staging in files:
                    if staging.manifest is not None or staging.size == 0:
                        continue
                    kept = self.chain.pending(staging.relpath)
                    if kept is not None and kept.get("size") == staging.size:
                        staging.manifest = kept  # sealed before a restart: the same manifest again
                        continue
                    m = self._build(staging)
                    # The next file of the same stream must see this one as its head.
                    self.chain.heads[m.stream] = Head(m.seq, m.hash, m.get("file"))
                    sealed.append((staging.relpath, m))
                    fresh.append(staging)
                self.chain.commit(sealed)
            except BaseException:
                self.chain.heads = heads
                raise
            for staging, (_, m) in zip(fresh, sealed, strict=True):
                staging.manifest = m

    def _build(self, staging: Any) -> mf.Manifest:
        digest = staging.digest.result(staging.size) if staging.digest is not None else None
        if digest is None:
            digest = digest_file(staging.path, staging.size, per_line=self.line_digests)
        partition = staging.relpath.rsplit("/", 1)[0] if "/" in staging.relpath else ""
        stream = self.stream_of(partition)
        seq, prev, prev_file = self.chain.next_link(stream)
        window = self.layout.window(partition)
        return mf.build_file_manifest(
            file=self.published_name(staging.relpath),
            size=digest.size,
            sha256=digest.sha.hexdigest(),
            lines=digest.lines,
            digests=bytes(digest.digests) if self.line_digests else None,
            encoding=self.encoding,
            first_event_time=line_time(digest.first_line),
            last_event_time=line_time(digest.last_line),
            partition=partition,
            partition_start=iso(window.start) if window else None,
            partition_end=iso(window.end) if window else None,
            stream=stream,
            seq=seq,
            prev=prev,
            prev_file=prev_file,
            sealed_at=envelope.format_timestamp(time.time()),
            key=self.key,
        )

    def recover(self, staged: set[str]) -> None:
        """At start: pending manifests whose staging file is gone belong to files published
        before the process died: they are published at the next round."""
        with self._orphans_lock:
            for relpath in self.chain.leftover_pending():
                if relpath not in staged:
                    self.orphans.setdefault(relpath, None)

    # ---------------------------------------------------------------- publisher side

    def ensure_sealed(self, staging: Any) -> None:
        """Raises `OSError` when the file cannot be read to seal it."""
        if staging.manifest is None:
            self.seal([staging])

    def published(self, staging: Any, writer: Any) -> None:
        """The file is published: publish its manifest, or keep it for the next round."""
        m = staging.manifest
        try:
            with map_storage_errors(self.destination, f"cannot publish the manifest of {staging.relpath}"):
                self.put(writer, m)
        except DestinationError as exc:
            log.warning("manifest not published, will retry", destination=self.destination, error=str(exc))
            with self._orphans_lock:
                self.orphans[staging.relpath] = m
            return
        with contextlib.suppress(OSError):  # a pending manifest left is published again, harmlessly
            self.chain.forget(staging.relpath)

    def put(self, writer: Any, m: mf.Manifest, relpath: str | None = None) -> None:
        """Write one manifest (or retention record) into the store, whole or not at all."""
        target = f"{writer.root}/{relpath or manifest_path(m.get('file'))}"
        data = mf.serialize(m)
        if writer.local:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_beside(path, lambda fh: fh.write(data))
            return
        if not writer.object_store:
            with contextlib.suppress(OSError, FileExistsError, NotImplementedError):
                writer.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        writer.fs.pipe_file(target, data)

    def publish_orphans(self, writer: Any) -> None:
        """Manifests whose file went without them (publisher thread). Raises the store's errors."""
        with self._orphans_lock:
            waiting = list(self.orphans.items())
        for relpath, m in waiting:
            m = m or self.chain.pending(relpath)
            if m is not None:
                self.put(writer, m)
            with self._orphans_lock:
                self.orphans.pop(relpath, None)
            with contextlib.suppress(OSError):
                self.chain.forget(relpath)

    def close(self) -> None:
        self.chain.close()
