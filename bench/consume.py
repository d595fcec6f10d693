#!/usr/bin/env python3
"""Benchmark ``logbridge consume``: 1 writer vs 2 writers draining the same pre-filled stream.

What runs: one ``nats-server -js``; the stream AUDIT filled once with ``--messages`` messages of
``--lines`` stored lines each (~330-byte DSS log4j lines, as a collector's ``nats`` destination
publishes them: one message per partition group, the collector's headers). Then, alternating
over ``--rounds`` rounds, 1 writer and 2 writers (real ``logbridge consume`` processes,
``durability: flush``, a local store) drain the whole stream through a fresh consumer each time.
Timed: from the writers' start-up being done (the first ack) to the consumer's last ack.
Reported: events/s, and CPU µs per event of each writer process and of nats-server.

    python bench/consume.py                        # 2 rounds, 300 messages x 1000 lines
    python bench/consume.py --rounds 1 --messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from logbridge.collector.local import free_port

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def body(lines: int, start: int) -> bytes:
    out = []
    for i in range(start, start + lines):
        out.append(
            orjson.dumps(
                {
                    "clientEvent": {
                        "msgType": "application-open",
                        "authSource": "USER_FROM_UI",
                        "user": "admin",
                        "callPath": "/dip/api/projects/get-summary",
                        "projectKey": "DKU_TUTORIAL_BASICS",
                        "seq": i,
                    },
                    "origAddress": "10.0.0.12",
                    "serverTimestamp": "2020-02-19T15:05:02.441+0000",
                    "topic": "generic",
                    "routingKey": "svc_1",
                    "envelope": {"severity": "INFO", "logger": "dku.audit.generic", "mdc": {"apiKey": "k"}},
                }
            )
        )
    return b"\n".join(out) + b"\n"


async def fill(url: str, messages: int, lines: int) -> None:
    import nats
    from nats.js.api import DiscardPolicy, StreamConfig

    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    await js.add_stream(StreamConfig(name="AUDIT", subjects=["audit.>"], discard=DiscardPolicy.NEW))
    for m in range(messages):
        await js.publish(
            "audit.generic.svc_1",
            body(lines, m * lines),
            headers={
                "Logbridge-Topic": "generic",
                "Logbridge-Routing-Key": "svc_1",
                "Logbridge-Partition": "generic/svc_1/2020/02/19/15",
                "Logbridge-Events": str(lines),
            },
        )
    await nc.close()


async def consumer_state(url: str, consumer: str) -> tuple[int, int, int]:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream(timeout=5).consumer_info("AUDIT", consumer)
        return info.num_pending, info.num_ack_pending, info.ack_floor.stream_seq if info.ack_floor else 0
    finally:
        await nc.close()


def start_writers(
    url: str, home: Path, writers: int, consumer: str, *, purge_acked: bool
) -> list[subprocess.Popen[bytes]]:
    """``writers`` real ``logbridge consume`` processes sharing ``consumer`` (durability:
    flush, a local store under ``home``)."""
    procs = []
    for i in range(writers):
        wdir = home / f"{consumer}-w{i}"
        wdir.mkdir(parents=True)
        config = {
            "nats": {
                "servers": [url],
                "stream": "AUDIT",
                "consumer": consumer,
                "fetch_batch": 64,
                "purge_acked": purge_acked,
            },
            "writer_id": f"{consumer}-w{i}",
            "state_dir": str(wdir / "state"),
            "dead_letter": f"file://{wdir / 'dead'}",
            "destinations": [{"name": "store", "url": f"file://{home / consumer / 'store'}"}],
        }
        (wdir / "writer.yaml").write_text(yaml.safe_dump(config))
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "logbridge",
                    "consume",
                    "--config",
                    str(wdir / "writer.yaml"),
                    "--log-level",
                    "WARNING",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(wdir / "log", "wb"),  # noqa: SIM115
            )
        )
    return procs


def run(
    url: str, home: Path, writers: int, consumer: str, messages: int, lines: int, nats_pid: int
) -> dict[str, Any]:
    # purge_acked off: every run drains the same pre-filled stream.
    procs = start_writers(url, home, writers, consumer, purge_acked=False)
    # Start-up done: the consumer exists and something was acked.
    while True:
        try:
            _, _, floor = asyncio.run(consumer_state(url, consumer))
            if floor > 0:
                break
        except Exception:
            pass
        time.sleep(0.02)
    t0 = time.monotonic()
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    ncpu0 = cpu_seconds(nats_pid)
    while True:
        pending, ack_pending, floor = asyncio.run(consumer_state(url, consumer))
        if pending == 0 and ack_pending == 0:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    ncpu = cpu_seconds(nats_pid) - ncpu0
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=120)
    events = messages * lines  # the first acked batch before t0 is a rounding error
    return {
        "writers": writers,
        "events_per_s": events / elapsed,
        "writer_cpu_us_per_event": [round(c / events * 1e6, 2) for c in cpu],
        "nats_cpu_us_per_event": round(ncpu / events * 1e6, 2),
        "seconds": round(elapsed, 2),
    }


# ------------------------------------------------------------------- publish → stored latency


def ack_stream_seq(subject: str) -> int:
    """The stream sequence in a JetStream ack subject: ``$JS.ACK.<stream>.<consumer>.<delivered>.
    <stream seq>.<consumer seq>.<time>.<pending>``, or the longer form with a domain and an
    account hash before the stream."""
    tokens = subject.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency_run(
    url: str,
    home: Path,
    writers: int,
    consumer: str,
    rate: int,
    seconds: float,
    per_message: int,
    nats_pid: int,
) -> dict[str, Any]:
    """Publish ``rate`` events/s (messages of ``per_message`` stored lines, the collector's size
    per partition group) for ``seconds`` to writers that keep up; per message, the time from the
    publish call to the writer's ack of it (sent once its lines are durable in the store's
    staging files and journaled), seen by subscribing to the consumer's ack subjects."""
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    await js.purge_stream("AUDIT")  # the consumer starts at the stream's first message: this run's
    bodies = [body(per_message, k * per_message) for k in range(64)]
    headers = {
        "Logbridge-Topic": "generic",
        "Logbridge-Routing-Key": "svc_1",
        "Logbridge-Partition": "generic/svc_1/2020/02/19/15",
        "Logbridge-Events": str(per_message),
    }
    acked: dict[int, float] = {}

    async def on_ack(msg: Any) -> None:
        if msg.data in (b"", b"+ACK"):  # an empty message acks too (nats-py's ack_sync sends one)
            acked.setdefault(ack_stream_seq(msg.subject), time.monotonic())

    await nc.subscribe(f"$JS.ACK.AUDIT.{consumer}.>", cb=on_ack)
    procs = start_writers(url, home, writers, consumer, purge_acked=True)
    while True:  # every writer waits on a fetch: the consumer is ready
        try:
            if (await js.consumer_info("AUDIT", consumer)).num_waiting >= writers:
                break
        except Exception:
            pass
        await asyncio.sleep(0.05)
    tick = 0.01
    per_tick = rate * tick / per_message  # messages per tick (fractional: carried over)
    sent: dict[int, float] = {}
    warmup = 2.0
    start = time.monotonic()
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    ncpu0, own0 = cpu_seconds(nats_pid), time.process_time()
    owed = 0.0
    k = 0
    while (now := time.monotonic()) < start + warmup + seconds:
        owed += per_tick
        n, owed = int(owed), owed - int(owed)
        acks = await asyncio.gather(
            *(js.publish("audit.generic.svc_1", bodies[(k + i) % 64], headers=headers) for i in range(n))
        )
        k += n
        if now >= start + warmup:
            for ack in acks:
                sent[ack.seq] = now
        await asyncio.sleep(max(0.0, start + (k * per_message / rate) - time.monotonic()))
    published = time.monotonic() - start
    deadline = time.monotonic() + 60
    while not all(seq in acked for seq in sent) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0, strict=True)]
    ncpu, own = cpu_seconds(nats_pid) - ncpu0, time.process_time() - own0
    await nc.close()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=120)
    ms = [(acked[seq] - t) * 1000 for seq, t in sent.items() if seq in acked]
    events = k * per_message
    return {
        "writers": writers,
        "offered_events_per_s": rate,
        "published_events_per_s": round(events / published),
        "messages_timed": len(sent),
        "never_acked": len(sent) - len(ms),
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p90_ms": round(percentile(ms, 0.90), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "max_ms": round(max(ms), 1),
        "writer_cpu_us_per_event": [round(c / events * 1e6, 2) for c in cpu],
        "nats_cpu_us_per_event": round(ncpu / events * 1e6, 2),
        "publisher_cpu_us_per_event": round(own / events * 1e6, 2),
    }


def latency_main(url: str, home: Path, nats_pid: int, rounds: int, seconds: float, per_message: int) -> None:
    import nats
    from nats.js.api import DiscardPolicy, StreamConfig

    async def create() -> None:
        nc = await nats.connect(url)
        await nc.jetstream(timeout=10).add_stream(
            StreamConfig(name="AUDIT", subjects=["audit.>"], discard=DiscardPolicy.NEW)
        )
        await nc.close()

    asyncio.run(create())
    results = []
    for r in range(rounds):
        order = (10_000, 100_000) if r % 2 == 0 else (100_000, 10_000)
        for rate in order:
            res = asyncio.run(
                latency_run(url, home, 2, f"lat{r}r{rate}", rate, seconds, per_message, nats_pid)
            )
            print(orjson.dumps(res).decode(), flush=True)
            results.append(res)
    for rate in (10_000, 100_000):
        p99 = [x["p99_ms"] for x in results if x["offered_events_per_s"] == rate]
        print(f"{rate:,} events/s offered, 2 writers: p99 {', '.join(map(str, p99))} ms")
    high = sorted(x["p99_ms"] for x in results if x["offered_events_per_s"] == 100_000)
    low = sorted(x["p99_ms"] for x in results if x["offered_events_per_s"] == 10_000)
    print(f"p99 at 100k / p99 at 10k (medians): {high[len(high) // 2] / low[len(low) // 2]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument(
        "--latency",
        action="store_true",
        help="publish→stored latency at 100k events/s offered, vs 10k (the reference), 2 writers",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="--latency: timed seconds per run")
    parser.add_argument("--per-message", type=int, default=40, help="--latency: stored lines per message")
    args = parser.parse_args()
    binary = Path(sys.executable).parent / "nats-server"
    home = Path(tempfile.mkdtemp(prefix="bench-consume-"))
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(home / "js")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"nats://127.0.0.1:{port}"
    try:
        time.sleep(0.5)
        if args.latency:
            latency_main(url, home, server.pid, args.rounds, args.seconds, args.per_message)
            return
        asyncio.run(fill(url, args.messages, args.lines))
        results = []
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for n in order:
                res = run(url, home, n, f"r{r}n{n}", args.messages, args.lines, server.pid)
                print(orjson.dumps(res).decode(), flush=True)
                results.append(res)
        for n in (1, 2):
            rates = [x["events_per_s"] for x in results if x["writers"] == n]
            print(f"{n} writer(s): {sum(rates) / len(rates):,.0f} events/s (mean of {len(rates)})")
        one = [x for x in results if x["writers"] == 1]
        two = [x for x in results if x["writers"] == 2]
        print(
            f"2 writers / 1 writer: {sum(x['events_per_s'] for x in two) / sum(x['events_per_s'] for x in one):.2f}x"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
