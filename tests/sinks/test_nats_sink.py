"""The nats destination in the collector's service, against a real ``nats-server -js``.

Each test runs the collector's service (writer thread, ingest pool, NATS connection) in this
process and reads what reached the stream with a client of its own. Beside the ``nats``
destination most tests keep a ``filesystem`` destination with the same partition keys: a
message's body must be what that destination stores for the same lines.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from conftest import NatsServer, StreamMessage
from prometheus_client import generate_latest

from logbridge.collector.config import CollectorServerConfig
from logbridge.collector.core import Collector
from logbridge.collector.ingest import IngestResult, RequestContext
from logbridge.collector.service import CollectorService
from logbridge.config import validate
from logbridge.errors import BodyTooLarge, DestinationFull, DestinationTimeout, StorageUnavailable
from logbridge.sinks.base import BatchOrigin
from logbridge.sinks.nats import NatsSink
from logbridge.sinks.subjects import subject_token

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

pytest.importorskip("nats")

STREAM = "AUDIT"
SOURCE = "node-1/audit.log"


def log4j(seq: int, *, topic: str = "generic", routing_key: str | None = None, stamp: str) -> bytes:
    message: dict[str, Any] = {"msgType": "login", "seq": seq}
    if routing_key is not None:
        message["routingKey"] = routing_key
    return orjson.dumps(
        {"severity": "INFO", "logger": f"dku.audit.{topic}", "message": message, "timestamp": stamp}
    )


def bare(seq: int, topic: str = "authfail") -> bytes:
    """A bare event without a time of its own: partitioned at the receive time."""
    return orjson.dumps({"msgType": "login-failed", "topic": topic, "seq": seq})


def body(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def config(
    tmp_path: Path, server: NatsServer, *, store: bool = True, home: str = "c", **nats: Any
) -> CollectorServerConfig:
    destinations: list[dict[str, Any]] = [
        {"name": "bus", "type": "nats", "servers": [server.url], "stream": STREAM, **nats}
    ]
    if store:
        destinations.append({"name": "store", "url": f"file://{tmp_path / home / 'store'}"})
    return validate(
        {
            "state_dir": str(tmp_path / home / "state"),
            "dead_letter": f"file://{tmp_path / home / 'dead'}",
            "destinations": destinations,
        },
        CollectorServerConfig,
    )


def run_service(cfg: CollectorServerConfig, work: Callable[[CollectorService], Awaitable[Any]]) -> Any:
    """Start the service, ``await work(service)``, close it (publishing the store's files)."""

    async def main() -> Any:
        svc = CollectorService(Collector(cfg))
        await svc.start()
        try:
            return await work(svc)
        finally:
            await svc.close()

    return asyncio.run(main())


def ctx(rng: tuple[int, int] | None = None, source: str = SOURCE) -> RequestContext:
    if rng is None:
        return RequestContext("10.0.0.7", node="node-1")
    return RequestContext("10.0.0.7", node="node-1", source=source, range_start=rng[0], range_end=rng[1])


async def post(svc: CollectorService, data: bytes, rng: tuple[int, int] | None = None) -> IngestResult:
    return await svc.ingest(data, None, "application/x-ndjson", ctx(rng))


def store_files(root: Path) -> dict[str, bytes]:
    """Partition → the bytes of the data files published there (one request: one file each)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*.ndjson")):
        partition = path.parent.relative_to(root).as_posix()
        out[partition] = out.get(partition, b"") + path.read_bytes()
    return out


def seqs(messages: list[StreamMessage]) -> Counter[int]:
    return Counter(orjson.loads(line)["clientEvent"]["seq"] for m in messages for line in m.lines)


def metric(svc: CollectorService, name: str) -> float:
    text = generate_latest(svc.metrics.registry).decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ------------------------------------------------------------------------------ format


HOUR_15 = "2020-02-19T16:05:02.441+0100"  # 15:00 UTC
HOUR_16 = "2020-02-19T17:59:59.999+0100"  # 16:00 UTC
HOSTILE_TOPIC = "api.node *query>"
HOSTILE_KEY = "svc a.b\t>*"


def mixed_request() -> bytes:
    """Six partition groups, named in this order by the request's lines."""
    return body(
        log4j(0, routing_key="rk-a", stamp=HOUR_15),  # group 0: generic/rk-a/…/15
        log4j(1, stamp=HOUR_15),  # group 1: generic/default/…/15 (no routing key)
        log4j(2, topic=HOSTILE_TOPIC, routing_key=HOSTILE_KEY, stamp=HOUR_16),  # group 2
        bare(3),  # group 3: authfail, at the receive time
        log4j(4, routing_key="rk-a", stamp=HOUR_16),  # group 4: generic/rk-a/…/16
        log4j(5, routing_key="rk-a", stamp=HOUR_15),  # group 0 again
        bare(6),  # group 3 again
        log4j(7, routing_key="default", stamp=HOUR_15),  # group 5: the routing key "default"
    )


def test_one_message_per_partition_group_holding_what_the_filesystem_stores(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    data = mixed_request()
    result = run_service(config(tmp_path, nats_server), lambda svc: post(svc, data, (0, len(data))))
    assert (result.accepted, result.invalid, result.duplicate) == (8, 0, False)

    messages = nats_server.messages(STREAM)
    stored = store_files(tmp_path / "c" / "store")
    assert len(messages) == 6, [m.headers for m in messages]
    assert sum(len(m.lines) for m in messages) == 8  # one copy of each event, none per event

    bodies_by_partition: dict[str, bytes] = {}
    for index, m in enumerate(messages):
        h = m.headers
        partition = h["Logbridge-Partition"]
        bodies_by_partition[partition] = bodies_by_partition.get(partition, b"") + m.data
        assert h["Nats-Msg-Id"] == f"{SOURCE}:0-{len(data)}:{index}"
        assert h["Logbridge-Events"] == str(len(m.lines))
        assert (h["Logbridge-Source"], h["Logbridge-Range"]) == (SOURCE, f"0-{len(data)}")
        first = orjson.loads(m.lines[0])
        routing_key = first.get("routingKey")
        assert unquote(h["Logbridge-Topic"]) == first["topic"]
        assert unquote(h.get("Logbridge-Routing-Key", "")) == (routing_key or "")
        assert m.subject == f"audit.{subject_token(first['topic'])}.{subject_token(routing_key or 'default')}"
        assert ("Logbridge-Routing-Key" in h) == (routing_key is not None)
        for line in m.lines:  # one group: one topic, routing key and partition
            event = orjson.loads(line)
            assert (event["topic"], event.get("routingKey")) == (first["topic"], routing_key)
    # Every message holds exactly the lines the filesystem destination stored in that partition.
    assert bodies_by_partition == stored

    subjects = [m.subject for m in messages]
    assert subjects[:3] == [
        "audit.generic.rk-a",
        "audit.generic.default",
        "audit.api%2Enode%20%2Aquery%3E.svc%20a%2Eb%09%3E%2A",
    ]
    assert subjects[3:] == ["audit.authfail.default", "audit.generic.rk-a", "audit.generic.default"]
    assert [seqs([m]) for m in messages] == [
        Counter({0: 1, 5: 1}),
        Counter({1: 1}),
        Counter({2: 1}),
        Counter({3: 1, 6: 1}),
        Counter({4: 1}),
        Counter({7: 1}),
    ]
    hostile = messages[2].headers
    assert hostile["Logbridge-Topic"] == "api.node%20*query>"
    assert hostile["Logbridge-Routing-Key"] == "svc%20a.b%09>*"
    assert messages[0].headers["Logbridge-Partition"] == "generic/rk-a/2020/02/19/15"


def test_a_request_without_a_range_gets_unique_ids(tmp_path: Path, nats_server: NatsServer) -> None:
    data = body(log4j(0, stamp=HOUR_15), log4j(1, stamp=HOUR_16))

    async def twice(svc: CollectorService) -> None:
        await post(svc, data)
        await post(svc, data)

    run_service(config(tmp_path, nats_server, store=False), twice)
    messages = nats_server.messages(STREAM)
    assert len(messages) == 4 and len({m.headers["Nats-Msg-Id"] for m in messages}) == 4
    assert all("Logbridge-Source" not in m.headers for m in messages)


def test_a_retry_received_in_another_hour_is_cut_into_the_same_messages(tmp_path: Path) -> None:
    """Lines without a time of their own take the receive time. Were they grouped with the
    event-time lines of that hour, a retry received an hour later would merge two groups, and
    the message ids — group numbers — would point at other lines: JetStream would then drop
    new lines as duplicates. They are grouped apart, so both receptions give the same ids for
    the same lines (no server needed: the ids are made before anything is sent)."""
    cfg = validate(
        {
            "state_dir": str(tmp_path / "state"),
            "dead_letter": f"file://{tmp_path / 'dead'}",
            "destinations": [
                {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:1"], "topics": "all"}
            ],
        },
        CollectorServerConfig,
    )
    collector = Collector(cfg)
    (sink,) = collector.publishers
    assert isinstance(sink, NatsSink)
    first_received = 1582124400.0 + 3599  # 2020-02-19 15:59:59 UTC
    retried = first_received + 2  # 16:00:01, the hour of the event-time line below
    lines = [bare(0, topic="generic"), log4j(1, stamp=HOUR_16), bare(2, topic="generic")]
    origin = BatchOrigin(SOURCE, SOURCE, 0, 100)

    def cut(received: float) -> dict[str, list[int]]:
        prepared = collector.prepare_items(list(lines), ctx((0, 100)), received)
        groups = [(key, data) for (_, key), data in prepared.to_publish.items()]
        return {
            m.headers["Nats-Msg-Id"]: [
                orjson.loads(line)["clientEvent"]["seq"] for line in m.payload.splitlines()
            ]
            for m in sink.messages(groups, origin)
        }

    assert cut(first_received) == cut(retried) == {f"{SOURCE}:0-100:0": [0, 2], f"{SOURCE}:0-100:1": [1]}


# ---------------------------------------------------------------------------- acks


def test_the_answer_waits_for_the_ack_and_a_timeout_is_a_503_whose_retry_is_deduplicated(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """A stalled server (SIGSTOP): the request is not answered; once the server goes on, it
    is. Past publish_timeout the request fails (503) — its message may still land when the
    server wakes — and the sender's retry of the range is acknowledged with the stream holding
    one copy. Meanwhile a request for an overlapping range is refused at once."""
    data = body(log4j(0, stamp=HOUR_15), log4j(1, stamp=HOUR_16))
    rng = (0, len(data))

    async def work(svc: CollectorService) -> None:
        nats_server.pause()
        try:
            waiting = asyncio.ensure_future(post(svc, data, rng))
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            assert not done, "answered while the server could not have acknowledged anything"
            with pytest.raises(StorageUnavailable, match="being published by another request"):
                await post(svc, data, (rng[0] + 1, rng[1] + 10))
        finally:
            nats_server.resume()
        result = await waiting
        assert (result.accepted, result.duplicate) == (2, False)

        nats_server.pause()
        try:
            late = body(log4j(2, stamp=HOUR_15))
            late_rng = (rng[1], rng[1] + len(late))
            with pytest.raises(
                DestinationTimeout, match=r"no publish ack from NATS within publish_timeout \(3s\)"
            ):
                await post(svc, late, late_rng)
        finally:
            nats_server.resume()
        # The stalled message lands once the server runs again; the retry is then a duplicate
        # for JetStream, and a new range for the collector (nothing was claimed).
        await asyncio.to_thread(_wait_for_messages, nats_server, 3)
        again = await post(svc, late, late_rng)
        assert (again.accepted, again.duplicate) == (1, False)
        assert metric(svc, "logbridge_messages_duplicate_total") == 1
        assert metric(svc, 'logbridge_publish_failures_total{destination="bus",reason="timeout"}') == 1
        replay = await post(svc, late, late_rng)
        assert replay.duplicate  # the collector's own mark, now

    run_service(config(tmp_path, nats_server, publish_timeout="3s"), work)
    messages = nats_server.messages(STREAM)
    assert seqs(messages) == Counter({0: 1, 1: 1, 2: 1})
    stored = store_files(tmp_path / "c" / "store")
    assert sorted(orjson.loads(x)["clientEvent"]["seq"] for b in stored.values() for x in b.splitlines()) == [
        0,
        1,
        2,
    ]


def _wait_for_messages(server: NatsServer, count: int) -> None:
    from _polling import wait_for

    wait_for(
        lambda: server.stream_info(STREAM).state.messages >= count, 10, f"{count} messages in the stream"
    )


def test_every_answered_request_is_in_the_stream_already(tmp_path: Path, nats_server: NatsServer) -> None:
    batches = [body(*(log4j(i * 10 + j, stamp=HOUR_15) for j in range(10))) for i in range(30)]

    async def work(svc: CollectorService) -> list[int]:
        counts = []
        offset = 0
        for data in batches:
            result = await post(svc, data, (offset, offset + len(data)))
            assert result.accepted == 10
            offset += len(data)
            info = await asyncio.to_thread(nats_server.stream_info, STREAM)
            counts.append(info.state.messages)
        return counts

    counts = run_service(config(tmp_path, nats_server, store=False), work)
    assert counts == list(range(1, 31))


def test_the_same_range_sent_to_another_collector_is_dropped_by_jetstream(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """Two collectors share nothing but the stream: the second does not know the range (it
    stores it: 200, not duplicate), and JetStream keeps one copy by message id."""
    data = mixed_request()
    rng = (0, len(data))
    first = run_service(
        config(tmp_path, nats_server, store=False, home="a"), lambda svc: post(svc, data, rng)
    )

    async def second(svc: CollectorService) -> float:
        result = await post(svc, data, rng)
        assert (result.accepted, result.duplicate) == (8, False)
        return metric(svc, "logbridge_messages_duplicate_total")

    duplicates = run_service(config(tmp_path, nats_server, store=False, home="b"), second)
    assert first.accepted == 8 and duplicates == 6
    assert seqs(nats_server.messages(STREAM)) == Counter(range(8))


# ------------------------------------------------------------------------------ limits


def test_a_full_stream_refuses_with_503_and_drops_nothing(tmp_path: Path, nats_server: NatsServer) -> None:
    """discard new: when the stream reaches max_bytes, requests are refused (503 naming the
    stream), the filesystem destination beside it stores nothing of them, and every answered
    event is in the stream; once writers make room (a purge here), the refused batch goes in."""
    batches = [body(*(log4j(i * 20 + j, stamp=HOUR_15) for j in range(20))) for i in range(40)]

    async def work(svc: CollectorService) -> tuple[list[int], int]:
        answered: list[int] = []
        offset = 0
        for index, data in enumerate(batches):
            try:
                await post(svc, data, (offset, offset + len(data)))
            except DestinationFull as exc:
                assert "stream 'AUDIT' is full (maximum bytes exceeded)" in str(exc)
                assert metric(svc, 'logbridge_publish_failures_total{destination="bus",reason="full"}') == 1
                refused = index
                break
            answered.append(index)
            offset += len(data)
        else:
            raise AssertionError("the stream never filled up")
        held = seqs(await asyncio.to_thread(nats_server.messages, STREAM))
        assert held == Counter(i * 20 + j for i in answered for j in range(20))

        await asyncio.to_thread(nats_server.run, lambda nc: nc.jetstream().purge_stream(STREAM), quiet=False)
        data = batches[refused]
        result = await post(svc, data, (offset, offset + len(data)))
        assert result.accepted == 20
        return answered, refused

    answered, refused = run_service(config(tmp_path, nats_server, max_bytes="64KiB"), work)
    assert answered and refused == len(answered)
    assert seqs(nats_server.messages(STREAM)) == Counter(refused * 20 + j for j in range(20))
    stored = store_files(tmp_path / "c" / "store")
    in_store = Counter(orjson.loads(x)["clientEvent"]["seq"] for b in stored.values() for x in b.splitlines())
    assert in_store == Counter(i * 20 + j for i in [*answered, refused] for j in range(20))


def test_a_group_too_big_for_one_message_is_cut_at_line_ends(tmp_path: Path, start_nats: Any) -> None:
    """The server's max_payload (64 KiB here) bounds a message: a bigger group goes as pieces
    named by their lines; a single line bigger than a message is a 413, nothing sent."""
    conf = tmp_path / "nats.conf"
    conf.write_text("max_payload: 65536\n")
    server: NatsServer = start_nats("-c", str(conf))
    events = [log4j(i, stamp=HOUR_15) for i in range(600)]  # one group, ~150 KiB stored
    data = body(*events)
    huge = body(orjson.dumps({"msgType": "x", "topic": "generic", "seq": 999, "blob": "y" * 70_000}))

    async def work(svc: CollectorService) -> None:
        result = await post(svc, data, (0, len(data)))
        assert result.accepted == 600
        with pytest.raises(
            BodyTooLarge, match=r"a stored line of \d+ bytes does not fit in one NATS message"
        ):
            await post(svc, huge, (len(data), len(data) + len(huge)))

    run_service(config(tmp_path, server), work)
    messages = server.messages(STREAM)
    assert len(messages) >= 3 and all(len(m.data) < 65536 for m in messages)
    ends = [tuple(int(x) for x in m.headers["Logbridge-Part"].split("/")[0].split("-")) for m in messages]
    assert (
        ends[0][0] == 0
        and ends[-1][1] == 600
        and all(a[1] == b[0] for a, b in zip(ends, ends[1:], strict=False))
    )
    assert all(m.headers["Logbridge-Part"].endswith("/600") for m in messages)
    assert [m.headers["Nats-Msg-Id"] for m in messages] == [
        f"{SOURCE}:0-{len(data)}:0:{first}-{end}" for first, end in ends
    ]
    assert b"".join(m.data for m in messages) == b"".join(store_files(tmp_path / "c" / "store").values())
    assert 999 not in seqs(messages)


def test_the_collectors_own_authfail_events_are_published_too(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    async def work(svc: CollectorService) -> None:
        svc.audit(
            {"msgType": "collector-auth-failure", "reason": "bad token"},
            RequestContext("10.0.0.9", header_topic="authfail"),
        )
        await asyncio.to_thread(_wait_for_messages, nats_server, 1)

    run_service(config(tmp_path, nats_server, store=False), work)
    (message,) = nats_server.messages(STREAM)
    assert message.subject == "audit.authfail.default"
    assert orjson.loads(message.data)["clientEvent"]["reason"] == "bad token"


def test_an_existing_stream_takes_the_configs_limits_and_its_message_size_is_kept_to(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """A stream made beforehand (by an operator, another collector): its limits become the
    config's (logged), its messages stay, and its max_msg_size bounds the messages as the
    server's max_payload does."""
    from nats.js.api import DiscardPolicy, StreamConfig

    made = StreamConfig(
        name=STREAM,
        subjects=["audit.>"],
        discard=DiscardPolicy.NEW,
        max_bytes=1_000_000,
        duplicate_window=60,
        max_msg_size=16_384,
    )

    async def make(nc: Any) -> None:
        js = nc.jetstream()
        await js.add_stream(made)
        await js.publish("audit.generic.default", b"{}\n", headers={"Nats-Msg-Id": "earlier"})

    nats_server.run(make, quiet=False)
    data = body(*(log4j(i, stamp=HOUR_15) for i in range(200)))  # one group, ~50 KiB stored
    result = run_service(
        config(tmp_path, nats_server, store=False, max_bytes="2MiB", duplicate_window="3m"),
        lambda svc: post(svc, data, (0, len(data))),
    )
    assert result.accepted == 200
    info = nats_server.stream_info(STREAM)
    assert (info.config.max_bytes, info.config.duplicate_window) == (2 * 1024 * 1024, 180.0)
    messages = nats_server.messages(STREAM)
    assert messages[0].headers["Nats-Msg-Id"] == "earlier"
    ours = messages[1:]
    assert len(ours) >= 4 and all(len(m.data) < 16_384 for m in ours)
    assert seqs(ours) == Counter(range(200))
