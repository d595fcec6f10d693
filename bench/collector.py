#!/usr/bin/env python3
"""Benchmark the collector: events/s, MB/s, CPU and memory under wrk, against a minimal receiver.

What runs (each measurement: a fresh server, a short warm-up, then ``--runs`` timed wrk runs of
``--duration`` seconds; the median run is reported):

- ``logbridge collect`` with ``durability: flush`` and then ``fsync``, a temporary store and
  state dir, receiving 1000-event NDJSON batches of ~330-byte DSS log4j envelopes;
- the same collector receiving single-event requests;
- ``bench/minimal_receiver.py`` (an ASGI app that only counts lines) under the same loads, on
  the same server, so the ratio shows what our parsing, routing and writing cost.

wrk posts a prepared body over ``--connections`` keep-alive connections. On a 2-core machine the
server and wrk are pinned to a core each (``taskset``) so that neither steals the other's CPU.
CPU seconds are the server's process tree (``/proc/<pid>/stat`` utime+stime, before/after the
timed run); peak RSS is the tree's ``VmHWM``.

    python bench/collector.py                      # uvicorn, 3 x 10 s per configuration
    python bench/collector.py --server granian     # the collector's ASGI app under granian
    python bench/collector.py --duration 5 --runs 1 --only collector-flush
    python bench/collector.py --old /path/to/old/tree --pairs 4   # old vs this tree, alternating
    python bench/collector.py --ui-cost --pairs 6 --duration 5 [--ui-poll 2]   # operator page off vs on

With ``--old``, only the collector runs (``collector-flush`` unless ``--only`` says otherwise),
alternately from the old tree and from this one (each a fresh server with ``PYTHONPATH`` set to
its tree; the order flips every pair), and each pair's CPU µs per event is printed with its
ratio: on a noisy machine only such pairs, taken in one invocation, compare two versions.
``--together`` runs both servers at once instead, on the same core, each under its own wrk:
whatever else runs on the machine then weighs on both alike.
``--ui-cost`` runs this tree's collector twice that way, with the operator page (``ui``) off and
on (``--ui-poll``: its JSON endpoints read meanwhile, as an open page does): what it costs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logbridge.collector.local import free_port, local_config

BENCH = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

LUA = """-- POST the file named by $BODY_FILE on every request
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/x-ndjson"
"""
# With --diagnose: keep the first failed responses. A Lua response() hook costs wrk time on every
# response (it halves wrk's single-event rate), so it is off for the measured numbers.
LUA_DIAGNOSE = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failures = "" end
function response(status, headers, body)
  if status ~= 200 and #failures < 2000 then
    failures = failures .. status .. " " .. string.sub(body, 1, 300) .. "\\n"
  end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local text = t:get("failures")
    if text and #text > 0 then io.write("failed responses:\\n" .. text) end
  end
end
"""


# ------------------------------------------------------------------------------------------ body

TOPICS = [
    ("generic", 55),
    ("generic-failure", 5),
    ("authfail", 3),
    ("apinode-query", 20),
    ("compute-resource-usage", 7),
    ("apicalls", 10),
]
FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt " * 6


def dss_events(n: int, seed: int = 42) -> bytes:
    """``n`` DSS log4j file envelopes, 250-400 bytes each (~330 on average), as NDJSON."""
    rng = random.Random(seed)
    names, weights = [t for t, _ in TOPICS], [w for _, w in TOPICS]
    lines = []
    for i in range(n):
        topic = rng.choices(names, weights=weights)[0]
        user = f"user{rng.randrange(500)}"
        message: dict[str, Any] = {
            "msgType": "dataset-read-data",
            "authUser": user,
            "projectKey": f"P{rng.randrange(60)}",
        }
        if topic == "apinode-query":
            service = f"svc_{rng.randrange(20)}"
            message = {
                "msgType": "prediction-query",
                "routingKey": service,
                "serviceId": service,
                "endpointId": "predict",
                "responseTimeMs": rng.randrange(1, 900),
            }
        elif topic == "compute-resource-usage":
            message = {
                "msgType": "compute-resource-usage-update",
                "authUser": user,
                "usage": {"cpuTotalMs": rng.randrange(10**6), "team": "mlops"},
            }
        elif topic in ("authfail", "generic-failure"):
            message["msgType"] = "login-failed" if topic == "authfail" else "flow-job-start"
        ms = i * 7
        stamp = f"2020-02-19T16:{(ms // 60000) % 60:02d}:{(ms // 1000) % 60:02d}.{ms % 1000:03d}+0100"
        envelope = {
            "severity": "INFO",
            "logger": f"dku.audit.{topic}",
            "message": message,
            "mdc": {"apiCall": "/api/projects/get-summary", "user": user},
            "callTime": rng.randrange(1, 5000),
            "timestamp": stamp,
        }
        base = len(json.dumps(envelope, separators=(",", ":")))
        room = rng.randint(250, 400) - base - len(',"details":""')
        if room > 0:
            offset = rng.randrange(len(FILLER) - room)
            message["details"] = FILLER[offset : offset + room]
        lines.append(json.dumps(envelope, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------- processes


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (granian runs its worker in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def memory_kib(pid: int, key: str) -> int:
    """Sum of ``VmHWM`` or ``VmRSS`` over the process tree, in KiB."""
    total = 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
        total += int(m.group(1)) if m else 0
    return total


@dataclass
class Server:
    """A server process pinned to one core; started fresh for each measured configuration."""

    name: str
    argv: list[str]
    port: int
    cwd: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, core: int, log_dir: Path) -> None:
        self.log = log_dir / f"{self.name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                ["taskset", "-c", str(core), *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited at start:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} not healthy after 30 s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)  # a collector publishes what it staged first
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def collector_server(
    durability: str, work: Path, server: str, tree: Path | None = None, **config_keys: Any
) -> Server:
    """The collector on a temporary store; under uvicorn via ``logbridge collect``, or under granian.

    ``tree``: run the ``logbridge`` package of that source tree (``PYTHONPATH``), not the installed one.
    ``config_keys``: top-level keys of its config (``ui``)."""
    port = free_port()
    home = work / f"collector-{durability}-{port}"
    home.mkdir()
    config = local_config(home, port, durability=durability, **config_keys)
    config_path = home / "collector.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if server == "uvicorn":
        argv = [
            sys.executable,
            "-m",
            "logbridge",
            "collect",
            "--config",
            str(config_path),
            "--log-level",
            "WARNING",
        ]
    else:
        env["LOGBRIDGE_BENCH_CONFIG"] = str(config_path)
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-granian", str(port)]
    return Server(f"collector-{durability}", argv, port, home, env)


def minimal_server(server: str) -> Server:
    port = free_port()
    argv = [sys.executable, str(BENCH / "minimal_receiver.py"), "--server", server, "--port", str(port)]
    return Server(f"minimal-{server}", argv, port, BENCH)


def granian_app() -> Any:
    """The collector's ASGI app for granian's worker (a factory: granian imports it by name)."""
    from logbridge import logsetup
    from logbridge.collector.config import load
    from logbridge.collector.server import build_app

    logsetup.setup("WARNING")
    return build_app(load(os.environ["LOGBRIDGE_BENCH_CONFIG"]))


def serve_granian(port: int) -> None:
    """Run `granian_app` under granian: one worker, uvloop, HTTP/1.1, as uvicorn runs it."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.server import Server as Granian

    Granian(
        "collector:granian_app",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        factory=True,
        working_dir=BENCH,
        log_access=False,
    ).serve()


# ------------------------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: str
    failures: str  # status and body of the first failed responses
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m.group(2)]


def run_wrk(url: str, body: Path, lua: Path, seconds: float, connections: int, core: int) -> WrkResult:
    env = dict(os.environ, BODY_FILE=str(body))
    argv = [
        "taskset",
        "-c",
        str(core),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "30s",
        "-s",
        str(lua),
        url,
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if m is None:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    took = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)  # anchored: "+/- Stdev" columns end in "50%" too
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return WrkResult(
        int(m.group(1)),
        took,
        int(non_2xx.group(1)) if non_2xx else 0,
        errors.group(1).strip() if errors else "",
        out.split("failed responses:\n", 1)[1].strip() if "failed responses:\n" in out else "",
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
    )


# --------------------------------------------------------------------------------------- measure


@dataclass
class Measurement:
    name: str
    events_per_request: int
    body_bytes: int
    runs: list[tuple[WrkResult, float]] = field(default_factory=list)  # (wrk, server CPU s)
    peak_rss_mib: float = 0.0
    rss_mib: list[float] = field(default_factory=list)  # after warm-up, then after each run
    stored: int | None = None  # events found in the store after SIGTERM (collector only)
    staged: int = 0  # events still in staging files after SIGTERM (should be 0: shutdown publishes)
    exit_code: int | None = None
    wrk_calls: int = 0  # warm-up and timed runs: each may end with a request per connection in flight
    requests_total: int = 0

    def median(self) -> tuple[WrkResult, float]:
        ranked = sorted(self.runs, key=lambda r: r[0].rate)
        return ranked[len(ranked) // 2]

    @property
    def events_per_s(self) -> float:
        return self.median()[0].rate * self.events_per_request

    def row(self) -> list[str]:
        wrk, cpu = self.median()
        events = wrk.requests * self.events_per_request
        return [
            self.name,
            f"{self.events_per_s:,.0f}",
            f"{wrk.rate * self.body_bytes / 1e6:,.1f}",
            f"{wrk.rate:,.0f}",
            f"{cpu:.2f}",
            f"{cpu / wrk.seconds * 100:.0f}%",
            f"{cpu / events * 1e6:.2f}" if events else "-",
            f"{self.peak_rss_mib:.0f}",
            " → ".join(f"{r:.0f}" for r in (self.rss_mib[0], self.rss_mib[-1])) if self.rss_mib else "-",
            f"{wrk.p50_ms:.1f}/{wrk.p99_ms:.1f}",
            "/".join(f"{r.rate * self.events_per_request / 1000:.0f}k" for r, _ in self.runs)
            if self.events_per_request > 1
            else "/".join(f"{r.rate:,.0f}" for r, _ in self.runs),
        ]


def measure(
    name: str, server: Server, body: Path, events: int, args: argparse.Namespace, work: Path
) -> Measurement:
    lua = work / "post.lua"
    result = Measurement(name, events, body.stat().st_size)
    print(f"… {name}: {args.runs} x {args.duration:g} s", file=sys.stderr, flush=True)
    server.name = name.split(" ")[0]  # the log file's name
    server.start(args.server_core, work)
    assert server.process is not None
    pid = server.process.pid
    url = f"http://127.0.0.1:{server.port}/events"
    try:
        warm = run_wrk(url, body, lua, args.warmup, args.connections, args.wrk_core)
        result.requests_total += warm.requests
        result.wrk_calls += 1
        result.rss_mib.append(memory_kib(pid, "VmRSS") / 1024)
        for _ in range(args.runs):
            before = cpu_seconds(pid)
            wrk = run_wrk(url, body, lua, args.duration, args.connections, args.wrk_core)
            result.runs.append((wrk, cpu_seconds(pid) - before))
            result.requests_total += wrk.requests
            result.wrk_calls += 1
            result.rss_mib.append(memory_kib(pid, "VmRSS") / 1024)
            if wrk.non_2xx or wrk.socket_errors:
                print(
                    f"  ! {name}: {wrk.non_2xx} non-2xx responses, socket errors: {wrk.socket_errors or 'none'}",
                    file=sys.stderr,
                )
                if wrk.failures:  # only with --diagnose
                    print("    " + wrk.failures.replace("\n", "\n    "), file=sys.stderr)
        result.peak_rss_mib = memory_kib(pid, "VmHWM") / 1024
        if args.profile:
            # An extra, unmeasured run under py-spy: sampling costs the server CPU.
            result.requests_total += profile(server.name, pid, url, body, args, work)
            result.wrk_calls += 1
    finally:
        server.stop()
    if (server.cwd / "collector.yaml").exists():  # a collector: check what it stored
        result.stored = count_lines(server.cwd / "store")
        result.staged = count_lines(server.cwd / "state" / "staging")
        result.exit_code = server.process.returncode
        if result.staged and server.log is not None:
            tail = server.log.read_text(errors="replace").splitlines()[-15:]
            print(
                f"  ! {name}: {result.staged:,} events still in staging after SIGTERM; log ends:",
                file=sys.stderr,
            )
            print("    " + "\n    ".join(tail), file=sys.stderr)
        shutil.rmtree(server.cwd, ignore_errors=True)  # runs write gigabytes: do not keep them
    return result


def profile(name: str, pid: int, url: str, body: Path, args: argparse.Namespace, work: Path) -> int:
    """py-spy the server's process tree under the same load; print the top frames, keep the stacks.

    Returns the number of requests wrk completed meanwhile (they are in the store too)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    args.profile.mkdir(parents=True, exist_ok=True)
    raw = args.profile / f"{name}.txt"
    seconds = max(1, round(args.duration))
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
            "--function",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    requests = run_wrk(url, body, work / "post.lua", seconds, args.connections, args.wrk_core).requests
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not raw.exists():
        print(f"  ! py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        return requests
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            # py-spy names our modules "logbridge/x.py" or just "x.py"; libraries keep their folder.
            where = frame[frame.rfind("(") + 1 :]
            if where.startswith("logbridge/") or ("/" not in where and not where.startswith("<")):
                inclusive[frame] = inclusive.get(frame, 0) + count
    print(f"\nprofile of {name} ({total} samples; stacks in {raw}):", file=sys.stderr)
    for title, table in (("own time", own), ("logbridge, inclusive", inclusive)):
        print(f"  {title}:", file=sys.stderr)
        # Frames under (nearly) every sample are the server's entry points: skip them.
        ranked = [kv for kv in sorted(table.items(), key=lambda kv: -kv[1]) if kv[1] < 0.98 * total]
        for frame, count in ranked[:12]:
            print(f"    {count / max(total, 1):6.1%}  {frame}", file=sys.stderr)
    return requests


def compare_trees(args: argparse.Namespace, work: Path, bodies: dict[str, tuple[Path, int]]) -> None:
    """Old tree vs this one, alternating, ``--pairs`` times per configuration; prints the pairs."""
    new_tree = BENCH.parent
    old_tree = args.old.resolve()
    names = args.only or ["collector-flush"]
    durability = {"collector-flush": "flush", "collector-fsync": "fsync", "collector-single": "flush"}
    for name in names:
        if name not in durability:
            raise SystemExit(f"--old compares collector configurations only, not {name}")
    print(f"old tree: {old_tree}; new tree: {new_tree}", file=sys.stderr)
    rows = []
    for name in names:
        body, events = bodies[name]
        for pair in range(1, args.pairs + 1):
            order = [("old", old_tree), ("new", new_tree)]
            if pair % 2 == 0:
                order.reverse()
            got: dict[str, Measurement] = {}
            for which, tree in order:
                server = collector_server(durability[name], work, args.server, tree)
                got[which] = measure(f"{name} {which}", server, body, events, args, work)
                m = got[which]
                sent = m.requests_total * events
                slack = args.connections * events * m.wrk_calls
                if m.stored is None or not sent <= m.stored <= sent + slack or m.staged:
                    print(
                        f"  ! {name} {which}: stored {m.stored}, answered {sent}: MISMATCH", file=sys.stderr
                    )
            cells = []
            for which in ("old", "new"):
                wrk, cpu = got[which].median()
                cells.append((cpu / (wrk.requests * events) * 1e6, got[which].events_per_s))
            (old_us, old_rate), (new_us, new_rate) = cells
            rows.append((name, pair, order[0][0], old_us, new_us, old_rate, new_rate))
            print(
                f"  pair {pair} ({order[0][0]} first): old {old_us:.2f} µs/event, new {new_us:.2f}: "
                f"{new_us / old_us:.2f}",
                file=sys.stderr,
                flush=True,
            )
    print(
        "| configuration | pair | first | old CPU µs/event | new CPU µs/event | new/old | events/s old → new |"
    )
    print("|---|---:|---|---:|---:|---:|---|")
    for name, pair, first, old_us, new_us, old_rate, new_rate in rows:
        print(
            f"| {name} | {pair} | {first} | {old_us:.2f} | {new_us:.2f} | {new_us / old_us:.2f} "
            f"| {old_rate:,.0f} → {new_rate:,.0f} |"
        )
    for name in names:
        ratios = [r[4] / r[3] for r in rows if r[0] == name]
        median = statistics.median(ratios)
        print(f"{name}: median new/old CPU µs/event {median:.2f} over {len(ratios)} pairs")


def compare_together(args: argparse.Namespace, work: Path, bodies: dict[str, tuple[Path, int]]) -> None:
    """Old tree and this one at the same time, both servers on the server core, each under its own
    wrk (half the connections each) on the wrk core: whatever else loads the machine loads both
    alike. ``--pairs`` rounds after a warm-up; each round's CPU µs per event of both."""
    name = (args.only or ["collector-flush"])[0]
    if name not in ("collector-flush", "collector-fsync"):
        raise SystemExit(f"--together compares batch configurations only, not {name}")
    trees = {"old": args.old.resolve(), "new": BENCH.parent}
    print(f"old tree: {trees['old']}; new tree: {trees['new']}; both at once", file=sys.stderr)
    servers = {
        which: collector_server(name.split("-")[1], work, args.server, tree) for which, tree in trees.items()
    }
    run_together(args, work, name, bodies[name], servers)


def compare_ui(args: argparse.Namespace, work: Path, bodies: dict[str, tuple[Path, int]]) -> None:
    """What the operator page costs: this tree's collector with ``ui`` off and on, at the same
    time as in `compare_together`. With ``--ui-poll SECONDS`` the page's JSON is read meanwhile
    (``/api/stats``, ``/api/recent`` and a filtered one, as an open page does every 2 s)."""
    name = (args.only or ["collector-flush"])[0]
    if name not in ("collector-flush", "collector-fsync", "collector-single"):
        raise SystemExit(f"--ui-cost runs a collector configuration, not {name}")
    durability = "fsync" if name == "collector-fsync" else "flush"
    servers = {
        "off": collector_server(durability, work, args.server),
        "on": collector_server(durability, work, args.server, ui={"enabled": True}),
    }
    poll = f"http://127.0.0.1:{servers['on'].port}" if args.ui_poll else None
    print(f"this tree, ui off and on, both at once; page read every {args.ui_poll or '-'} s", file=sys.stderr)
    run_together(args, work, name, bodies[name], servers, poll=poll)


def run_together(
    args: argparse.Namespace,
    work: Path,
    name: str,
    body_events: tuple[Path, int],
    servers: dict[str, Server],
    poll: str | None = None,
) -> None:
    """Two servers (``servers``: reference first, then the one measured) on the server core, each
    under its own wrk, ``--pairs`` rounds after a warm-up; prints each round's CPU µs per event
    and the median ratio. ``poll``: a collector's base URL whose operator page is read meanwhile."""
    body, events = body_events
    (ref, _), (new, _) = servers.items()
    lua = work / "post.lua"
    half = max(1, args.connections // 2)
    ratios = []
    stop = threading.Event()
    poller = threading.Thread(target=_poll_ui, args=(poll, args.ui_poll, stop)) if poll else None
    print(
        f"| configuration | round | {ref} CPU µs/event | {new} CPU µs/event | {new}/{ref} | events/s {ref} → {new} |"
    )
    print("|---|---:|---:|---:|---:|---|")
    try:
        for which, server in servers.items():
            server.name = f"{name}-{which}"
            server.start(args.server_core, work)
        if poller is not None:
            poller.start()
        for round_ in range(args.pairs + 1):
            got: dict[str, WrkResult] = {}
            before = {which: cpu_seconds(s.process.pid) for which, s in servers.items() if s.process}
            seconds = args.warmup if round_ == 0 else args.duration
            threads = [
                threading.Thread(
                    target=_load, args=(got, which, server, body, lua, seconds, half, args.wrk_core)
                )
                for which, server in servers.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if round_ == 0:
                continue  # warm-up
            us = {}
            for which, server in servers.items():
                assert server.process is not None
                cpu = cpu_seconds(server.process.pid) - before[which]
                us[which] = cpu / (got[which].requests * events) * 1e6
            ratios.append(us[new] / us[ref])
            print(
                f"| {name} | {round_} | {us[ref]:.2f} | {us[new]:.2f} | {ratios[-1]:.2f} "
                f"| {got[ref].rate * events:,.0f} → {got[new].rate * events:,.0f} |",
                flush=True,
            )
    finally:
        stop.set()
        if poller is not None:
            poller.join()
        for server in servers.values():
            server.stop()
    print(
        f"{name}, both at once: median {new}/{ref} CPU µs/event {statistics.median(ratios):.2f} "
        f"over {len(ratios)} rounds"
    )


def _poll_ui(base_url: str, every: float, stop: threading.Event) -> None:
    """Read the operator page's JSON every ``every`` seconds until ``stop``, as an open page
    does; a failure is printed, not raised (the measurement goes on)."""
    while not stop.wait(every):
        for path in ("/api/stats", "/api/recent?limit=50", "/api/recent?limit=50&filter=alice"):
            try:
                with urllib.request.urlopen(base_url + path, timeout=5) as response:
                    response.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                print(f"  ! {path}: {exc}", file=sys.stderr)


def _load(
    got: dict[str, WrkResult],
    which: str,
    server: Server,
    body: Path,
    lua: Path,
    seconds: float,
    conns: int,
    core: int,
) -> None:
    got[which] = run_wrk(f"http://127.0.0.1:{server.port}/events", body, lua, seconds, conns, core)


def count_lines(root: Path) -> int:
    """Lines in every ``*.ndjson`` file under ``root`` (0 if it does not exist)."""
    total = 0
    for path in root.rglob("*.ndjson"):
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                total += chunk.count(b"\n")
    return total


HEADERS = [
    "configuration",
    "events/s",
    "MB/s",
    "req/s",
    "CPU s",
    "CPU %",
    "CPU µs/event",
    "peak RSS MiB",
    "RSS MiB start→end",
    "p50/p99 ms",
    "runs",
]


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="ASGI server for both the collector and the minimal receiver",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per configuration (median reported)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the timed runs")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000, help="events per request")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--wrk-core", type=int, default=1)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run only these configurations (collector-flush, collector-fsync, collector-single, "
        "minimal, minimal-single); repeatable",
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="print the status and body of failed responses (slows wrk: not for numbers)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after the timed runs, one more run under py-spy; stacks go to DIR (not for numbers)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, configs)")
    parser.add_argument(
        "--old",
        type=Path,
        metavar="TREE",
        help="compare the collector of this source tree (a checkout of an older commit) with this one",
    )
    parser.add_argument("--pairs", type=int, default=4, help="old/new pairs per configuration with --old")
    parser.add_argument(
        "--together",
        action="store_true",
        help="with --old: run both servers at once (same core, a wrk each) instead of alternating",
    )
    parser.add_argument(
        "--ui-cost",
        action="store_true",
        help="this tree's collector with the operator page (ui) off and on, both at once; --pairs rounds",
    )
    parser.add_argument(
        "--ui-poll",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --ui-cost: read the page's JSON this often meanwhile (an open page: 2)",
    )
    parser.add_argument("--serve-granian", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_granian:
        serve_granian(args.serve_granian)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset is not installed: apt-get install util-linux")

    work = Path(tempfile.mkdtemp(prefix="logbridge-bench-"))
    (work / "post.lua").write_text(LUA + (LUA_DIAGNOSE if args.diagnose else ""))
    batch_body = work / f"batch-{args.batch}.ndjson"
    batch_body.write_bytes(dss_events(args.batch))
    single_body = work / "single.ndjson"
    single_body.write_bytes(dss_events(1, seed=7))
    avg = batch_body.stat().st_size / args.batch
    print(
        f"body: {args.batch} events, {batch_body.stat().st_size:,} bytes ({avg:.0f} B/event); "
        f"server {args.server} on core {args.server_core}, wrk -t1 -c{args.connections} on core {args.wrk_core}; "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )

    if args.old is not None or args.ui_cost:
        bodies = {
            "collector-flush": (batch_body, args.batch),
            "collector-fsync": (batch_body, args.batch),
            "collector-single": (single_body, 1),
        }
        try:
            if args.ui_cost:
                compare_ui(args, work, bodies)
            else:
                (compare_together if args.together else compare_trees)(args, work, bodies)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        return

    plan = [
        ("collector-flush", lambda: collector_server("flush", work, args.server), batch_body, args.batch),
        ("collector-fsync", lambda: collector_server("fsync", work, args.server), batch_body, args.batch),
        ("collector-single", lambda: collector_server("flush", work, args.server), single_body, 1),
        ("minimal", lambda: minimal_server(args.server), batch_body, args.batch),
        ("minimal-single", lambda: minimal_server(args.server), single_body, 1),
    ]
    results: dict[str, Measurement] = {}
    try:
        for name, make, body, events in plan:
            if args.only and name not in args.only:
                continue
            label = f"{name} ({args.server})"
            results[name] = measure(label, make(), body, events, args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print_table([m.row() for m in results.values()])
    print()
    for name, m in results.items():
        if m.stored is not None:
            sent = m.requests_total * m.events_per_request
            # wrk stops with up to one request in flight per connection: stored, never counted.
            slack = args.connections * m.events_per_request * m.wrk_calls
            verdict = "ok" if sent <= m.stored <= sent + slack and not m.staged else "MISMATCH"
            print(
                f"{name}: {m.stored:,} events in the store after SIGTERM, {sent:,} answered to wrk "
                f"(+ at most {slack:,} in flight when wrk stopped), {m.staged:,} left in staging, "
                f"exit code {m.exit_code}: {verdict}"
            )
    for ours, floor in (
        ("collector-flush", "minimal"),
        ("collector-fsync", "minimal"),
        ("collector-single", "minimal-single"),
    ):
        if ours in results and floor in results:
            ratio = results[ours].events_per_s / results[floor].events_per_s
            print(f"{ours} / {floor}: {ratio:.2f} ({ratio:.0%} of a receiver that only counts lines)")
    if "collector-flush" in results:
        rate = results["collector-flush"].events_per_s
        print(
            f"target ≥ 150,000 events/s with flush: {'met' if rate >= 150_000 else 'NOT met'} ({rate:,.0f})"
        )
    if "collector-single" in results:
        rate = results["collector-single"].median()[0].rate
        print(
            f"target ≥ 10,000 single-event requests/s: {'met' if rate >= 10_000 else 'NOT met'} ({rate:,.0f})"
        )


if __name__ == "__main__":
    main()
