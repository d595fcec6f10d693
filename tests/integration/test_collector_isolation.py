"""Isolation in the collector (DESIGN.md §4): between tokens, and between destinations.

1. Idempotence high-water marks belong to the pair (token name, source): a token never sees
   nor moves another token's marks, through a SIGKILL (journal replay) and a clean restart
   (snapshot) alike.
2. One failing destination does not block the others: a request gets 503 only when one of its
   events routes to a destination that cannot take it, and then nothing of it is stored.

Every event carries a unique (batch, seq); the test keeps how many times the collector
acknowledged each, and at the end the store must hold each exactly that many times.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST_ROLL = {"max_bytes": "64MiB", "max_age": "300ms"}
TOKENS = {"node-a": "tok-node-a-7f3c", "node-b": "tok-node-b-91d2"}
AUTH = {"tokens": [{"name": "node-a", "token_env": "LB_A"}, {"name": "node-b", "token_env": "LB_B"}]}
ENV = {"LB_A": TOKENS["node-a"], "LB_B": TOKENS["node-b"]}
MSG_TYPES = {"generic": "login", "apinode-query": "prediction-query"}

EventId = tuple[str, int]


def events(batch: str, n: int, topic: str = "generic") -> bytes:
    """``n`` log4j file envelopes, one per line, each identified by (batch, seq)."""
    return b"".join(
        orjson.dumps(
            {
                "severity": "INFO",
                "logger": f"dku.audit.{topic}",
                "message": {"msgType": MSG_TYPES[topic], "batch": batch, "seq": seq},
                "timestamp": "2020-02-19T16:05:02.441+0100",
            }
        )
        + b"\n"
        for seq in range(n)
    )


def ids(body: bytes) -> list[EventId]:
    return [
        (m["batch"], m["seq"]) for m in (orjson.loads(line)["message"] for line in body.splitlines() if line)
    ]


def stored_ids(
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]], root: Path
) -> Counter[EventId]:
    if not root.is_dir():
        return Counter()
    return Counter(
        (line["clientEvent"]["batch"], line["clientEvent"]["seq"])
        for lines in read_local_store(root).values()
        for line in lines
    )


class Sender:
    """Posts as one token; counts what the collector acknowledged as stored."""

    def __init__(self, url: str, token_name: str, acknowledged: Counter[EventId]):
        self.url = url
        self.token_name = token_name
        self.acknowledged = acknowledged

    def post(self, body: bytes, source: str, rng: str) -> httpx.Response:
        r = httpx.post(
            self.url,
            content=body,
            headers={
                "authorization": f"Bearer {TOKENS[self.token_name]}",
                "content-type": "application/x-ndjson",
                "x-logbridge-node": self.token_name,
                "x-logbridge-source": source,
                "x-logbridge-range": rng,
            },
            timeout=10,
        )
        if r.status_code == 200 and not r.json()["duplicate"]:
            self.acknowledged.update(ids(body))
        return r

    def expect_new(self, body: bytes, source: str, rng: str, why: str) -> None:
        r = self.post(body, source, rng)
        n = len(ids(body))
        assert r.status_code == 200 and r.json() == {"accepted": n, "invalid": 0, "duplicate": False}, (
            f"{why}: {self.token_name} posting {source} {rng} should store its {n} events, "
            f"got {r.status_code} {r.text}"
        )

    def expect_duplicate(self, body: bytes, source: str, rng: str, why: str) -> None:
        r = self.post(body, source, rng)
        assert r.status_code == 200 and r.json() == {"accepted": 0, "invalid": 0, "duplicate": True}, (
            f"{why}: {self.token_name} posting {source} {rng} should be a duplicate, got {r.status_code} {r.text}"
        )

    def expect_conflict(self, body: bytes, source: str, rng: str, high_water: int, why: str) -> None:
        r = self.post(body, source, rng)
        assert r.status_code == 409 and r.json().get("high_water") == high_water, (
            f"{why}: {self.token_name} posting {source} {rng} should get 409 with high_water {high_water}, "
            f"got {r.status_code} {r.text}"
        )


def two_token_collector(collector: Callable[..., Any], tmp_path: Path) -> Any:
    return collector(
        env=ENV,
        auth=AUTH,
        destinations=[{"name": "store", "url": f"file://{tmp_path / 'store'}", "roll": FAST_ROLL}],
    )


# ------------------------------------------------------------------------- marks per token


@pytest.mark.parametrize("foreign_batch", [0, 1], ids=["empty-body", "one-event"])
def test_another_tokens_mark_on_my_source_does_not_swallow_my_events(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any, foreign_batch: int
) -> None:
    c = two_token_collector(collector, tmp_path)
    acknowledged: Counter[EventId] = Counter()
    a = Sender(c.events_url, "node-a", acknowledged)
    b = Sender(c.events_url, "node-b", acknowledged)
    source = "node-a:/data/dss/run/audit/generic.log"
    far = "14500-999999999999"

    # node-b claims a far range of node-a's source: that is node-b's own mark, nothing more.
    foreign = events("b-foreign", foreign_batch)
    b.expect_new(foreign, source, far, "a range of a source no one of node-b's has sent")
    b.expect_duplicate(foreign, source, far, "node-b's own mark")

    mine = events("a-mine", 100)
    a.expect_new(mine, source, f"0-{len(mine)}", "node-b's mark must not hide node-a's range")
    a.expect_duplicate(mine, source, f"0-{len(mine)}", "node-a's own mark")

    c.kill()
    c.start()
    a.expect_duplicate(mine, source, f"0-{len(mine)}", "node-a's mark after SIGKILL")
    b.expect_duplicate(foreign, source, far, "node-b's mark after SIGKILL")
    c.stop()

    assert stored_ids(read_local_store, c.store) == acknowledged


def test_overlaps_answer_with_own_marks_only_across_kill_and_restart(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = two_token_collector(collector, tmp_path)
    acknowledged: Counter[EventId] = Counter()
    a = Sender(c.events_url, "node-a", acknowledged)
    b = Sender(c.events_url, "node-b", acknowledged)
    s2, s3, s4 = (f"shared-source-{i}" for i in (2, 3, 4))

    a1 = events("a1", 5)
    a.expect_new(a1, s2, "0-1000", "first range of s2")
    # node-b overlaps node-a's range: not a 409 telling node-b where node-a is, a new range of its own.
    b1 = events("b1", 5)
    r = b.post(b1, s2, "500-2000")
    assert r.status_code == 200 and "high_water" not in r.json(), (
        f"node-b must neither see nor hit node-a's mark on {s2}: got {r.status_code} {r.text}"
    )
    assert r.json() == {"accepted": 5, "invalid": 0, "duplicate": False}, r.text
    a.expect_conflict(events("a1-retry", 5), s2, "500-2000", 1000, "node-a's own mark still answers 409")
    a.expect_new(events("a2", 3), s2, "1000-1500", "node-b's range must not move node-a's mark to 2000")
    a3, a4 = events("a3", 4), events("a4", 4)
    a.expect_new(a3, s3, "0-1000", "first range of s3")
    a.expect_new(a4, s4, "0-1000", "first range of s4")

    # SIGKILL: the marks come back from the journal.
    c.kill()
    c.start()
    a.expect_duplicate(a1, s2, "0-1000", "node-a's s2 after SIGKILL")
    a.expect_conflict(events("a-late", 2), s2, "1200-1800", 1500, "node-a's s2 mark after SIGKILL")
    a.expect_duplicate(a3, s3, "0-1000", "node-a's s3 after SIGKILL")
    b.expect_duplicate(b1, s2, "500-2000", "node-b's s2 after SIGKILL")
    b.expect_conflict(events("b-late", 2), s2, "1500-2500", 2000, "node-b's s2 mark after SIGKILL")
    b3 = events("b3", 4)
    b.expect_new(b3, s3, "0-1000", "node-a's s3 range after SIGKILL is still new for node-b")

    # Clean restart: the marks come back from the snapshot (and the journal written since).
    c.stop()
    c.start()
    a.expect_duplicate(a1, s2, "0-1000", "node-a's s2 after a clean restart")
    a.expect_duplicate(a3, s3, "0-1000", "node-a's s3 after a clean restart")
    a.expect_duplicate(a4, s4, "0-1000", "node-a's s4 after a clean restart")
    b.expect_duplicate(b1, s2, "500-2000", "node-b's s2 after a clean restart")
    b.expect_duplicate(b3, s3, "0-1000", "node-b's s3 after a clean restart")
    b.expect_new(
        events("b4", 4), s4, "0-1000", "node-a's s4 range after a clean restart is still new for node-b"
    )
    c.stop()

    assert stored_ids(read_local_store, c.store) == acknowledged


# ----------------------------------------------------------------- destinations in isolation


def test_one_failing_destination_blocks_only_requests_routed_to_it(
    collector: Callable[..., Any], tmp_path: Path, wait_for: Any, read_local_store: Any
) -> None:
    good_root, bad_root = tmp_path / "good-store", tmp_path / "bad-store"
    c = collector(
        destinations=[
            {"name": "good", "url": f"file://{good_root}", "topics": ["generic"], "roll": FAST_ROLL},
            {"name": "bad", "url": f"file://{bad_root}", "topics": ["apinode-query"], "roll": FAST_ROLL},
        ]
    )
    healthz = f"{c.base_url}/healthz"
    good_acks: Counter[EventId] = Counter()
    bad_acks: Counter[EventId] = Counter()

    def post(body: bytes) -> httpx.Response:
        return httpx.post(
            c.events_url, content=body, headers={"content-type": "application/x-ndjson"}, timeout=10
        )

    def expect_stored(body: bytes, acks: Counter[EventId], why: str) -> None:
        r = post(body)
        n = len(ids(body))
        assert r.status_code == 200 and r.json() == {"accepted": n, "invalid": 0, "duplicate": False}, (
            f"{why}: expected 200 with {n} accepted, got {r.status_code} {r.text}"
        )
        acks.update(ids(body))

    def expect_refused(body: bytes, why: str) -> None:
        r = post(body)
        assert r.status_code == 503 and r.headers.get("retry-after"), (
            f"{why}: expected 503 with Retry-After, got {r.status_code} {r.headers} {r.text}"
        )

    # `bad` loses its store after start: its root becomes a plain file, so publishing (mkdir of the
    # partition folder) fails, even for root.
    if bad_root.exists():
        shutil.rmtree(bad_root)
    bad_root.write_text("not a directory")
    first_api = events("api-first", 1, "apinode-query")
    expect_stored(first_api, bad_acks, "before any publish failed")  # durable in staging
    degraded = wait_for(
        lambda: (r := httpx.get(healthz, timeout=5)).status_code == 503 and r,
        10,
        "/healthz 503 once `bad` fails",
    )
    assert "bad" in degraded.text, f"/healthz should name the failing destination: {degraded.text}"

    # Only `generic` events: nothing routes to `bad`, so `good` takes them.
    g1 = events("g1", 10)
    expect_stored(g1, good_acks, "a request with no event for the failing destination")
    wait_for(lambda: set(ids(g1)) <= set(stored_ids(read_local_store, good_root)), 10, "g1 published to good")

    # An event for `bad`: refused. A mixed request: refused whole, its generic part included.
    api1 = events("api1", 3, "apinode-query")
    expect_refused(api1, "a request whose events route to the failing destination")
    mixed_generic, mixed_api = events("mixed-generic", 4), events("mixed-api", 2, "apinode-query")
    mixed = mixed_generic + mixed_api
    expect_refused(mixed, "a request with one event for the failing destination")
    # Barrier: g2 goes to the same partition (same event hour) as the mixed request's generic part
    # would have; once g2 is published, that part would be too.
    g2 = events("g2", 5)
    expect_stored(g2, good_acks, "generic events after a refused mixed request")
    wait_for(lambda: set(ids(g2)) <= set(stored_ids(read_local_store, good_root)), 10, "g2 published to good")
    leaked = {i for i in stored_ids(read_local_store, good_root) if i[0].startswith("mixed")}
    assert not leaked, f"the refused mixed request was partly stored: {sorted(leaked)}"
    assert httpx.get(healthz, timeout=5).status_code == 503, "`bad` still has its backlog"

    # Repair `bad`: the backlog is published, /healthz recovers, `bad` takes events again.
    bad_root.unlink()
    bad_root.mkdir()
    wait_for(lambda: httpx.get(healthz, timeout=5).status_code == 200, 10, "/healthz 200 after the repair")
    wait_for(
        lambda: set(ids(first_api)) <= set(stored_ids(read_local_store, bad_root)),
        10,
        "the pending apinode-query file published to bad",
    )
    expect_stored(api1, bad_acks, "the refused apinode-query request, re-sent after the repair")
    r = post(mixed)
    assert r.status_code == 200 and r.json()["accepted"] == 6, r.text
    good_acks.update(ids(mixed_generic))
    bad_acks.update(ids(mixed_api))

    c.stop()
    good, bad = stored_ids(read_local_store, good_root), stored_ids(read_local_store, bad_root)
    assert good == good_acks, (
        f"good store: {sorted(good.items())} != acknowledged {sorted(good_acks.items())}"
    )
    assert bad == bad_acks, f"bad store: {sorted(bad.items())} != acknowledged {sorted(bad_acks.items())}"
    assert max(good.values()) == 1 and max(bad.values()) == 1
    dead = read_local_store(c.dead_letter) if c.dead_letter.is_dir() else {}
    assert not any(dead.values()), f"nothing here is invalid or unrouted: {dead}"
