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

import sys

sys.path[:] = [p for p in sys.path if p.rstrip("/").rsplit("/", 1)[-1] != "bench"]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402
import yaml  # noqa: E402

from logbridge.collector.local import free_port  # noqa: E402

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


def run(
    url: str, home: Path, writers: int, consumer: str, messages: int, lines: int, nats_pid: int
) -> dict[str, Any]:
    procs = []
    for i in range(writers):
        wdir = home / f"{consumer}-w{i}"
        wdir.mkdir(parents=True)
        config = {
            # purge_acked off: every run drains the same pre-filled stream.
            "nats": {
                "servers": [url],
                "stream": "AUDIT",
                "consumer": consumer,
                "fetch_batch": 64,
                "purge_acked": False,
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--lines", type=int, default=1000)
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
