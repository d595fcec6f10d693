"""``logbridge consume`` writers as real processes against a real nats-server, fed by a real
collector with a ``nats`` destination. Every test counts every event by its ``seq``.

- The store a writer makes is the store the collector's own filesystem destination makes for
  the same requests (same partitions, same lines), with the same partition keys and with others
  (re-rendered from the lines); a message that is not the collector's format is dead-lettered.
- Two writers share the consumer: every event exactly once, with one of them SIGKILLed 5 times
  mid-stream.
- A writer killed after staging and before acking (the test hook): the redelivery to the other
  writer is not written; the killed one's restart acks and publishes it. Never restarted, its
  claims show in ``--status`` and ``--release`` lets the other write them; a later restart of
  the released writer drops its staged copy.
- A nats-server restart mid-stream: writers reconnect, nothing lost.
- Configuration errors: one line, exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import NatsServer

from .collectorproc import Collector, write_config
from .writerproc import Writer, consumer_drained, seqs_in, store_lines, writer_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

pytest.importorskip("nats")

BATCH = 500


def payload(start: int, n: int) -> bytes:
    """Log4j envelopes numbered ``start``…: three topics, a routing key, two event hours."""
    lines = []
    for seq in range(start, start + n):
        topic = ("generic", "authfail", "apinode-query")[seq % 3]
        message: dict[str, Any] = {"msgType": "m", "seq": seq}
        if topic == "apinode-query":
            message["routingKey"] = f"svc-{seq % 2}"
        stamp = f"2020-02-19T{10 + seq % 2}:05:02.441+0100"
        lines.append(
            orjson.dumps(
                {"severity": "INFO", "logger": f"dku.audit.{topic}", "message": message, "timestamp": stamp}
            )
        )
    return b"\n".join(lines) + b"\n"


def send(url: str, total: int, *, source: str = "consume-test", workers: int = 4, pace: float = 0.0) -> None:
    """Post ``total`` events in batches with ranges, retrying each until a 200 (as the shipper).
    Each of ``workers`` senders is one source posting its own batches in order (a source's
    ranges only grow: a range below the source's mark would be answered as a duplicate)."""

    def sender(k: int) -> None:
        with httpx.Client(timeout=30.0) as client:
            for i in range(k, total // BATCH, workers):
                body = payload(i * BATCH, BATCH)
                while True:
                    try:
                        r = client.post(
                            url,
                            content=body,
                            headers={
                                "Content-Type": "application/x-ndjson",
                                "X-Logbridge-Source": f"{source}/{k}",
                                "X-Logbridge-Range": f"{i * 10_000_000}-{i * 10_000_000 + len(body)}",
                            },
                        )
                    except httpx.TransportError:
                        continue
                    if r.status_code == 200:
                        assert not r.json().get("duplicate"), r.text
                        break
                    assert r.status_code == 503, r.text
                if pace:
                    threading.Event().wait(pace)  # spreads the load over time (not a wait for anything)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(sender, range(workers)))


@pytest.fixture
def bus(collector: Callable[..., Collector], nats_server: NatsServer) -> Collector:
    """A collector publishing to the stream AUDIT of ``nats_server``."""
    return collector(
        destinations=[{"name": "bus", "type": "nats", "servers": [nats_server.url], "stream": "AUDIT"}]
    )


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[Callable[..., Writer]]:
    made: list[Writer] = []

    def make(name: str, server: NatsServer, store: Path, **overrides: Any) -> Writer:
        w = Writer(tmp_path / name, writer_config(tmp_path / name, server.url, store, **overrides))
        made.append(w)
        return w

    yield make
    for w in made:
        if w.running:
            w.kill()


def assert_exactly_once(store: Path, total: int) -> None:
    counts = Counter(seqs_in(store))
    missing = total - len(counts)
    twice = {s: n for s, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} events stored more than once, e.g. {list(twice.items())[:5]}"
    assert missing == 0 and set(counts) == set(range(total)), f"{missing} events missing"


def published_all(store: Path, total: int) -> Callable[[], bool]:
    return lambda: len(seqs_in(store)) >= total


# ------------------------------------------------------------------------------ equivalence


def test_a_writer_stores_what_the_collectors_filesystem_destination_stores(
    collector: Callable[..., Collector], nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    """Same requests, two paths: collector → filesystem, and collector → NATS → writer. With
    the same partition keys (the header's partition) and with day partitions in another time
    zone (re-rendered from each line): the same lines in the same partitions."""
    direct, direct_day = tmp_path / "direct", tmp_path / "direct-day"
    day = {"partitioning": "day", "timezone": "America/New_York"}
    c = collector(
        destinations=[
            {"name": "bus", "type": "nats", "servers": [nats_server.url], "stream": "AUDIT"},
            {"name": "direct", "url": f"file://{direct}", "roll": {"max_age": "1s"}},
            {"name": "day", "url": f"file://{direct_day}", "roll": {"max_age": "1s"}, **day},
        ]
    )
    total = 6 * BATCH
    send(c.events_url, total)
    # A request without a time on some lines (receive-time partitions) and a bare event.
    extra = b'{"topic": "generic", "msg": "no time", "seq": 100000}\n{"topic": "t2", "seq": 100001, "timestamp": 1582124702000}\n'
    assert (
        httpx.post(c.events_url, content=extra, headers={"Content-Type": "application/x-ndjson"}).status_code
        == 200
    )
    c.stop()
    via, via_day = tmp_path / "via", tmp_path / "via-day"
    w = writers(
        "w1",
        nats_server,
        via,
        destinations=[
            {"name": "store", "url": f"file://{via}", "roll": {"max_age": "1s"}},
            {"name": "day", "url": f"file://{via_day}", "roll": {"max_age": "1s"}, **day},
        ],
    )
    w.start()
    wait_for(lambda: consumer_drained(nats_server, w), 60, "the writer to drain the stream")
    w.stop()
    for expected, got in ((direct, via), (direct_day, via_day)):
        want = {k: sorted(v) for k, v in store_lines(expected).items()}
        have = {k: sorted(v) for k, v in store_lines(got).items()}
        assert have.keys() == want.keys()
        assert have == want
        assert sum(map(len, have.values())) == total + 2
    assert not list((tmp_path / "w1" / "state" / "staging").rglob("*.ndjson")), (
        "staging left after a clean stop"
    )


def test_a_message_that_is_not_the_collectors_format_is_dead_lettered(
    bus: Collector, nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    async def publish(nc: Any) -> None:
        js = nc.jetstream(timeout=5.0)
        await js.publish(
            "audit.x.y",
            b"not json\n",
            headers={
                "Logbridge-Partition": "x/y/2020/01/01/00",
                "Logbridge-Topic": "x",
                "Logbridge-Events": "1",
            },
        )
        await js.publish("audit.x.y", b'{"clientEvent": {}, "topic": "x"}\n')  # no headers

    nats_server.run(publish, quiet=False)
    store = tmp_path / "store"
    w = writers("w1", nats_server, store)
    w.start()
    wait_for(lambda: consumer_drained(nats_server), 30, "the writer to ack both")
    w.stop()
    records = [
        orjson.loads(line)
        for lines in store_lines(tmp_path / "w1" / "dead-letter").values()
        for line in lines
    ]
    assert sorted(r["reason"] for r in records) == ["bad-line", "missing-headers"]
    assert {r["raw"] for r in records} == {"not json\n", '{"clientEvent": {}, "topic": "x"}\n'}
    assert not store_lines(store)


# ------------------------------------------------------------------------------ two writers


def test_two_writers_store_every_event_once_while_one_is_sigkilled_five_times(
    bus: Collector, nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    store = tmp_path / "store"
    total = 60_000
    w1, w2 = writers("w1", nats_server, store), writers("w2", nats_server, store)
    w1.start()
    w2.start()
    # Paced over ~10 s so that every kill lands mid-stream.
    sender = threading.Thread(target=send, args=(bus.events_url, total), kwargs={"pace": 0.15})
    sender.start()
    for kill in range(5):
        wait_for(lambda: w1.started, 60, f"writer 1 to start before kill {kill + 1}")
        before = len(seqs_in(store))
        wait_for(
            lambda b=before: len(seqs_in(store)) > b or not sender.is_alive(),
            60,
            f"progress before kill {kill + 1}",
        )
        assert w1.running, w1.log_tail()
        w1.kill()
        w1.start()
    sender.join()
    wait_for(published_all(store, total), 90, "every event in the store")
    wait_for(lambda: consumer_drained(nats_server), 30, "the consumer to be drained")
    w1.stop()
    w2.stop()
    assert_exactly_once(store, total)


def test_a_writer_killed_before_its_acks_is_not_doubled_by_the_other(
    bus: Collector, nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    """Writer 1 stages and journals a batch and dies before acking (test hook). The redelivery
    goes to writer 2, which sees writer 1's claims and leaves them; writer 1's restart acks and
    publishes them: exactly once."""
    store = tmp_path / "store"
    total = 4 * BATCH
    w1, w2 = writers("w1", nats_server, store), writers("w2", nats_server, store)
    send(bus.events_url, total)
    w1.start(env={"LOGBRIDGE_TEST_KILL_BEFORE_ACK": "1"})
    assert w1.process is not None
    w1.process.wait(timeout=30)
    w2.start()
    # Writer 2 drains everything writer 1 did not claim, and no more: ack_wait (3s) passes,
    # writer 1's messages come to writer 2, which naks them.
    held = status(w2)["writers"]
    held_by_w1 = next(w["claims"] for w in held if w["writer_id"] == "w1")
    assert held_by_w1 > 0
    wait_for(lambda: _redelivered(nats_server), 30, "writer 1's messages delivered to writer 2")
    assert len(seqs_in(store)) < total  # writer 2 leaves writer 1's messages alone
    w1.start()
    wait_for(published_all(store, total), 60, "every event in the store")
    wait_for(lambda: consumer_drained(nats_server), 30, "the consumer to be drained")
    w1.stop()
    w2.stop()
    assert_exactly_once(store, total)


def test_a_dead_writers_claims_show_in_status_and_release_lets_another_write_them(
    bus: Collector, nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    store = tmp_path / "store"
    total = 4 * BATCH
    w1, w2 = writers("w1", nats_server, store), writers("w2", nats_server, store)
    send(bus.events_url, total)
    w1.start(env={"LOGBRIDGE_TEST_KILL_BEFORE_ACK": "1"})
    assert w1.process is not None
    w1.process.wait(timeout=30)
    w2.start()
    wait_for(lambda: _redelivered(nats_server), 30, "writer 1's messages delivered to writer 2")
    report = status(w2)
    w1_row = next(w for w in report["writers"] if w["writer_id"] == "w1")
    assert not w1_row["running"] and w1_row["claims"] > 0
    text = w2.command("--status")
    assert text.returncode == 0 and "w1: NOT RUNNING" in text.stdout and "--release w1" in text.stdout
    assert len(seqs_in(store)) < total  # writer 2 leaves writer 1's messages alone
    released = w2.command("--release", "w1")
    assert released.returncode == 0, released.stderr
    assert f"released {w1_row['claims']} claims" in released.stdout
    wait_for(published_all(store, total), 60, "writer 2 to write the released messages")
    wait_for(lambda: consumer_drained(nats_server), 30, "the consumer to be drained")
    # Writer 1 comes back after all: its staged copy of the released messages is dropped.
    w1.start()
    wait_for(lambda: "writer started" in w1.log_tail(200), 30, "writer 1 to start")
    w1.stop()
    w2.stop()
    assert_exactly_once(store, total)


def test_release_is_refused_while_the_writer_runs(
    nats_server: NatsServer, bus: Collector, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    w1 = writers("w1", nats_server, tmp_path / "store")
    w1.start()
    wait_for(
        lambda: any(r["writer_id"] == "w1" and r["running"] for r in status(w1)["writers"]), 30, "a heartbeat"
    )
    refused = w1.command("--release", "w1")
    assert refused.returncode == 2 and "is running" in refused.stderr
    w1.stop()


def status(w: Writer) -> dict[str, Any]:
    result = w.command("--status", "--format", "json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _redelivered(server: NatsServer) -> bool:
    async def check(nc: Any) -> bool:
        info = await nc.jetstream(timeout=5.0).consumer_info("AUDIT", "writers")
        return bool(info.num_redelivered > 0)

    return bool(server.run(check))


# --------------------------------------------------------------------------------- outages


def test_writers_reconnect_after_a_nats_server_restart_and_lose_nothing(
    bus: Collector, nats_server: NatsServer, writers: Any, tmp_path: Path, wait_for: Any
) -> None:
    store = tmp_path / "store"
    total = 10_000
    w1, w2 = writers("w1", nats_server, store), writers("w2", nats_server, store)
    send(bus.events_url, total // 2, source="before")
    w1.start()
    w2.start()
    wait_for(lambda: len(seqs_in(store)) > 0, 30, "some events stored")
    nats_server.stop()
    nats_server.start()
    send(bus.events_url, total // 2, source="after")  # seqs 0…: a second copy of the numbers
    wait_for(lambda: len(seqs_in(store)) >= total, 60, "every event in the store")
    wait_for(lambda: consumer_drained(nats_server), 30, "the consumer to be drained")
    w1.stop()
    w2.stop()
    counts = Counter(seqs_in(store))
    assert sorted(counts.values()) == [2] * (total // 2), "each seq once per sending"


# ---------------------------------------------------------------------------- config errors


def refused(config: dict[str, Any], path: Path) -> tuple[int, str]:
    write_config(path, config)
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "consume", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stderr


def test_configuration_errors_are_one_line_and_exit_2(
    start_nats: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    from logbridge.collector.local import free_port

    store = tmp_path / "store"
    dead = writer_config(tmp_path / "a", f"nats://127.0.0.1:{free_port()}", store)
    no_stream = writer_config(tmp_path / "b", nats_server.url, store)
    locked = start_nats("--auth", "s3cret", connect_options={"token": "s3cret"})
    bad_token = writer_config(tmp_path / "c", locked.url, store)
    bad_token["nats"]["token_env"] = "LB_TEST_NOT_THE_TOKEN"

    async def conflicting(nc: Any) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

        js = nc.jetstream(timeout=5.0)
        await js.add_stream(StreamConfig(name="OTHER", subjects=["other.>"]))
        await js.add_consumer("OTHER", ConsumerConfig(durable_name="writers", ack_policy=AckPolicy.NONE))

    nats_server.run(conflicting, quiet=False)
    conflict = writer_config(tmp_path / "d", nats_server.url, store)
    conflict["nats"]["stream"] = "OTHER"
    import os

    os.environ["LB_TEST_NOT_THE_TOKEN"] = "wrong"
    try:
        cases = {
            "unreachable": (dead, "cannot reach NATS"),
            "no stream": (no_stream, "stream 'AUDIT' does not exist"),
            "bad token": (bad_token, "refused the credentials"),
            "conflicting consumer": (conflict, "ack_policy none"),
        }
        for what, (config, expected) in cases.items():
            code, err = refused(config, tmp_path / f"{what.replace(' ', '-')}.yaml")
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2, (what, code, err)
            assert len(lines) == 1 and "Traceback" not in err, (what, err)
            assert expected in lines[0], (what, lines[0])
    finally:
        del os.environ["LB_TEST_NOT_THE_TOKEN"]
