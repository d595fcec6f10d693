"""Start-up recovery: staging files are cut back to what was acknowledged, then published (by
the publisher, not by the start itself: a restart does not wait for the store)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from logbridge.collector.config import CollectorServerConfig
from logbridge.collector.core import Collector, RequestContext
from logbridge.collector.journal import Journal


def config(tmp_path: Path) -> CollectorServerConfig:
    return CollectorServerConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "dead_letter": f"file://{tmp_path / 'dead'}",
            "destinations": [{"name": "store", "url": f"file://{tmp_path / 'store'}"}],
        }
    )


def lines(n: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"msgType": "m", "topic": "generic", "seq": i}) for i in range(start, start + n)]


def stored_seqs(root: Path) -> list[int]:
    return sorted(
        orjson.loads(line)["clientEvent"]["seq"]
        for path in root.rglob("*.ndjson")
        for line in path.read_bytes().splitlines()
    )


def test_unacknowledged_tail_is_cut_and_the_rest_published(tmp_path: Path) -> None:
    first = Collector(config(tmp_path))
    first.start()
    ctx = RequestContext("127.0.0.1", source="s", range_start=0, range_end=10)
    assert first.ingest(lines(10), ctx, time.time()).accepted == 10
    # A second batch reaches the staging file but the process dies before its journal record.
    (staging,) = first.routes[0].sink.writer.open_files.values()  # type: ignore[attr-defined]
    assert staging.handle is not None
    staging.handle.write(b"\n".join(lines(5, start=10)) + b"\n")
    staging.handle.flush()
    first.journal._handle.write(b'\n{"files":{"store/')  # and the record itself was torn mid-write
    first.journal._handle.flush()
    del first  # no close(): as after SIGKILL

    second = Collector(config(tmp_path))
    second.start()
    assert stored_seqs(tmp_path / "store") == [], "start-up published: a restart would wait for the store"
    assert second.routes[0].sink.pending == 1
    second.publish_all()
    assert stored_seqs(tmp_path / "store") == list(range(10))
    assert list((tmp_path / "state" / "staging").rglob("*.ndjson")) == []
    # the high-water mark survived: the acknowledged range is a duplicate
    again = second.ingest(
        lines(10), RequestContext("h", source="s", range_start=0, range_end=10), time.time()
    )
    assert again.duplicate
    second.close()
    assert stored_seqs(tmp_path / "store") == list(range(10))


def test_journal_compaction_keeps_high_water_marks(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.load()
    journal.open()
    journal.append([("a", 100, {}), ("b", 7, {"store/x/y.ndjson": 12})])
    journal.compact({})
    journal.append([("a", 200, {})])
    journal.close()
    again = Journal(tmp_path)
    again.load()
    assert again.high_water == {"a": 200, "b": 7}
    assert len(list(tmp_path.glob("journal-*.wal"))) == 1


def test_sources_not_seen_for_the_ttl_are_forgotten(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.load()
    journal.open()
    journal.append([("old-file", 500, {})], now=time.time() - 3 * 86400)  # its last batch: three days ago
    journal.append([("live-file", 900, {})])
    assert journal.compact({}, ttl=2 * 86400) == ["old-file"]
    journal.close()
    again = Journal(tmp_path)
    again.load()
    assert again.high_water == {"live-file": 900}
    assert again.last_seen["live-file"] > time.time() - 60


def test_records_written_while_a_snapshot_is_written_survive_a_crash_at_any_step(tmp_path: Path) -> None:
    """A compaction switches appends to generation N+1 before its snapshot is on disk: a crash
    before (or during) the snapshot must still replay N's records and N+1's."""
    journal = Journal(tmp_path)
    journal.load()
    journal.open()
    journal.append([("a", 100, {})])
    snapshot = journal.begin_compaction({})
    journal.append([("b", 7, {"store/x.ndjson": 12})])  # the writer thread goes on meanwhile
    journal.close()  # SIGKILL before write_snapshot
    crashed = Journal(tmp_path)
    crashed.load()
    assert crashed.high_water == {"a": 100, "b": 7} and crashed.sizes["store/x.ndjson"] == 12
    assert crashed.generation == snapshot.generation  # appends go on after the newest generation

    journal.write_snapshot(snapshot)  # the snapshot lands: the old generation goes
    again = Journal(tmp_path)
    again.load()
    assert again.high_water == {"a": 100, "b": 7}
    assert [p.name for p in tmp_path.glob("journal-*.wal")] == [f"journal-{snapshot.generation:08d}.wal"]


def test_a_source_refreshed_during_a_compaction_is_not_forgotten(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.load()
    journal.open()
    journal.append([("old", 5, {}), ("stale", 9, {})], now=time.time() - 3 * 86400)
    snapshot = journal.begin_compaction({})
    journal.append([("old", 6, {})])  # "old" sends again before the snapshot is written
    expired = journal.write_snapshot(snapshot, ttl=86400)
    assert sorted(expired) == ["old", "stale"]
    assert journal.finish_compaction(snapshot, expired) == ["stale"]
    assert journal.high_water == {"old": 6}
    journal.close()
    again = Journal(tmp_path)
    again.load()
    assert again.high_water == {"old": 6}
