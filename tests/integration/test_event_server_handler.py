"""EventServerHandler against a real ``logbridge collect`` process (DESIGN.md §4).

Every test starts the collector as a subprocess on a free loopback port with its store under
``tmp_path`` and reads back what it published. Nothing is mocked: the collector being away is
the process being stopped (or never started), and a crash of the sending process is a spool
left behind whose acknowledged offset is behind what the collector stored.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbridge import audit
from logbridge.collector.local import free_port
from logbridge.handlers import EventServerHandler

from .collectorproc import Collector, collector_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Files are published after roll.max_age: a short one keeps the tests quick.
DESTINATION = {
    "name": "store",
    "type": "filesystem",
    "topics": "all",
    "routing_keys": "all",
    "path": "{topic}/{routing_key}",
    "roll": {"max_bytes": "64MiB", "max_age": "1s"},
}

FAST = {"linger": "20ms", "backoff_initial": "50ms", "backoff_max": "300ms", "close_timeout": "5s"}


def start_collector(collector: Callable[..., Any], tmp_path: Path, **overrides: Any) -> Any:
    home_store = tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}"
    destination = {**DESTINATION, "url": f"file://{home_store}"}
    return collector(destinations=[destination], **overrides)


def stored(
    c: Any, read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]]
) -> dict[str, list[dict[str, Any]]]:
    if not c.store.exists():
        return {}
    return read_local_store(c.store)


def all_lines(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [line for lines in files.values() for line in lines]


def wait_stored(
    c: Any,
    read_local_store: Callable[..., Any],
    wait_for: Callable[..., Any],
    count: int,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Waits until ``count`` lines are published, then a little longer to catch extras."""
    wait_for(lambda: len(all_lines(stored(c, read_local_store))) >= count, timeout, f"{count} stored events")
    time.sleep(1.5)  # one more roll period: anything stored twice would be published by now
    return all_lines(stored(c, read_local_store))


def seqs(lines: list[dict[str, Any]]) -> Counter[int]:
    return Counter(line["clientEvent"]["seq"] for line in lines)


# ---------------------------------------------------------------------------------- delivery


def test_events_reach_the_store_once_with_their_envelope(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    handler = EventServerHandler(c.events_url, node="node-a", spool_dir=tmp_path / "spool", **FAST)
    audit_logger(handler)
    with audit.request("/api/projects/get-summary", user="admin"):
        for seq in range(300):
            audit.emit("generic", "project-get-summary", routing_key="svc" if seq % 3 == 0 else None, seq=seq)
    audit.emit("authfail", "login-failed", seq=300, authUser="mallory")
    assert handler.wait_delivered(20)

    lines = wait_stored(c, read_local_store, wait_for, 301)
    assert seqs(lines) == Counter(range(301))
    by_seq = {line["clientEvent"]["seq"]: line for line in lines}
    first = by_seq[0]
    assert first["topic"] == "generic" and first["routingKey"] == "svc"
    assert first["clientEvent"] == {"msgType": "project-get-summary", "seq": 0, "routingKey": "svc"}
    assert first["envelope"]["logger"] == "dku.audit.generic"
    assert first["envelope"]["severity"] == "INFO"
    assert first["envelope"]["mdc"] == {"apiCall": "/api/projects/get-summary", "user": "admin"}
    assert isinstance(first["envelope"]["callTime"], int)
    assert "routingKey" not in by_seq[1]
    assert by_seq[300]["topic"] == "authfail" and "callTime" not in by_seq[300]["envelope"]
    files = stored(c, read_local_store)
    assert {path.split("/")[0] for path in files} == {"generic", "authfail"}
    assert handler.stats.sent_events == 301 and handler.stats.dropped_spool_full == 0


def test_collector_down_for_a_while_then_back_every_event_once_and_the_caller_never_waits(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    c.stop()  # the port stays reserved in the config: the collector comes back on it later
    handler = EventServerHandler(c.events_url, spool_dir=tmp_path / "spool", **FAST)
    audit_logger(handler)

    worst = 0.0
    for seq in range(2000):
        t0 = time.perf_counter()
        audit.emit("generic", "dataset-read-data", seq=seq)
        worst = max(worst, time.perf_counter() - t0)
        if seq % 500 == 499:
            time.sleep(0.2)  # let the sender fail and back off a few times while events arrive
    # Blocking on the network would cost the handler's connect/back-off times (seconds); the
    # bound leaves room for a loaded 2-core CI machine. Per-call cost is bench/node_logging.py's job.
    assert worst < 0.5, f"an emit took {worst * 1000:.1f} ms while the collector was down"
    wait_for(lambda: handler.stats.queued == 2000, 10, "everything spooled")
    assert handler.stats.retries >= 2 and handler.stats.sent_events == 0

    c.start()
    for seq in range(2000, 2500):  # new events keep coming while the spool drains
        audit.emit("generic", "dataset-read-data", seq=seq)
    assert handler.wait_delivered(30), handler.stats

    lines = wait_stored(c, read_local_store, wait_for, 2500)
    assert seqs(lines) == Counter(range(2500)), "every event exactly once"
    assert [line["clientEvent"]["seq"] for line in sorted(lines, key=lambda x: x["serverTimestamp"])][:1] == [
        0
    ]
    assert handler.stats.dropped_queue_full == handler.stats.dropped_spool_full == 0


def test_a_crash_between_store_and_ack_is_stored_once(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    """The collector stored the batches but this process died before recording the ack:
    the next process resends the same ranges and the collector keeps one copy (200 duplicate,
    or 409 and a resume from its high-water mark when the new batch is cut differently)."""
    c = start_collector(collector, tmp_path)
    spool = tmp_path / "spool"
    first = EventServerHandler(c.events_url, spool_dir=spool, batch_max_events=100, **FAST)
    audit_logger(first)
    for seq in range(250):
        audit.emit("generic", "x", seq=seq)
    assert first.wait_delivered(20)
    first.close()
    logging.getLogger("dku.audit").removeHandler(first)
    assert first.stats.sent_batches == 3  # 0-100, 100-200, 200-250 lines
    (slot,) = [p for p in spool.iterdir() if p.is_dir()]
    (slot / "acked").write_text("0")  # "crashed" before the acks were written

    second = EventServerHandler(c.events_url, spool_dir=spool, batch_max_events=1000, **FAST)
    audit_logger(second)
    for seq in range(250, 300):
        audit.emit("generic", "x", seq=seq)
    assert second.wait_delivered(20), second.stats

    lines = wait_stored(c, read_local_store, wait_for, 300)
    assert seqs(lines) == Counter(range(300))
    # One batch 0-300 overlaps the stored 0-250 partly: a 409, then the rest from 250.
    assert second.stats.sent_events == 50


def test_a_killed_process_leaves_a_spool_that_the_next_one_drains(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any
) -> None:
    c = start_collector(collector, tmp_path)
    c.stop()
    spool = tmp_path / "spool"
    script = f"""
import logging, os, signal, sys
from logbridge import audit
from logbridge.handlers import EventServerHandler
h = EventServerHandler({c.events_url!r}, spool_dir={str(spool)!r}, backoff_max="200ms")
logging.getLogger("dku.audit").addHandler(h)
logging.getLogger("dku.audit").setLevel("INFO")
for seq in range(500):
    audit.emit("generic", "x", seq=seq)
while h.stats.queued < 500:
    pass
os.kill(os.getpid(), signal.SIGKILL)
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == -9, done.stderr.decode()

    c.start()
    drainer = EventServerHandler(c.events_url, spool_dir=spool, **FAST)
    try:
        assert drainer.wait_delivered(20), drainer.stats
    finally:
        drainer.close()
    lines = wait_stored(c, read_local_store, wait_for, 500)
    assert seqs(lines) == Counter(range(500))


def test_a_forked_worker_gets_threads_and_a_spool_of_its_own(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any
) -> None:
    """gunicorn --preload style: logging is configured before the fork."""
    c = start_collector(collector, tmp_path)
    spool = tmp_path / "spool"
    script = f"""
import logging, os
from logbridge import audit
from logbridge.handlers import EventServerHandler
h = EventServerHandler({c.events_url!r}, spool_dir={str(spool)!r}, linger="20ms")
logging.getLogger("dku.audit").addHandler(h)
logging.getLogger("dku.audit").setLevel("INFO")
for seq in range(100):
    audit.emit("generic", "x", seq=seq)
pid = os.fork()
if pid == 0:
    for seq in range(1000, 1100):
        audit.emit("generic", "x", seq=seq)
    ok = h.wait_delivered(20)
    h.close()
    os._exit(0 if ok else 3)
for seq in range(100, 200):
    audit.emit("generic", "x", seq=seq)
ok = h.wait_delivered(20)
_, status = os.waitpid(pid, 0)
h.close()
raise SystemExit(0 if ok and status == 0 else 4)
"""
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    lines = wait_stored(c, read_local_store, wait_for, 300)
    assert seqs(lines) == Counter([*range(200), *range(1000, 1100)])
    assert sorted(p.name for p in spool.iterdir()) == ["0", "1"]  # parent and child: two streams


def test_spool_segments_roll_and_go_once_delivered(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    spool = tmp_path / "spool"
    handler = EventServerHandler(
        c.events_url, spool_dir=spool, spool_max_bytes="256KiB", **FAST
    )  # 64KiB segments
    audit_logger(handler)
    for seq in range(2000):  # ~400 KB in all
        audit.emit("generic", "x", seq=seq, padding="p" * 100)
        if seq % 200 == 199:
            assert handler.wait_delivered(10)
    assert handler.wait_delivered(10)
    (slot,) = [p for p in spool.iterdir() if p.is_dir()]
    segments = sorted(slot.glob("*.ndjson"))
    acked = int((slot / "acked").read_text())
    assert len(segments) == 1 and int(segments[0].stem) > 0
    assert acked == int(segments[0].stem) + segments[0].stat().st_size
    assert seqs(wait_stored(c, read_local_store, wait_for, 2000)) == Counter(range(2000))


def test_a_line_cut_short_by_a_crash_is_not_sent(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    c.stop()
    spool = tmp_path / "spool"
    writer = EventServerHandler(c.events_url, spool_dir=spool, **{**FAST, "close_timeout": "100ms"})
    audit_logger(writer)
    for seq in range(10):
        audit.emit("generic", "x", seq=seq)
    wait_for(lambda: writer.stats.queued == 10, 10, "10 events spooled")
    writer.close()
    (slot,) = [p for p in spool.iterdir() if p.is_dir()]
    (segment,) = slot.glob("*.ndjson")
    with segment.open("ab") as f:
        f.write(b'{"severity":"INFO","logger":"dku.audit.generic","mess')  # the crash, mid-write

    c.start()
    reader = EventServerHandler(c.events_url, spool_dir=spool, **FAST)
    assert segment.read_bytes().endswith(b"}\n"), "the cut line is dropped when the spool is opened"
    audit_logger(reader)
    audit.emit("generic", "x", seq=10)
    assert reader.wait_delivered(10), reader.stats
    assert seqs(wait_stored(c, read_local_store, wait_for, 11)) == Counter(range(11))
    dead = [p for p in c.dead_letter.rglob("*") if p.is_file()] if c.dead_letter.exists() else []
    assert dead == [], "the cut line was sent and refused"


def test_on_the_root_logger_it_does_not_send_its_own_logging(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any
) -> None:
    """httpx logs each request at INFO on the sender thread; sent back to the collector, that
    would feed itself forever. And logging.shutdown's lock must not stall close()."""
    c = start_collector(collector, tmp_path)
    root = logging.getLogger()
    saved_level = root.level
    handler = EventServerHandler(c.events_url, default_topic="app", **FAST)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        for seq in range(20):
            audit.emit("generic", "x", seq=seq)
            time.sleep(0.01)  # several requests, so several httpx log lines
        logging.getLogger("app").info("a plain application line")
        assert handler.wait_delivered(10)
        handler.acquire()  # as logging.shutdown() does around flush() and close()
        try:
            t0 = time.monotonic()
            handler.flush()
            handler.close()
            assert time.monotonic() - t0 < 2
        finally:
            handler.release()
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
    lines = wait_stored(c, read_local_store, wait_for, 21)
    assert len(lines) == 21 and seqs([x for x in lines if x["topic"] == "generic"]) == Counter(range(20))
    (plain,) = [x for x in lines if x["topic"] == "app"]
    assert plain["clientEvent"] == {"message": "a plain application line"}


def events_posts_stored(c: Any) -> int:
    """``POST /events`` answered 200, from the collector's own count."""
    text = httpx.get(c.base_url + "/metrics", timeout=5).text
    found = re.search(r'^logbridge_requests_total\{path="/events",status="200"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def test_after_a_flush_records_are_batched_again(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    # Only a flush or a full batch of 50 sends before the test is over.
    handler = EventServerHandler(c.events_url, **{**FAST, "linger": "60s"}, batch_max_events=50)
    audit_logger(handler)
    audit.emit("generic", "x", seq=0)
    handler.flush()
    wait_for(lambda: events_posts_stored(c) == 1, 10, "the flushed event's POST")
    for seq in range(1, 51):  # each spooled before the next, as from a slow caller
        audit.emit("generic", "x", seq=seq)
        wait_for(lambda n=seq: handler.stats.queued == n + 1, 10, f"event {seq} spooled")
    wait_for(lambda: handler.stats.sent_events == 51, 10, "the 50 events after the flush")
    assert events_posts_stored(c) == 2, "one POST for the flushed event, one for the 50 after it"
    assert seqs(wait_stored(c, read_local_store, wait_for, 51)) == Counter(range(51))


# ---------------------------------------------------------------------------------- failures


def test_a_wrong_token_is_retried_not_dead_lettered(
    collector: Any, tmp_path: Path, audit_logger: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 is an operator's to fix (the token): the lines wait in the spool meanwhile, as the
    shipper's do, instead of filling the dead letter with the whole trail."""
    c = start_collector(
        collector,
        tmp_path,
        env={"LB_TEST_TOKEN": "right-token"},
        auth={"tokens": [{"name": "node-a", "token_env": "LB_TEST_TOKEN"}]},
    )
    spool = tmp_path / "spool"
    handler = EventServerHandler(c.events_url, "wrong-token", spool_dir=spool, **FAST)
    audit_logger(handler)
    with caplog.at_level(logging.WARNING, logger="logbridge.handlers"):
        for seq in range(10):
            audit.emit("generic", "x", seq=seq)
        assert not handler.wait_delivered(1)
    assert handler.stats.retries >= 1 and handler.stats.dead_lettered == 0
    assert "HTTP 401" in caplog.text and "unavailable" in caplog.text
    handler.close()
    (slot,) = [p for p in spool.iterdir() if p.is_dir()]
    assert not (slot / "dead-letter").exists()


def test_a_batch_too_large_is_split_and_only_a_line_too_large_is_dead_lettered(
    collector: Any,
    tmp_path: Path,
    read_local_store: Any,
    wait_for: Any,
    audit_logger: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = start_collector(collector, tmp_path, limits={"max_body_bytes": "8KiB"})
    spool = tmp_path / "spool"
    # No compression: the collector's limit is on what it reads, so the sizes here are exact.
    handler = EventServerHandler(c.events_url, spool_dir=spool, compress=False, **{**FAST, "linger": "60s"})
    audit_logger(handler)
    with caplog.at_level(logging.ERROR, logger="logbridge.handlers"):
        for seq in range(40):  # ~40 x 400 bytes: twice the limit in one batch
            audit.emit("generic", "x", seq=seq, pad="p" * (10_000 if seq == 17 else 300))
        assert handler.wait_delivered(15), handler.stats
    assert handler.stats.dead_lettered == 1 and handler.stats.sent_events == 39
    assert seqs(wait_stored(c, read_local_store, wait_for, 39)) == Counter(set(range(40)) - {17})
    (slot,) = [p for p in spool.iterdir() if p.is_dir()]
    (kept,) = (slot / "dead-letter").glob("*.ndjson")
    assert [orjson.loads(line)["message"]["seq"] for line in kept.read_bytes().splitlines()] == [17]
    note = orjson.loads(kept.with_suffix(".json").read_bytes())
    assert note["status"] == 413 and note["lines"] == 1 and "HTTP 413" in note["reason"]
    assert "refused 1 audit events" in caplog.text


def test_right_token_is_accepted(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("right-token\n")
    c = start_collector(
        collector,
        tmp_path,
        env={"LB_TEST_TOKEN": "right-token"},
        auth={"tokens": [{"name": "node-a", "token_env": "LB_TEST_TOKEN"}]},
    )
    handler = EventServerHandler(c.events_url, token_file=str(token_file), **FAST)
    audit_logger(handler)
    audit.emit("generic", "x", seq=1)
    assert handler.wait_delivered(10)
    assert seqs(wait_stored(c, read_local_store, wait_for, 1)) == Counter([1])


def test_a_full_spool_counts_and_logs_what_it_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, restore_logging: None
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/events"
    handler = EventServerHandler(nobody, spool_dir=tmp_path / "spool", spool_max_bytes=20_000, **FAST)
    logger = logging.getLogger("dku.audit.spoolfull")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.WARNING, logger="logbridge.handlers"):
            for seq in range(1000):
                audit.emit("spoolfull", "x", seq=seq)
            wait_for_stats = time.monotonic() + 10
            while handler.stats.queued + handler.stats.dropped_spool_full < 1000:
                assert time.monotonic() < wait_for_stats, handler.stats
                time.sleep(0.01)
            handler.close(timeout=1)
    finally:
        logger.removeHandler(handler)
    assert 0 < handler.stats.queued < 1000
    assert handler.stats.dropped_spool_full == 1000 - handler.stats.queued
    assert "audit events dropped" in caplog.text


def test_close_with_the_collector_down_returns_within_its_timeout(
    tmp_path: Path, restore_logging: None
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/events"
    handler = EventServerHandler(nobody, close_timeout="1s", backoff_initial="50ms")
    logger = logging.getLogger("dku.audit.closing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for seq in range(100):
            audit.emit("closing", "x", seq=seq)
        t0 = time.monotonic()
        handler.close()
        assert time.monotonic() - t0 < 3
    finally:
        logger.removeHandler(handler)
    assert handler.stats.unsent_at_close == 100
    audit.emit("closing", "after-close")  # a closed handler ignores records, it does not raise


# ------------------------------------------------------------------------------ DSS options


def test_routing_key_modes_and_filters(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    static = EventServerHandler(
        c.events_url, routing_key_mode="static", routing_key="forced", topics=["generic"], **FAST
    )
    if_missing = EventServerHandler(
        c.events_url,
        routing_key_mode="static_if_missing",
        routing_key="fallback",
        topics="apinode-query",
        routing_keys=["svc-a", "fallback"],
        **FAST,
    )
    audit_logger(static)
    audit_logger(if_missing)
    audit.emit("generic", "x", routing_key="own", seq=1)  # static → forced
    audit.emit("authfail", "x", seq=2)  # neither handler takes authfail
    audit.emit("apinode-query", "q", routing_key="svc-a", seq=3)  # kept as svc-a
    audit.emit("apinode-query", "q", seq=4)  # missing → fallback
    audit.emit("apinode-query", "q", routing_key="svc-b", seq=5)  # not in routing_keys
    assert static.wait_delivered(10) and if_missing.wait_delivered(10)
    lines = wait_stored(c, read_local_store, wait_for, 3)
    assert {line["clientEvent"]["seq"]: line["routingKey"] for line in lines} == {
        1: "forced",
        3: "svc-a",
        4: "fallback",
    }
    assert static.stats.filtered == 4 and if_missing.stats.filtered == 3


def test_bare_events_with_the_topic_in_a_header(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any
) -> None:
    c = start_collector(collector, tmp_path)
    handler = EventServerHandler(c.events_url, envelope="bare", **FAST)
    audit_logger(handler)
    for seq in range(6):
        audit.emit("generic" if seq < 3 else "authfail", "x", seq=seq)
    assert handler.wait_delivered(10)
    lines = wait_stored(c, read_local_store, wait_for, 6)
    assert {line["clientEvent"]["seq"]: line["topic"] for line in lines} == {
        0: "generic",
        1: "generic",
        2: "generic",
        3: "authfail",
        4: "authfail",
        5: "authfail",
    }
    assert all("envelope" not in line for line in lines)
    assert handler.stats.sent_batches >= 2  # one topic per request


def test_configured_from_dict_config(
    collector: Any, tmp_path: Path, read_local_store: Any, wait_for: Any, restore_logging: None
) -> None:
    c = start_collector(collector, tmp_path)
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "events": {
                    "class": "logbridge.handlers.EventServerHandler",
                    "url": c.events_url,
                    "spool_dir": str(tmp_path / "spool"),
                    "batch_max_bytes": "64KiB",
                    "linger": "10ms",
                    "level": "INFO",
                }
            },
            "loggers": {
                "dku.audit.dictconfig": {"handlers": ["events"], "level": "INFO", "propagate": False}
            },
        }
    )
    logger = logging.getLogger("dku.audit.dictconfig")
    (handler,) = logger.handlers
    try:
        audit.emit("dictconfig", "x", seq=7)
        assert isinstance(handler, EventServerHandler) and handler.wait_delivered(10)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert seqs(wait_stored(c, read_local_store, wait_for, 1)) == Counter([7])


class HttpsCollector(Collector):
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def test_mutual_tls_with_a_private_ca(
    tmp_path: Path, read_local_store: Any, wait_for: Any, audit_logger: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1"), ca.issue_cert("node-a.logbridge.test")
    paths = {
        name: tmp_path / name for name in ("server.pem", "server.key", "ca.pem", "client.pem", "client.key")
    }
    server.cert_chain_pems[0].write_to_path(str(paths["server.pem"]))
    server.private_key_pem.write_to_path(str(paths["server.key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client.pem"]))
    client.private_key_pem.write_to_path(str(paths["client.key"]))
    ca.cert_pem.write_to_path(str(paths["ca.pem"]))
    home = tmp_path / "collector"
    home.mkdir()
    tls = {
        "cert": str(paths["server.pem"]),
        "key": str(paths["server.key"]),
        "client_ca": str(paths["ca.pem"]),
    }
    config = collector_config(home, free_port(), tls=tls)
    config["destinations"] = [{**DESTINATION, "url": f"file://{home / 'store'}"}]
    # The shared fixture's health check speaks plain httpx: give it the CA and a client cert.
    monkeypatch.setenv("SSL_CERT_FILE", str(paths["ca.pem"]))
    c = HttpsCollector(home, config, dict(os.environ))
    with contextlib.suppress(AssertionError):
        c.start(timeout=3)  # healthz needs a client certificate too; the port is up regardless
    try:
        handler = EventServerHandler(
            c.events_url,
            ca_file=str(paths["ca.pem"]),
            client_cert=str(paths["client.pem"]),
            client_key=str(paths["client.key"]),
            **FAST,
        )
        audit_logger(handler)
        audit.emit("generic", "x", seq=1)
        assert handler.wait_delivered(15), handler.stats
        assert seqs(wait_stored(c, read_local_store, wait_for, 1)) == Counter([1])

        no_client_cert = EventServerHandler(c.events_url, ca_file=str(paths["ca.pem"]), **FAST)
        audit_logger(no_client_cert)
        audit.emit("generic", "x", seq=2)
        assert not no_client_cert.wait_delivered(1)
        assert no_client_cert.stats.retries >= 1 and no_client_cert.stats.sent_events == 0
    finally:
        for h in logging.getLogger("dku.audit").handlers[:]:
            h.close()  # before the collector stops: no client left retrying against it
        c.stop()


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "collector:8765"}, "url: expected http"),
        ({"routing_key_mode": "static"}, "routing_key: required with routing_key_mode static"),
        ({"routing_key_mode": "sometimes", "routing_key": "k"}, "routing_key_mode: expected one of"),
        ({"batch_max_bytes": "1 parsec"}, "expected a size"),
        ({"linger": "soon"}, "expected a duration"),
        ({"topics": []}, "topics: expected 'all' or a non-empty list"),
        ({"token_env": "LB_TEST_UNSET_TOKEN"}, "LB_TEST_UNSET_TOKEN is not set"),
        ({"url": "https://127.0.0.1:1/events", "ca_file": "/nonexistent/ca.pem"}, "cannot load ca_file"),
    ],
)
def test_a_bad_setting_is_one_clear_config_error(kwargs: dict[str, Any], message: str) -> None:
    from logbridge.errors import ConfigError

    kwargs = {"url": "http://127.0.0.1:1/events", **kwargs}
    with pytest.raises(ConfigError, match=message):
        EventServerHandler(**kwargs)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    from email.utils import formatdate

    from logbridge.retry import retry_after as _retry_after

    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    in_ten = _retry_after(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8 <= in_ten <= 10
