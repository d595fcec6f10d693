"""Store-side retention: whole partitions past a destination's window are deleted, on the record.

Every ``retention_check`` (and at the first publication round after a start) the publisher walks
the destination's partitions (folders at the template's depth) and takes those whose time window
(`layout.PartitionLayout.window`, read from the path) ended more than ``retention`` ago. Before
anything is deleted, one *retention record* is written to ``.logbridge/retention/`` and chained
in the writer's retention stream (``<writer>/<destination>/.retention``), signed like a manifest:
it lists every file it deletes with the stream, sequence number and hash of its manifest, so that
``verify`` bridges those links ("pruned by retention") instead of reporting removed files.

Only the files listed are deleted (a file published into the partition meanwhile stays, and is
taken by the next run). A crash between the record and the deletions leaves listed files in
place: harmless, the next run lists and deletes them again under a new record.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from .. import envelope
from ..errors import DestinationError, ManifestError
from ..sinks.fs import map_storage_errors
from . import manifest as mf
from .layout import MANIFESTS, manifest_path, retention_path

log = structlog.get_logger("logbridge.store")


def read_header(fs: Any, path: str) -> mf.Manifest:
    """A manifest's header only (one bounded read; its digests are not read). Raises
    `ManifestError` for a bad header and the store's own errors for the read."""
    raw = b""
    with fs.open(path, "rb", block_size=64 * 1024) as fh:
        while b"\n" not in raw and len(raw) <= mf.MAX_HEADER:
            chunk = fh.read(64 * 1024)
            if not chunk:
                break
            raw += chunk
    header, _ = mf.split_header(raw)
    return mf.Manifest(mf.parse_header(header))


def _link(fs: Any, path: str) -> dict[str, Any]:
    """What a retention record keeps of a manifest it deletes: its place in its stream."""
    try:
        m = read_header(fs, path)
    except ManifestError as exc:
        return {"manifest_error": str(exc)[:200]}
    return {"stream": m.stream, "seq": m.seq, "manifest": m.hash}


class Retention:
    def __init__(self, writer: Any, sealer: Any, max_age: float, *, every: float = 3600.0):
        self.writer = writer
        self.sealer = sealer
        self.max_age = max_age
        self.every = every
        self.next_check = 0.0  # the first publication round checks

    def due(self) -> bool:
        """A check is due (`maybe_prune` would look at the store now)."""
        return time.monotonic() >= self.next_check

    def maybe_prune(self) -> int:
        now = time.monotonic()
        if now < self.next_check:
            return 0
        self.next_check = now + self.every
        try:
            with map_storage_errors(self.writer.name, "retention"):
                return self.prune(time.time())
        except DestinationError as exc:
            log.warning(
                "retention failed, will retry at the next check", destination=self.writer.name, error=str(exc)
            )
            return 0

    def prune(self, now: float) -> int:
        """Delete every partition past the window; returns how many files went."""
        cutoff = now - self.max_age
        layout = self.sealer.layout
        expired = []
        for partition in self._partitions():
            window = layout.window(partition)
            if window is not None and window.end.timestamp() <= cutoff:
                expired.append(partition)
        if not expired:
            return 0
        fs, root = self.writer.fs, self.writer.root
        pruned: list[dict[str, Any]] = []
        doomed: list[str] = []
        for partition in expired:
            data = sorted(self._files(f"{root}/{partition}"))
            manifests = set(self._files(f"{root}/{MANIFESTS}/{partition}"))
            for path in data:
                rel = path[len(root) + 1 :]
                entry: dict[str, Any] = {"partition": partition, "file": rel}
                mpath = f"{root}/{manifest_path(rel)}"
                if mpath in manifests:
                    manifests.discard(mpath)
                    entry |= _link(fs, mpath)
                    doomed.append(mpath)
                pruned.append(entry)
                doomed.append(path)
            for mpath in sorted(manifests):  # manifests whose file is already gone
                rel = mpath[len(f"{root}/{MANIFESTS}/") : -len(".manifest")]
                pruned.append({"partition": partition, "file": rel, "file_missing": True} | _link(fs, mpath))
                doomed.append(mpath)
        if not doomed:
            return 0
        self._record(pruned, cutoff, now)
        fs.rm(doomed)
        if self.writer.local:
            self._remove_empty(expired)
        log.info(
            "retention: pruned partitions",
            destination=self.writer.name,
            partitions=len(expired),
            files=len(pruned),
        )
        return len(pruned)

    def _record(self, pruned: list[dict[str, Any]], cutoff: float, now: float) -> None:
        chain = self.sealer.chain
        with chain.lock:
            stream = f"{chain.writer}/{self.sealer.destination}/.retention"
            seq, prev, _ = chain.next_link(stream)
            header: dict[str, Any] = {
                "format": mf.FORMAT,
                "kind": "retention",
                "destination": self.sealer.destination,
                "max_age_seconds": self.max_age,
                "cutoff": envelope.format_timestamp(cutoff),
                "pruned": pruned,
                "stream": stream,
                "seq": seq,
                "prev": prev,
                "sealed_at": envelope.format_timestamp(now),
            }
            if self.sealer.key is not None:
                header = mf.sign(header, self.sealer.key)
            record = mf.Manifest(header)
            self.sealer.put(self.writer, record, retention_path(chain.writer, self.sealer.destination, seq))
            chain.record(record)
            chain.sync()

    def _partitions(self) -> list[str]:
        """Every folder at the template's depth (relative to the root), skipping ``.logbridge``."""
        depth = self.sealer.layout.template.count("/") + 1
        fs, root = self.writer.fs, self.writer.root
        level = [root]
        for _ in range(depth):
            below = []
            for folder in level:
                try:
                    entries = fs.ls(folder, detail=True)
                except FileNotFoundError:
                    continue
                for info in entries:
                    name = info["name"].rstrip("/")
                    if info.get("type") == "directory" and not name.rsplit("/", 1)[-1].startswith("."):
                        below.append(name)
            level = below
        return [name[len(root) + 1 :] for name in level if name.startswith(root + "/")]

    def _files(self, folder: str) -> list[str]:
        try:
            found = self.writer.fs.find(folder, detail=True)
        except FileNotFoundError:
            return []
        return [name for name, info in found.items() if info.get("type") == "file"]

    def _remove_empty(self, partitions: list[str]) -> None:
        import os

        root = self.writer.root
        for partition in partitions:
            for base in (root, f"{root}/{MANIFESTS}"):
                parts = partition.split("/")
                while parts:
                    try:
                        os.rmdir(f"{base}/{'/'.join(parts)}")
                    except OSError:
                        break
                    parts.pop()
