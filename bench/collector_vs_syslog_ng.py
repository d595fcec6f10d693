#!/usr/bin/env python3
"""Benchmark the collector against syslog-ng 3.38 as a central collector: lines/s and CPU per line.

In one invocation, ``--runs`` rounds, each round one run of each peer on fresh state (alternating,
so that a load that comes and goes on the machine hits both alike):

1. **syslog-ng** (``bench/peers/syslog-ng-collector.conf.tmpl``): TCP lines in, ``json-parser``,
   topic from ``dku.audit.<topic>``, ``date-parser`` on the event's timestamp, a ``file()`` per
   topic / routing key / UTC hour of *event* time, ``flush-lines(1000)``, no fsync. A sender
   process writes ``--lines`` lines (the same 1000-event body as below, repeated) over
   ``--connections`` TCP connections; the body is built before the clock starts and each
   connection is one ``sendall`` of a prepared buffer, so the sender only copies bytes into the
   kernel. syslog-ng acknowledges nothing: the run ends when the store holds every byte sent
   (its files store each line as it came, so stored bytes = sent bytes exactly).
2. **logbridge collect** (``durability: flush``) fed the same 1000 events per HTTP request by wrk,
   through ``bench/collector.py``'s machinery (fresh collector and store, warm-up, one timed run
   of ``--duration`` seconds, stored events counted against wrk's answers after SIGTERM).

Servers on ``--server-core``, senders (and this script) on ``--sender-core`` (``taskset``).
CPU seconds are the server's process tree (``/proc``, utime+stime over the timed part); peak RSS
is ``VmHWM``. Both stores are counted line by line afterwards. Medians over the rounds are
printed, with the ratios logbridge / syslog-ng against the project's goal (≥ 1.5× the lines/s at
≤ 0.5× the CPU per line).

    python bench/collector_vs_syslog_ng.py                  # 3 rounds, 1M lines / 10 s each
    python bench/collector_vs_syslog_ng.py --runs 1 --lines 200000 --duration 5

Peers from Debian: ``apt-get install syslog-ng-core wrk`` (``json-parser`` and ``date-parser``
are in syslog-ng-core's plugins).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import collector as lbbench  # bench/collector.py, beside this script

from logbridge.collector.local import free_port

BENCH = Path(__file__).resolve().parent
SYSLOG_NG = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
TEMPLATE = BENCH / "peers" / "syslog-ng-collector.conf.tmpl"
BATCH = 1000  # events per HTTP request, and the unit the TCP payload is built from


@dataclass
class Result:
    """One timed run of one peer."""

    lines: int  # lines the sender had answered (wrk) or sent (TCP)
    seconds: float
    cpu: float  # server CPU seconds over the timed part
    peak_rss_mib: float
    stored: int  # lines found in the store afterwards
    sent: int  # lines sent in all (logbridge: answered by the collector, warm-up included)
    ok: bool
    sender_cpu: float = float("nan")

    @property
    def rate(self) -> float:
        return self.lines / self.seconds

    @property
    def cpu_us_per_line(self) -> float:
        return self.cpu / self.lines * 1e6


# ------------------------------------------------------------------------------------- TCP sender


def send(port: int, connections: int, body_file: Path, repeats: int) -> None:
    """``--send``: each connection writes ``body × repeats``; print start time and own CPU as JSON."""
    payload = body_file.read_bytes() * repeats
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    start = time.monotonic()  # CLOCK_MONOTONIC: the same clock in the parent process
    threads = [threading.Thread(target=s.sendall, args=(payload,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = time.monotonic()
    for s in socks:
        s.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"start": start, "sent": sent, "cpu": usage.ru_utime + usage.ru_stime}))


# --------------------------------------------------------------------------------------- syslog-ng


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except FileNotFoundError:
                pass
    return total


def count_newlines(root: Path) -> int:
    total = 0
    for path in [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]:
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                total += chunk.count(b"\n")
    return total


def run_syslog_ng(work: Path, body_file: Path, args: argparse.Namespace) -> Result:
    run = Path(tempfile.mkdtemp(prefix="syslog-ng-", dir=work))
    store, dead = run / "store", run / "dead.ndjson"
    port = free_port()
    conf = run / "syslog-ng.conf"
    text = TEMPLATE.read_text()
    for key, value in {
        "@PORT@": str(port),
        "@STORE@": str(store),
        "@DEAD@": str(dead),
        "@RUNDIR@": str(run),
        "@FLUSH_LINES@": "1000",
        "@FSYNC@": "no",
    }.items():
        text = text.replace(key, value)
    conf.write_text(text)
    log = (run / "syslog-ng.log").open("wb")
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(args.server_core),
            SYSLOG_NG,
            "-F",
            "-e",
            "--no-caps",
            "-f",
            str(conf),
            f"--persist-file={run / 'persist'}",
            f"--pidfile={run / 'pid'}",
            f"--control={run / 'ctl'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # up when the port accepts (the probe connection sends nothing)
            if server.poll() is not None:
                raise SystemExit(f"syslog-ng exited at start:\n{(run / 'syslog-ng.log').read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("syslog-ng not listening after 30 s") from None
                time.sleep(0.05)
        repeats = max(1, args.lines // BATCH // args.connections)
        lines = repeats * BATCH * args.connections
        sent_bytes = body_file.stat().st_size * repeats * args.connections
        time.sleep(0.2)  # let the probe connection's close settle
        cpu_before = lbbench.cpu_seconds(server.pid)
        sender = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(args.sender_core),
                sys.executable,
                str(Path(__file__).resolve()),
                "--send",
                str(port),
                str(args.connections),
                str(body_file),
                str(repeats),
            ],
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 600
        while tree_bytes(store) < sent_bytes and tree_bytes(dead) == 0:
            if time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.02)
        done = time.monotonic()
        cpu = lbbench.cpu_seconds(server.pid) - cpu_before
        peak = lbbench.memory_kib(server.pid, "VmHWM") / 1024
        out, _ = sender.communicate(timeout=120)
        if sender.returncode != 0:
            raise SystemExit(f"the TCP sender failed (exit code {sender.returncode})")
        report = json.loads(out)
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()
    stored = count_newlines(store) if store.exists() else 0
    dead_lines = count_newlines(dead) if dead.exists() else 0
    ok = stored == lines and dead_lines == 0
    if not ok:
        print(
            f"  ! syslog-ng: {stored:,} lines stored, {dead_lines:,} dead-lettered, {lines:,} sent; log ends:\n    "
            + "\n    ".join((run / "syslog-ng.log").read_text(errors="replace").splitlines()[-10:]),
            file=sys.stderr,
        )
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return Result(lines, done - report["start"], cpu, peak, stored, lines, ok, report["cpu"])


# --------------------------------------------------------------------------------------- logbridge


def run_logbridge(work: Path, body_file: Path, args: argparse.Namespace) -> Result:
    margs = argparse.Namespace(
        runs=1,
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        server_core=args.server_core,
        wrk_core=args.sender_core,
        profile=None,
    )
    server = lbbench.collector_server("flush", work, "uvicorn")
    m = lbbench.measure("logbridge collect flush (uvicorn)", server, body_file, BATCH, margs, work)
    wrk, cpu = m.median()
    answered = m.requests_total * BATCH
    slack = args.connections * BATCH * m.wrk_calls  # a request per connection in flight when wrk stops
    stored = m.stored or 0
    ok = answered <= stored <= answered + slack and not m.staged
    if not ok:
        print(
            f"  ! logbridge: {stored:,} stored, {answered:,} answered, {m.staged:,} staged", file=sys.stderr
        )
    return Result(wrk.requests * BATCH, wrk.seconds, cpu, m.peak_rss_mib, stored, answered, ok)


# ------------------------------------------------------------------------------------------ report


def median_by(results: list[Result], key: str) -> float:
    return statistics.median(getattr(r, key) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds (one run of each peer per round)")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines sent to syslog-ng per run")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per logbridge run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk before each logbridge run")
    parser.add_argument("--connections", type=int, default=8, help="TCP connections / wrk connections")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--sender-core", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--send", nargs=4, metavar=("PORT", "CONNS", "BODY", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.send:
        port, conns, body, repeats = args.send
        send(int(port), int(conns), Path(body), int(repeats))
        return
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is not installed: apt-get install {tool if tool == 'wrk' else 'util-linux'}"
            )
    if not Path(SYSLOG_NG).exists():
        raise SystemExit("syslog-ng is not installed: apt-get install syslog-ng-core")
    # This script polls the syslog-ng store while it runs: keep it off the server's core.
    os.sched_setaffinity(0, {args.sender_core})

    work = Path(tempfile.mkdtemp(prefix="logbridge-vs-syslog-ng-"))
    body_file = work / "batch-1000.ndjson"
    body_file.write_bytes(lbbench.dss_events(BATCH))
    (work / "post.lua").write_text(lbbench.LUA)
    size = body_file.stat().st_size
    print(
        f"body: {BATCH} events, {size:,} B ({size / BATCH:.0f} B/line); servers on core {args.server_core}, "
        f"senders on core {args.sender_core}; {args.connections} connections; {os.cpu_count()} cores",
        file=sys.stderr,
    )
    peers: dict[str, list[Result]] = {"syslog-ng": [], "logbridge": []}
    try:
        for i in range(args.runs):
            print(
                f"… round {i + 1}/{args.runs}: syslog-ng, {args.lines:,} lines", file=sys.stderr, flush=True
            )
            r = run_syslog_ng(work, body_file, args)
            peers["syslog-ng"].append(r)
            print(
                f"  syslog-ng {r.rate:,.0f} lines/s, {r.cpu:.2f} CPU s ({r.cpu / r.seconds:.0%} of a core), "
                f"sender {r.sender_cpu:.2f} CPU s",
                file=sys.stderr,
            )
            b = run_logbridge(work, body_file, args)
            peers["logbridge"].append(b)
            print(
                f"  logbridge {b.rate:,.0f} lines/s, {b.cpu:.2f} CPU s ({b.cpu / b.seconds:.0%} of a core)",
                file=sys.stderr,
            )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    rows = {
        "syslog-ng 3.38 (TCP, json-parser, file per topic/hour)": peers["syslog-ng"],
        "logbridge collect flush (HTTP, 1000-event batches)": peers["logbridge"],
    }
    print(
        "| peer | lines/s | CPU s | CPU % of a core | CPU µs/line | peak RSS MiB | stored = sent | runs (lines/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for name, results in rows.items():
        print(
            f"| {name} | {median_by(results, 'rate'):,.0f} | {median_by(results, 'cpu'):.2f} "
            f"| {statistics.median(r.cpu / r.seconds for r in results):.0%} "
            f"| {median_by(results, 'cpu_us_per_line'):.2f} | {max(r.peak_rss_mib for r in results):.0f} "
            f"| {'yes' if all(r.ok for r in results) else 'NO'} "
            f"| {'/'.join(f'{r.rate / 1000:.0f}k' for r in results)} |"
        )
    sng, lb = peers["syslog-ng"], peers["logbridge"]
    # Ratios per round (the two runs closest in time), then their median.
    speed = statistics.median(b.rate / a.rate for a, b in zip(sng, lb, strict=True))
    cpu = statistics.median(b.cpu_us_per_line / a.cpu_us_per_line for a, b in zip(sng, lb, strict=True))
    rss = max(r.peak_rss_mib for r in lb) / max(r.peak_rss_mib for r in sng)
    print()
    print(
        f"logbridge / syslog-ng (median of per-round ratios): {speed:.2f}× the lines/s, "
        f"{cpu:.2f}× the CPU per line, {rss:.2f}× the peak RSS"
    )
    met = speed >= 1.5 and cpu <= 0.5
    print(
        f"goal ≥ 1.5× lines/s at ≤ 0.5× CPU per line: {'met' if met else 'NOT met'} "
        f"(lines/s {'ok' if speed >= 1.5 else 'short'}, CPU per line {'ok' if cpu <= 0.5 else 'over'})"
    )
    for name, results in rows.items():
        print(
            f"{name}: {sum(r.stored for r in results):,} lines in the stores, {sum(r.sent for r in results):,} "
            f"sent/answered ({'every line stored' if all(r.ok for r in results) else 'MISMATCH'})"
        )


if __name__ == "__main__":
    main()
