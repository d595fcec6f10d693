"""The `Sink` contract, run over every filesystem sink: ``file://``, ``memory://``, ``s3://`` (moto),
``az://`` (Azurite) and ``gs://`` (fake-gcs-server).

Each backend is a `Store` fixture: where the sink publishes, how to read what it published, and
how to make publishing fail for real (a file where the root folder should be; S3 stopped; an
Azure container or GCS bucket deleted).
The tests only speak the protocol (`append`, `rollback`, `acknowledge`, `roll`, `publish`,
`recover`, `staged_sizes`, `blocked`, `problem`), so a new sink type joins by adding a fixture.
"""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from _storefiles import is_manifest

from logbridge.errors import DestinationError, DestinationNotFound, StorageUnavailable
from logbridge.sinks.base import Sink
from logbridge.sinks.encoders import Gzip
from logbridge.sinks.filesystem import FilesystemSink
from logbridge.sinks.fs import is_object_store, map_storage_errors, open_filesystem
from logbridge.sinks.partition import PartitionPaths

LATER = time.monotonic() + 3600  # a roll "now" past every max_age


class Store:
    """One backend: the sink's URL and options, a look at what reached the store, and a real
    way to make publishing fail."""

    def __init__(self, url: str, storage_options: dict[str, Any]):
        self.url = url.rstrip("/")
        self.storage_options = storage_options
        self.fs, self.root = open_filesystem(self.url, dict(storage_options), "test")

    def published(self, manifests: bool = False) -> dict[str, bytes]:
        """Relative path → bytes of every published data object (or manifest)."""
        self.fs.invalidate_cache()
        if not self.fs.exists(self.root):
            return {}
        return {
            key[len(self.root.rstrip("/")) + 1 :]: self.fs.cat_file(key)
            for key in self.fs.find(self.root)
            if not key.rsplit("/", 1)[-1].startswith(".") and is_manifest(key) == manifests
        }

    def break_store(self) -> None:
        """Make every publication fail: a plain file where the root folder should be."""
        self.fs.pipe_file(self.root, b"not a folder")

    def repair_store(self) -> None:
        self.fs.rm_file(self.root)


class S3Store(Store):
    def __init__(self, server: Any):
        # One attempt per botocore call (s3fs still retries a few times): an outage fails fast.
        options = {**server.storage_options(), "config_kwargs": {"retries": {"max_attempts": 1}}}
        super().__init__(f"s3://{server.bucket}/contract", options)
        self.server = server

    def published(self, manifests: bool = False) -> dict[str, bytes]:
        fs = self.server.filesystem()  # no listing cache
        try:
            keys = fs.find(self.root)
        except FileNotFoundError:
            return {}
        return {key[len(self.root) + 1 :]: fs.cat_file(key) for key in keys if is_manifest(key) == manifests}

    def break_store(self) -> None:
        # An outage (a deleted bucket would be created again by the publication's makedirs).
        self.server.outage()

    def repair_store(self) -> None:
        self.server.restore()


class EmulatedStore(Store):
    """An Azure container or a GCS bucket of its own on a real emulator (tests/conftest.py)."""

    def __init__(self, bucket: Any):
        super().__init__(bucket.url("contract"), bucket.storage_options())
        self.bucket = bucket

    def published(self, manifests: bool = False) -> dict[str, bytes]:
        fs = self.bucket.filesystem()  # no listing cache
        try:
            keys = fs.find(self.root)
        except FileNotFoundError:
            return {}
        return {key[len(self.root) + 1 :]: fs.cat_file(key) for key in keys if is_manifest(key) == manifests}

    def break_store(self) -> None:
        # The container or bucket is gone: a real 404 from the emulator at once (a stopped
        # emulator would cost the SDK's whole retry schedule, 30-85 s, per attempt).
        self.bucket.delete()

    def repair_store(self) -> None:
        self.bucket.create()


@pytest.fixture(params=["file", "memory", "s3", "az", "gs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param in ("az", "gs"):
        yield EmulatedStore(request.getfixturevalue(f"{request.param}_bucket"))
    elif request.param == "file":
        yield Store(f"file://{tmp_path / 'store'}", {})
    elif request.param == "memory":
        root = f"memory://contract-{uuid.uuid4().hex}"
        yield Store(root, {})
        fs = fsspec.filesystem("memory")
        if fs.exists(root):
            fs.rm(root, recursive=True)
    else:
        yield S3Store(request.getfixturevalue("s3_server"))


def make_sink(store: Store, staging: Path, **options: Any) -> FilesystemSink:
    return FilesystemSink(
        "dest",
        store.url,
        staging,
        partitions=PartitionPaths("{topic}/%Y"),
        storage_options=dict(store.storage_options),
        **options,
    )


def lines(*seqs: int) -> bytes:
    return b"".join(b'{"seq":%d}\n' % n for n in seqs)


def published_lines(store: Store) -> dict[str, bytes]:
    """Partition → concatenated published bytes (file names are unique, not predictable)."""
    out: dict[str, bytes] = {}
    for rel, data in sorted(store.published().items()):
        if rel.endswith(".gz"):
            data = gzip.decompress(data)
        partition = rel.rsplit("/", 1)[0]
        out[partition] = out.get(partition, b"") + data
    return out


# ----------------------------------------------------------------------------------- contract


def test_it_is_a_sink(store: Store, tmp_path: Path) -> None:
    assert isinstance(make_sink(store, tmp_path / "staging"), Sink)


def test_acknowledged_lines_are_published_under_their_partition(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging")
    receipts = [
        sink.append("generic/2026", lines(1, 2)),
        sink.append("authfail/2026", lines(3)),
        sink.append("generic/2026", lines(4)),
    ]
    assert receipts[2].size == len(lines(1, 2, 4)) and receipts[2].before == len(lines(1, 2))
    sink.acknowledge(receipts)
    sink.roll(LATER)
    assert sink.pending == 2
    assert sink.publish() == 2
    assert published_lines(store) == {"generic/2026": lines(1, 2, 4), "authfail/2026": lines(3)}
    assert sink.pending == 0 and sink.staged_sizes() == {} and not sink.blocked
    assert [p for p in (tmp_path / "staging").rglob("*") if p.is_file()] == []


def test_a_file_is_not_rolled_before_it_is_acknowledged(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging")
    receipt = sink.append("generic/2026", lines(1))
    sink.roll(LATER)
    assert sink.pending == 0, "rolled a file whose last batch is not acknowledged"
    sink.acknowledge([receipt])
    sink.roll(LATER)
    assert sink.publish() == 1
    assert published_lines(store) == {"generic/2026": lines(1)}


def test_unacknowledged_lines_are_never_published(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging")
    sink.acknowledge([sink.append("generic/2026", lines(1, 2))])
    sink.append("generic/2026", lines(3))  # its journal record never made it
    sink.roll(time.monotonic(), force=True)  # shutting down
    sink.publish()
    sink.close()
    assert published_lines(store) == {"generic/2026": lines(1, 2)}


def test_rollback_removes_exactly_the_failed_append(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging")
    first = sink.append("generic/2026", lines(1))
    failed = sink.append("generic/2026", lines(2, 3))
    sink.rollback(failed)
    third = sink.append("generic/2026", lines(4))
    assert third.before == first.size
    sink.acknowledge([first, third])
    sink.sync()
    sink.roll(LATER)
    sink.publish()
    assert published_lines(store) == {"generic/2026": lines(1, 4)}


def test_files_roll_by_size_without_splitting_a_batch(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging", max_bytes=len(lines(1, 2)))
    receipts = [sink.append("generic/2026", lines(n)) for n in (1, 2, 3)]
    sink.acknowledge(receipts)
    sink.roll(time.monotonic())  # not old: only the full file goes
    assert sink.publish() == 1
    sink.roll(LATER)
    assert sink.publish() == 1
    assert sorted(len(data) for data in store.published().values()) == [len(lines(3)), len(lines(1, 2))]


def test_recover_keeps_what_was_acknowledged_and_drops_the_rest(store: Store, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    killed = make_sink(store, staging)
    killed.acknowledge([killed.append("generic/2026", lines(1, 2))])
    killed.append("generic/2026", lines(3))  # written, never answered
    killed.append("other/2026", lines(9))  # a file no record ever named
    journal = killed.staged_sizes()  # what the journal holds: acknowledged sizes, by journal key
    assert sorted(journal.values()) == [0, len(lines(1, 2))] and all(k.startswith("dest/") for k in journal)
    # SIGKILL: no roll, no close. A new process recovers from the journal.
    again = make_sink(store, staging)
    again.recover(journal)
    assert again.staged_sizes() == {k: v for k, v in journal.items() if v}  # the empty one is gone
    assert again.publish() == 1
    assert published_lines(store) == {"generic/2026": lines(1, 2)}
    assert [p for p in staging.rglob("*") if p.is_file()] == []


def test_a_failing_store_blocks_with_a_named_error_then_recovers(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging")
    store.break_store()
    sink.acknowledge([sink.append("generic/2026", lines(1))])
    sink.roll(LATER)
    assert sink.publish() == 0  # never raises: the file stays queued
    assert sink.blocked and sink.pending == 1
    problem = sink.problem()
    assert problem is not None and "'dest'" in problem and "cannot publish" in problem
    store.repair_store()
    assert sink.publish() == 1
    assert not sink.blocked and sink.problem() is None
    assert published_lines(store) == {"generic/2026": lines(1)}


def test_gzip_encoding_is_applied_when_publishing(store: Store, tmp_path: Path) -> None:
    sink = make_sink(store, tmp_path / "staging", encoder=Gzip())
    sink.acknowledge([sink.append("generic/2026", lines(1, 2))])
    sink.roll(LATER)
    sink.publish()
    (name,) = store.published()
    assert name.endswith(".ndjson.gz")
    assert published_lines(store) == {"generic/2026": lines(1, 2)}


def test_store_errors_are_mapped_to_ours(store: Store) -> None:
    with pytest.raises(DestinationNotFound) as info, map_storage_errors("dest", "cannot read"):
        store.fs.cat_file(f"{store.root}/no/such/file.ndjson")
    assert isinstance(info.value, DestinationError) and isinstance(info.value, StorageUnavailable)
    assert str(info.value).startswith("dest: cannot read: FileNotFoundError")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_publishing_never_creates_a_missing_bucket(store: Store, tmp_path: Path) -> None:
    """An object store's bucket (container) is the user's to create: a publication into a missing
    one fails naming what to do, and leaves no new bucket behind (s3fs's `makedirs` creates it:
    a typo in the URL would fill a bucket nobody reads)."""
    if not is_object_store(store.fs):
        pytest.skip("folders of a local or memory store are made as needed")
    bucket = f"missing-{uuid.uuid4().hex[:12]}"
    url = f"{store.url.split('://')[0]}://{bucket}/audit"
    sink = make_sink(Store(url, store.storage_options), tmp_path / "staging")
    sink.acknowledge([sink.append("generic/2026", lines(1))])
    sink.roll(LATER)
    assert sink.publish() == 0 and sink.blocked
    problem = sink.problem()
    assert problem is not None and "cannot publish" in problem
    assert "creates no bucket or container: create it, or fix the destination's url" in problem
    store.fs.invalidate_cache()
    assert not store.fs.exists(bucket), "publishing created the bucket"
