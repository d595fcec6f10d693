"""The filesystem sink: partitioned files in any fsspec store, through local staging files.

The staging and publication mechanics are `PartitionedWriter`'s; this class is the `Sink` face
of them: receipts the collector journals, acknowledgement (a staging file is published only up
to the size its journal records cover), fsync, and start-up recovery. It also wires in the
store's evidence (`logbridge.store`): each file's digest follows its appends, its manifest is
sealed when it rolls and published right after it, and retention prunes old partitions.

The chain state (`logbridge.store.chain`) lives beside the staging dir, never in it: for the
usual ``<state_dir>/staging/<destination>`` it is ``<state_dir>/chains/<destination>``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from ..config import resolve_secret
from ..errors import DestinationError
from ..store.layout import PartitionLayout
from ..store.retention import Retention
from ..store.sealer import Sealer
from .base import Partitioner, Receipt
from .config import FilesystemDestination
from .encoders import Encoder, encoder_for
from .fs import map_storage_errors
from .partition import PartitionPaths
from .writer import PartitionedWriter, StagingFile

log = structlog.get_logger("logbridge.sinks")


class FilesystemSink:
    def __init__(
        self,
        name: str,
        url: str,
        staging_dir: Path,
        *,
        partitions: Partitioner,
        event_time: bool = True,
        storage_options: dict[str, Any] | None = None,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 300.0,
        encoder: Encoder | None = None,
        key: str | None = None,
        manifests: bool = True,
        line_digests: bool = True,
        sign_key: bytes | None = None,
        chain_dir: Path | None = None,
        retention: float | None = None,
        retention_check: float = 3600.0,
    ):
        self.name = name
        self.partitions = partitions
        self.event_time = event_time
        self.writer = PartitionedWriter(
            name,
            url,
            staging_dir,
            storage_options=storage_options,
            max_bytes=max_bytes,
            max_age=max_age,
            encoder=encoder,
            key=key,
        )
        self.sealer: Sealer | None = None
        self.retention: Retention | None = None
        if manifests:
            layout = PartitionLayout(getattr(partitions, "template", ""), getattr(partitions, "tz", "UTC"))
            self.sealer = Sealer(
                name,
                chain_dir or default_chain_dir(staging_dir),
                layout,
                key=sign_key,
                encoding="gzip" if encoder is not None else "none",
                line_digests=line_digests,
                published_name=encoder.published_name if encoder is not None else (lambda r: r),
            )
            self.writer.sealer = self.sealer
            if retention is not None:
                self.retention = Retention(self.writer, self.sealer, retention, every=retention_check)

    @classmethod
    def from_config(cls, dest: FilesystemDestination, staging_dir: Path, *, key: str) -> FilesystemSink:
        settings = dest.manifest
        sign_key = None
        if settings.sign_key_env or settings.sign_key_file:
            sign_key = resolve_secret(
                env=settings.sign_key_env, file=settings.sign_key_file, what=f"{key}.manifest"
            ).encode("utf-8")
        return cls(
            dest.name,
            dest.url,
            staging_dir / dest.name,
            partitions=PartitionPaths(
                dest.path_template(), timezone=dest.timezone, placeholder=dest.routing_key_placeholder
            ),
            event_time=dest.partition_time == "event",
            storage_options=dict(dest.storage_options),
            max_bytes=dest.roll.max_bytes,
            max_age=dest.roll.max_age,
            encoder=encoder_for(dest.compression),
            key=key,
            manifests=settings.enabled,
            line_digests=settings.line_digests,
            sign_key=sign_key,
            chain_dir=staging_dir.parent / "chains" / dest.name,
            retention=dest.retention,
            retention_check=dest.retention_check,
        )

    def __repr__(self) -> str:
        return f"FilesystemSink({self.name!r}, {self.writer.url!r})"

    # ------------------------------------------------------------------- writer thread

    def append(self, partition: str, data: bytes) -> Receipt:
        staging, before = self.writer.append(partition, data)
        if self.sealer is not None:
            self.sealer.track(staging, before, data)
        return Receipt(self, f"{self.name}/{staging.relpath}", staging.size, before, staging)

    def prestage(self, partition: str, data: bytes) -> Receipt:
        staging = self.writer.prestage(partition, data)
        if self.sealer is not None:
            self.sealer.track(staging, 0, data)
        return Receipt(self, f"{self.name}/{staging.relpath}", staging.size, 0, staging)

    def adopt(self, receipt: Receipt) -> None:
        self.writer.adopt(receipt.handle)

    def discard(self, receipt: Receipt) -> None:
        self.writer.discard(receipt.handle)

    def rollback(self, receipt: Receipt) -> None:
        self.writer.rollback(receipt.handle, receipt.before)

    def sync(self) -> None:
        for staging in self.writer.live_files():
            handle = staging.handle
            if handle is not None:
                with contextlib.suppress(ValueError):  # closed by a roll meanwhile: nothing to sync
                    os.fsync(handle.fileno())

    def acknowledge(self, receipts: Sequence[Receipt]) -> None:
        for receipt in receipts:
            staging: StagingFile = receipt.handle
            if receipt.size > staging.journaled:
                staging.journaled = receipt.size

    def roll(self, now: float, force: bool = False) -> None:
        self.writer.due(now, force=force)

    def recover(self, acknowledged: dict[str, int]) -> None:
        """Cut every staging file a killed process left back to its journaled size (the lines of
        a batch that was never answered go: its sender sends it again) and queue it."""
        writer = self.writer
        leftover = writer.leftover_staging()
        if self.sealer is not None:
            self.sealer.recover({relpath for _, relpath in leftover})
        for path, relpath in leftover:
            keep = acknowledged.get(f"{self.name}/{relpath}", 0)
            size = path.stat().st_size
            if size > keep:
                log.info("recovery: cutting unacknowledged tail", file=relpath, bytes=size - keep)
                with open(path, "r+b") as fh:
                    fh.truncate(keep)
            if keep == 0:
                path.unlink()
                continue
            staging = StagingFile(relpath, path, None, 0.0, size=keep, synced=keep, journaled=keep)
            writer.to_publish.append(staging)
        if self.sealer is not None:
            try:
                self.sealer.seal(writer.to_publish)  # those sealed before the crash keep their manifest
            except OSError as exc:
                log.error("recovery: cannot seal staging files yet (retried at publication)", error=str(exc))

    def staged_sizes(self) -> dict[str, int]:
        return {f"{self.name}/{s.relpath}": s.journaled for s in self.writer.staged_files()}

    def close(self) -> None:
        self.writer.close()
        if self.sealer is not None:
            self.sealer.close()

    # ------------------------------------------------------------------ publisher thread

    def publish(self) -> int:
        if self.sealer is not None and self.sealer.orphans:
            try:
                with map_storage_errors(self.name, "cannot publish a manifest whose file went without it"):
                    self.sealer.publish_orphans(self.writer)
            except DestinationError as exc:
                log.warning("publish failed, will retry", destination=self.name, error=str(exc))
        published = self.writer.publish_pending()
        if self.retention is not None:
            self.retention.maybe_prune()
        return published

    # --------------------------------------------------------------------- any thread

    @property
    def pending(self) -> int:
        return self.writer.unpublished

    @property
    def wants_publish(self) -> bool:
        if self.writer.unpublished:
            return True
        if self.sealer is not None and self.sealer.orphans:
            return True
        return self.retention is not None and self.retention.due()

    @property
    def blocked(self) -> bool:
        return self.writer.blocked

    def problem(self) -> str | None:
        if not self.writer.blocked:
            return None
        return f"destination {self.name!r} cannot be written: {self.writer.stats.last_error}"

    def staging_bytes(self) -> int:
        return sum(s.size for s in self.writer.staged_files())  # uploads under way included


def default_chain_dir(staging_dir: Path) -> Path:
    """``<state_dir>/chains/<name>`` for the usual ``<state_dir>/staging/<name>``, else a sibling
    ``<staging_dir>.chain`` (never inside the staging dir: everything there is a staged file)."""
    if staging_dir.parent.name == "staging":
        return staging_dir.parent.parent / "chains" / staging_dir.name
    return staging_dir.with_name(staging_dir.name + ".chain")
