"""The operator page's live numbers (`LiveStats`), fed by a real collector storing real batches.

Each test builds a `Collector` on a temporary store with the recorder attached (as ``ui: true``
does) and ingests batches at chosen receive times, then reads what the page would show.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge import envelope
from logbridge.collector import stats as stats_mod
from logbridge.collector.config import CollectorServerConfig
from logbridge.collector.core import Collector, RequestContext
from logbridge.collector.ingest import Prepared
from logbridge.collector.stats import LiveStats

T0 = 1_796_000_000.0  # 2026-11-30T...Z, a whole second


def make_collector(
    tmp_path: Path, *, recent: int = 500, stale_after: float = 300.0, **extra: Any
) -> Collector:
    config = CollectorServerConfig.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "dead_letter": f"file://{tmp_path / 'dead'}",
            "destinations": [{"name": "store", "url": f"file://{tmp_path / 'store'}"}],
            **extra,
        }
    )
    collector = Collector(config)
    collector.stats = LiveStats(recent_events=recent, stale_after=stale_after)
    collector.start()
    return collector


def log4j(topic: str, seq: int, *, user: str = "alice", at: float = T0) -> bytes:
    """A DSS log4j file envelope (the fast path's shape)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{round(at * 1000) % 1000:03d}+0000"
    return orjson.dumps(
        {
            "severity": "INFO",
            "logger": f"dku.audit.{topic}",
            "message": {"msgType": "login", "authUser": user, "seq": seq},
            "mdc": {},
            "timestamp": stamp,
        }
    )


def ctx(node: str | None = "node-a", **kw: Any) -> RequestContext:
    return RequestContext("10.0.0.7", node=node, **kw)


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [e["clientEvent"]["seq"] for e in events]


def test_rates_per_topic_over_the_window_then_the_minute(tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    c.ingest([log4j("generic", i) for i in range(30)] + [log4j("authfail", 99)], ctx(), T0)
    c.ingest([log4j("generic", i) for i in range(20)], ctx(), T0 + 1)
    stats = c.stats
    assert stats is not None

    now = stats.topics(now=T0 + 2)
    by_topic = {row["topic"]: row for row in now["topics"]}
    assert by_topic["generic"] == {"topic": "generic", "events_per_s": 5.0, "last_minute": 50, "total": 50}
    assert by_topic["authfail"]["events_per_s"] == 0.1
    assert now["total"] == 51 and now["events_per_s"] == 5.1

    later = stats.topics(now=T0 + 30)  # out of the 10 s window, still in the minute
    assert {r["topic"]: (r["events_per_s"], r["last_minute"]) for r in later["topics"]} == {
        "authfail": (0.0, 1),
        "generic": (0.0, 50),
    }
    gone = stats.topics(now=T0 + 90)
    assert [r["last_minute"] for r in gone["topics"]] == [0, 0] and gone["total"] == 51


def test_nodes_last_seen_lag_and_staleness(tmp_path: Path) -> None:
    c = make_collector(tmp_path, stale_after=3.0)
    # node-a ships events two minutes old (a backlog); node-b live ones.
    c.ingest([log4j("generic", i, at=T0 - 120) for i in range(5)], ctx("node-a"), T0)
    c.ingest([log4j("generic", i, at=T0 + 4.5) for i in range(2)], ctx("node-b"), T0 + 5)
    c.ingest([orjson.dumps({"msgType": "x", "topic": "generic"})], ctx(None), T0 + 5.5)  # no label
    assert c.stats is not None
    rows = {row["node"]: row for row in c.stats.nodes(now=T0 + 6)}
    assert rows["node-a"]["stale"] is True and rows["node-a"]["silent_s"] == 6.0
    assert rows["node-a"]["lag_s"] == 120.0 and rows["node-a"]["events"] == 5
    assert rows["node-b"]["stale"] is False and rows["node-b"]["lag_s"] == 0.5
    assert rows["node-b"]["last_seen"] == envelope.format_timestamp(T0 + 5)
    # Without X-Logbridge-Node a sender is known by its address; a bare event has no time: no lag.
    assert rows["10.0.0.7"]["lag_s"] is None and rows["10.0.0.7"]["events"] == 1
    assert [row["node"] for row in c.stats.nodes(now=T0 + 6)] == ["10.0.0.7", "node-b", "node-a"]


def test_recent_is_newest_first_bounded_and_filtered(tmp_path: Path) -> None:
    c = make_collector(tmp_path, recent=6)
    for batch in range(4):
        users = ["alice", "bob"]
        c.ingest([log4j("generic", batch * 4 + i, user=users[i % 2]) for i in range(4)], ctx(), T0 + batch)
    assert c.stats is not None
    assert seqs(c.stats.recent(5)) == [15, 14, 13, 12, 11]
    # The ring keeps whole batches, dropping the oldest while the rest still hold 6 events.
    assert seqs(c.stats.recent(100)) == list(range(15, 7, -1))
    assert seqs(c.stats.recent(100, "BOB")) == [15, 13, 11, 9]
    assert c.stats.recent(100, "nobody") == []


def test_refused_and_duplicate_batches_are_not_counted(tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    batch = [log4j("generic", i) for i in range(3)]
    c.ingest(batch, ctx(source="s", range_start=0, range_end=300), T0)
    again = c.ingest(batch, ctx(source="s", range_start=0, range_end=300), T0 + 1)
    assert again.duplicate
    assert c.stats is not None
    assert c.stats.topics(now=T0 + 2)["total"] == 3
    assert seqs(c.stats.recent(10)) == [2, 1, 0]
    assert c.stats.nodes(now=T0 + 2)[0]["batches"] == 1


def test_a_line_going_to_two_destinations_is_shown_once(tmp_path: Path) -> None:
    c = make_collector(
        tmp_path,
        destinations=[
            {"name": "all", "url": f"file://{tmp_path / 'all'}"},
            {"name": "logins", "url": f"file://{tmp_path / 'logins'}", "topics": ["authfail"]},
        ],
    )
    twice = log4j("authfail", 1)
    c.ingest([log4j("generic", 0), twice, twice, log4j("authfail", 2)], ctx(), T0)
    assert c.stats is not None
    assert sorted(seqs(c.stats.recent(10))) == [0, 1, 1, 2]  # the same event sent twice: twice


def test_dead_letter_reasons_and_latest(tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    c.ingest([b"not json", b"[1]", orjson.dumps({"msgType": "no topic"}), log4j("generic", 1)], ctx(), T0)
    assert c.stats is not None
    dead = c.stats.dead_letter()
    assert dead["total"] == 3
    assert dead["by_reason"] == {"invalid-json": 1, "not-an-object": 1, "no-topic": 1}
    latest = dead["latest"]
    assert [d["reason"] for d in latest] == ["no-topic", "not-an-object", "invalid-json"]
    assert latest[2]["raw"] == "not json" and latest[2]["node"] == "node-a"
    assert all(d["received"] == envelope.format_timestamp(T0) for d in latest)


def test_a_huge_dead_line_is_kept_short_with_its_reason(tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    c.ingest([b"<" + b"x" * 100_000], ctx(), T0)
    assert c.stats is not None
    (latest,) = c.stats.dead_letter()["latest"]
    assert latest["reason"] == "invalid-json" and latest["node"] == "node-a"
    assert latest["raw"] == "<" + "x" * (stats_mod.DEAD_FIELD_CHARS - 1) + "…"
    assert sum(len(line) for _, line in c.stats._dead_latest) <= stats_mod.DEAD_LINE_BYTES


def test_a_prestaged_big_batch_shows_its_last_lines(tmp_path: Path) -> None:
    c = make_collector(tmp_path)
    items = [log4j("generic", i) for i in range(10_000)]  # ~2 MiB of stored lines
    prepared = c.prepare_items(items, ctx(), T0)
    c.prestage(prepared)
    assert prepared.prestaged and not prepared.chunks  # written to a file of its own
    c.store(prepared)
    assert c.stats is not None
    shown = seqs(c.stats.recent(500))
    # Of a batch only its last lines are kept, `BATCH_BYTES` of them: here the last ~300 events.
    assert len(shown) > 100 and shown == list(range(9_999, 9_999 - len(shown), -1))
    assert sum(len(batch.data) for batch in c.stats._ring) <= stats_mod.BATCH_BYTES


def test_hostile_labels_and_topics_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_mod, "MAX_NODES", 5)
    monkeypatch.setattr(stats_mod, "MAX_TOPICS", 3)
    stats = LiveStats(recent_events=10)
    for i in range(8):
        p = Prepared(ctx(f"node-{i}" + "x" * 500), T0 + i)
        p.topic_counts = {f"topic-{i}": 1}
        stats.record(p)
    nodes = stats.nodes(now=T0 + 8)
    assert len(nodes) == 5 and nodes[0]["node"].startswith("node-7")
    assert all(len(n["node"]) == stats_mod.MAX_LABEL for n in nodes)
    topics = stats.topics(now=T0 + 8)["topics"]
    assert [t["topic"] for t in topics] == ["(other topics)", "topic-0", "topic-1", "topic-2"]
    assert topics[0]["total"] == 5


LINES = [b'{"a":1}', b'{"a":2}', b'{"b":"x"}', b'{"c":[1,2]}']
ROUTES = st.sets(st.integers(0, 2), min_size=1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(LINES), max_size=30),
    st.fixed_dictionaries({line: ROUTES for line in LINES}),
    st.integers(1, 3),
)
def test_batch_lines_give_back_every_line_once(
    sent: list[bytes], routes_of: dict[bytes, set[int]], partitions: int
) -> None:
    """However lines are routed (a stored line always to the same destinations: they depend on
    its topic and routing key), and spread over partitions, the union of the routes' pieces is
    the batch's lines, each as often as it was sent."""
    pieces: dict[tuple[int, int], bytearray] = {}
    for n, line in enumerate(sent):
        for route in sorted(routes_of[line]):
            pieces.setdefault((route, n % partitions), bytearray()).extend(line + b"\n")
    got = stats_mod._batch_lines([(route, bytes(data)) for (route, _), data in sorted(pieces.items())])
    assert sorted(got) == sorted(sent)
