"""EventServerHandler: events its full spool had to drop are never dropped silently. The count
reaches the store as a ``logbridge-events-dropped`` event (topic ``generic-failure``) once the
collector — a real ``logbridge collect`` process, stopped for the outage — is back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from logbridge import audit
from logbridge.handlers import EventServerHandler
from logbridge.handlers.spool import DROP_MSG_TYPE, DROP_TOPIC

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FAST = {"linger": "20ms", "backoff_initial": "50ms", "backoff_max": "300ms", "close_timeout": "5s"}


def test_what_a_full_spool_dropped_is_counted_in_the_store(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = collector()
    c.stop()  # the outage
    handler = EventServerHandler(c.events_url, spool_dir=tmp_path / "spool", spool_max_bytes=20_000, **FAST)
    audit_logger(handler)
    for seq in range(1000):
        audit.emit("generic", "x", seq=seq)
    stats = handler.stats
    wait_for(lambda: stats.queued + stats.dropped_spool_full >= 1000, 10, "every event spooled or dropped")
    assert 0 < stats.queued < 1000 and stats.drop_markers == 0  # no room for the marker either

    c.start()
    wait_for(lambda: stats.drop_markers >= 1, 30, "the drop marker spooled once acks made room")
    assert handler.wait_delivered(30)
    c.stop()  # a clean stop publishes what is staged
    stored = [rec for recs in read_local_store(c.store).values() for rec in recs]
    markers = [r for r in stored if r["clientEvent"].get("msgType") == DROP_MSG_TYPE]
    assert markers and {r["topic"] for r in markers} == {DROP_TOPIC}
    assert sum(r["clientEvent"]["events"] for r in markers) == stats.dropped_spool_full
    assert markers[0]["clientEvent"]["spoolMaxBytes"] == 20_000
    seqs = Counter(r["clientEvent"]["seq"] for r in stored if "seq" in r["clientEvent"])
    assert len(seqs) == stats.queued and set(seqs.values()) == {1}
    # The kept events are the first ones (the spool takes what fits, in order): the gap is the end.
    assert sorted(seqs) == list(range(stats.queued))
