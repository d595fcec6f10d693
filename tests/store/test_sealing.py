"""Sealing through a real `FilesystemSink` on ``file://``: a manifest is fixed when its file rolls,
survives a kill before publication byte for byte, and the stream continues after a restart."""

from __future__ import annotations

import time
from pathlib import Path

from logbridge.sinks.filesystem import FilesystemSink
from logbridge.sinks.partition import PartitionPaths
from logbridge.store import manifest as mf
from logbridge.store.retention import Retention
from logbridge.verify.check import Options, Verifier

LATER = time.monotonic() + 3600
KEY = b"k" * 32


def lines(*numbers: int) -> bytes:
    return b"".join(b'{"clientEvent":{"seq":%d},"topic":"generic"}\n' % n for n in numbers)


def make_sink(tmp_path: Path, **options: object) -> FilesystemSink:
    return FilesystemSink(
        "store",
        f"file://{tmp_path / 'store'}",
        tmp_path / "state" / "staging" / "store",
        partitions=PartitionPaths("{topic}/%Y/%m"),
        sign_key=KEY,
        **options,  # type: ignore[arg-type]
    )


def published_manifests(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "store" / ".logbridge" / "manifests"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.manifest"))}


def verify(tmp_path: Path) -> list[tuple[str, str | None]]:
    import fsspec

    report = Verifier(fsspec.filesystem("file"), str(tmp_path / "store"), Options(key=KEY)).run()
    return [(f.kind, f.file) for f in report.findings]


def roll_one(sink: FilesystemSink, partition: str, data: bytes) -> None:
    sink.acknowledge([sink.append(partition, data)])
    sink.roll(LATER)


def test_a_file_sealed_then_killed_is_published_with_the_same_manifest(tmp_path: Path) -> None:
    killed = make_sink(tmp_path)
    roll_one(killed, "generic/2026/12", lines(1, 2, 3))
    (pending,) = (tmp_path / "state" / "chains" / "store" / "pending").rglob("*.manifest")
    sealed = pending.read_bytes()
    # SIGKILL before the publisher ran: no publish, no close. The journal holds the file's size.
    staging = tmp_path / "state" / "staging" / "store"
    (staged,) = staging.rglob("*.ndjson")
    again = make_sink(tmp_path)
    again.recover({f"store/{staged.relative_to(staging).as_posix()}": staged.stat().st_size})
    assert again.publish() == 1
    (published,) = published_manifests(tmp_path).values()
    assert published == sealed
    assert not pending.exists()
    # The stream goes on at 2, after the sealed one.
    roll_one(again, "generic/2026/12", lines(4))
    again.publish()
    seqs = sorted(mf.parse(b).seq for b in published_manifests(tmp_path).values())
    assert seqs == [1, 2]
    assert verify(tmp_path) == []


def test_a_published_file_whose_pending_manifest_is_left_is_not_sealed_twice(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    roll_one(sink, "generic/2026/12", lines(1))
    sink.publish()
    chains = tmp_path / "state" / "chains" / "store"
    log_before = (chains / "chain.log").read_bytes()
    # A kill between the file's publication and the removal of its pending manifest.
    (relpath,) = published_manifests(tmp_path)
    pending = chains / "pending" / relpath
    pending.parent.mkdir(parents=True, exist_ok=True)
    pending.write_bytes(published_manifests(tmp_path)[relpath])
    again = make_sink(tmp_path)
    again.recover({})
    again.publish()
    assert not pending.exists()
    assert (chains / "chain.log").read_bytes() == log_before
    assert verify(tmp_path) == []


def test_streams_are_per_topic_and_survive_concurrent_publication(tmp_path: Path) -> None:
    sink = make_sink(tmp_path, max_bytes=60)
    for n in range(12):  # every append rolls the one before (max_bytes), topics alternate
        topic = ("generic", "authfail")[n % 2]
        sink.acknowledge([sink.append(f"{topic}/2026/{1 + n % 12:02d}", lines(n))])
    sink.roll(LATER, force=True)
    sink.writer.to_publish.reverse()  # published in another order than rolled
    sink.publish()
    streams: dict[str, list[int]] = {}
    for data in published_manifests(tmp_path).values():
        m = mf.parse(data)
        streams.setdefault(m.stream.split("/", 2)[2], []).append(m.seq)
    assert {k: sorted(v) for k, v in streams.items()} == {
        "generic/%Y/%m": [1, 2, 3, 4, 5, 6],
        "authfail/%Y/%m": [1, 2, 3, 4, 5, 6],
    }
    assert verify(tmp_path) == []


def test_retention_deletes_old_partitions_and_verify_bridges_them(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    for month in ("2020/01", "2026/11", "2020/02", "2026/12"):
        roll_one(sink, f"generic/{month}", lines(int(month[-2:])))
    sink.publish()
    retention = Retention(sink.writer, sink.sealer, 400 * 86400)
    now = time.mktime((2026, 12, 15, 0, 0, 0, 0, 0, 0))
    assert retention.prune(now) == 2
    assert sorted(
        p.parent.relative_to(tmp_path / "store").as_posix() for p in (tmp_path / "store").rglob("*.ndjson")
    ) == [
        "generic/2026/11",
        "generic/2026/12",
    ]
    assert not (tmp_path / "store" / "generic" / "2020").exists()
    assert verify(tmp_path) == [
        (
            "pruned-by-retention",
            ".logbridge/retention/"
            + next(p.name for p in (tmp_path / "store" / ".logbridge" / "retention").iterdir()),
        )
    ]
    assert retention.prune(now) == 0  # nothing left past the window


def test_a_manifest_the_store_refuses_after_its_file_is_published_at_the_next_round(tmp_path: Path) -> None:
    sink = make_sink(tmp_path)
    blocker = tmp_path / "store" / ".logbridge"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the manifests' folder should be")
    roll_one(sink, "generic/2026/12", lines(1, 2))
    assert sink.publish() == 1  # the file went; its manifest could not
    assert list((tmp_path / "store").rglob("*.ndjson")) and sink.sealer is not None and sink.sealer.orphans
    blocker.unlink()
    sink.publish()  # nothing queued: the round still retries the manifest
    assert len(published_manifests(tmp_path)) == 1 and not sink.sealer.orphans
    assert verify(tmp_path) == []
    assert not list((tmp_path / "state" / "chains" / "store" / "pending").rglob("*.manifest"))
