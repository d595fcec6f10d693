#!/usr/bin/env python3
"""Benchmark: `logbridge ship --once` against syslog-ng 3.38, same backlog, same sink.

    python bench/shipper.py [--lines 1000000] [--runs 3] [--workdir /tmp/lb-bench]

Peers from Debian: apt-get install nginx-light syslog-ng-core syslog-ng-mod-http (and wrk for
bench/collector.py).

1. A backlog of ~333-byte DSS log4j audit lines (bench/peers/gen.py, deterministic).
2. nginx answering 204 to every POST (bench/peers/nginx.conf.tmpl): a sink that is never the
   bottleneck; its access log counts the bytes that arrived.
3. logbridge ship --once (batch 1000 lines, no compression: syslog-ng's http() does not compress
   either) and syslog-ng (file() source flags(no-parse) → http() batch-lines(1000)), each from
   an empty state, each run until nginx has every byte; lines/s, MB/s, CPU seconds and peak RSS
   come from the process's own rusage (wait4), medians of --runs.
4. The same backlog to the real logbridge collector (gzip level 1, durability flush): the
   end-to-end rate.
5. Write-to-stored latency at a steady 5,000 lines/s through the shipper daemon and the real
   collector: p50/p99 of (collector's serverTimestamp - time the line was written).
6. Many files (``--many-only`` runs just this): the same lines in 1 file and dealt round-robin
   to N files (``--many-files``, 3,000), ``ship --once`` → nginx under ``ulimit -n 1024`` (so
   that ``max_open_files`` is at work), lines/s and CPU seconds of N files against 1 file; then
   the daemon with the real collector while 60,000 lines are appended round-robin over 20 s
   (1 file, then N files): how long after the last write every line is stored, and CPU.

Not a test: numbers depend on the machine. Processes are pinned (taskset) when it exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from logbridge.collector.local import free_port, local_config

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
ROOT = HERE.parent
PY = sys.executable
SYSLOG_NG = shutil.which("syslog-ng") or "/usr/sbin/syslog-ng"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def pin(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") else []


@dataclass
class Run:
    name: str
    lines: int
    nbytes: int
    wall: float
    cpu: float
    rss_mb: float

    def row(self) -> str:
        return (
            f"{self.name:<28} {self.lines / self.wall:>12,.0f} {self.nbytes / self.wall / 1e6:>8.1f} "
            f"{self.cpu:>8.2f} {self.rss_mb:>8.1f} {self.wall:>7.2f}"
        )


def wait_rusage(proc: subprocess.Popen[bytes]) -> tuple[float, float]:
    """(CPU seconds, peak RSS MB) of a child, from wait4."""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ sink


class Nginx:
    def __init__(self, work: Path):
        self.dir = work / "nginx"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        self.access = self.dir / "access.log"
        conf = (PEERS / "nginx.conf.tmpl").read_text()
        for k, v in {
            "@WORKERS@": "1",
            "@PORT@": str(self.port),
            "@ACCESS_LOG@": f"{self.access} sink",
            "@RUNDIR@": str(self.dir),
        }.items():
            conf = conf.replace(k, v)
        if os.geteuid() != 0:
            conf = conf.replace("user nobody nogroup;", "")
        (self.dir / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [*pin("1"), NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def reset(self) -> None:
        self.access.write_bytes(b"")
        self.proc.send_signal(signal.SIGUSR1)  # reopen the log
        time.sleep(0.2)

    def received(self) -> int:
        total = 0
        try:
            data = self.access.read_bytes()
        except FileNotFoundError:
            return 0
        for line in data.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[4 - 1] != b"-":
                total += int(parts[3])
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------------------- runners


def ship_config(work: Path, url: str, backlog: Path, compression: str) -> Path:
    state = work / "ship-state"
    shutil.rmtree(state, ignore_errors=True)
    cfg = {
        "node": "bench",
        "collector": {"url": url, "compression": compression},
        "inputs": [{"path": str(backlog)}],
        "state_dir": str(state),
        "batch": {"max_events": 1000, "max_bytes": "1MiB", "linger": "200ms"},
    }
    path = work / "ship.yaml"
    path.write_text(json.dumps(cfg))
    return path


def limit_descriptors(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: ``ulimit -n LIMIT`` for the child."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def run_shipper(
    work: Path,
    url: str,
    backlog: Path,
    meta: dict,
    name: str,
    compression: str = "none",
    fd_limit: int | None = None,
) -> Run:
    cfg = ship_config(work, url, backlog, compression)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*pin("0"), PY, "-m", "logbridge", "ship", "--config", str(cfg), "--once"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=work,
        preexec_fn=limit_descriptors(fd_limit) if fd_limit else None,
    )
    cpu, rss = wait_rusage(proc)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"shipper exited with {proc.returncode}")
    return Run(name, meta["lines"], meta["bytes"], wall, cpu, rss)


def run_syslog_ng(work: Path, nginx: Nginx, backlog: Path, meta: dict) -> Run:
    d = work / "syslog-ng"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    env = dict(
        os.environ,
        SNG_FILE=str(backlog),
        SNG_URL=nginx.url,
        SNG_BATCH_LINES="1000",
        SNG_BATCH_BYTES="1048576",
        SNG_WORKERS="1",
        SNG_FETCH="10000",
        SNG_IW="100000",
    )
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [
            *pin("0"),
            SYSLOG_NG,
            "-F",
            "-f",
            str(PEERS / "syslog-ng.conf"),
            f"--persist-file={d}/persist",
            f"--pidfile={d}/pid",
            f"--control={d}/ctl",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(d / "err.log").open("wb"),
    )
    deadline = t0 + 300
    while nginx.received() < meta["bytes"]:
        if proc.poll() is not None:
            raise RuntimeError(f"syslog-ng exited: {(d / 'err.log').read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError("syslog-ng did not deliver the backlog in 300 s")
        time.sleep(0.02)
    wall = time.monotonic() - t0
    proc.send_signal(signal.SIGTERM)
    cpu, rss = wait_rusage(proc)
    return Run("syslog-ng 3.38 → nginx", meta["lines"], meta["bytes"], wall, cpu, rss)


def collector_yaml(work: Path, port: int) -> Path:
    home = work / "collector"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir()
    cfg = local_config(home, port, max_age="1s")
    path = home / "collector.yaml"
    path.write_text(json.dumps(cfg))
    return path


def start_collector(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cfg = collector_yaml(work, port)
    proc = subprocess.Popen(
        [*pin("1"), PY, "-m", "logbridge", "collect", "--config", str(cfg), "--log-level", "warning"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=(work / "collector" / "log").open("wb"),
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}/events"
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("collector did not start") from None
            time.sleep(0.05)


def latency(work: Path, rate: int, seconds: float) -> tuple[float, float, int]:
    """p50, p99 (s) of write → collector serverTimestamp at ``rate`` lines/s, and the line count."""
    from datetime import datetime

    coll, url = start_collector(work)
    live = work / "live"
    shutil.rmtree(live, ignore_errors=True)
    live.mkdir()
    log = live / "audit.log"
    log.write_bytes(b"")
    cfg = ship_config(work, url, live / "*.log", "gzip")
    ship = subprocess.Popen(
        [PY, "-m", "logbridge", "ship", "--config", str(cfg)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=(work / "ship-live.log").open("wb"),
    )
    written = 0
    try:
        time.sleep(1.0)
        t0 = time.time()
        with log.open("ab", buffering=0) as fh:
            while (now := time.time()) - t0 < seconds:
                due = int((now - t0) * rate)
                chunk = []
                while written < due:
                    chunk.append(
                        orjson.dumps(
                            {
                                "severity": "INFO",
                                "logger": "dku.audit.generic",
                                "message": {"msgType": "bench", "seq": written, "t": now},
                            }
                        )
                    )
                    written += 1
                if chunk:
                    fh.write(b"\n".join(chunk) + b"\n")
                time.sleep(0.01)
        time.sleep(3.0)
    finally:
        ship.send_signal(signal.SIGTERM)
        ship.wait(timeout=30)
        coll.send_signal(signal.SIGTERM)
        coll.wait(timeout=30)
    delays = []
    for path in (work / "collector" / "store").rglob("*.ndjson"):
        for line in path.read_bytes().splitlines():
            rec = orjson.loads(line)
            received = datetime.strptime(rec["serverTimestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            delays.append(received - rec["clientEvent"]["t"])
    delays.sort()
    if not delays:
        return float("nan"), float("nan"), 0
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99)], len(delays)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/lb-bench")
    ap.add_argument("--skip-syslog-ng", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--latency-only", action="store_true", help="Only the 5,000 lines/s latency run.")
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--many-files", type=int, default=3000, help="Files of the many-files case.")
    ap.add_argument("--many-lines", type=int, default=300_000, help="Lines of its --once part.")
    ap.add_argument("--many-only", action="store_true", help="Only the many-files case.")
    ap.add_argument("--skip-many", action="store_true")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.latency_only:
        report_latency(work, args.latency_seconds)
        return
    if args.many_only:
        report_many_files(work, args.many_files, args.many_lines, args.runs)
        return
    backlog = work / f"audit_{args.lines}.ndjson"
    if not backlog.exists():
        subprocess.run([PY, str(PEERS / "gen.py"), "-n", str(args.lines), "-o", str(backlog)], check=True)
    meta = json.loads(Path(f"{backlog}.meta.json").read_text())
    print(
        f"backlog: {meta['lines']:,} lines, {meta['bytes'] / 1e6:.0f} MB ({meta['bytes'] / meta['lines']:.0f} B/line)"
    )

    nginx = Nginx(work)
    results: dict[str, list[Run]] = {}
    try:
        for _ in range(args.runs):
            for name in ("logbridge ship → nginx", "syslog-ng"):
                if name == "syslog-ng" and args.skip_syslog_ng:
                    continue
                nginx.reset()
                if name == "syslog-ng":
                    run = run_syslog_ng(work, nginx, backlog, meta)
                else:
                    run = run_shipper(work, nginx.url, backlog, meta, name)
                    got = nginx.received()
                    if got != meta["bytes"]:
                        raise RuntimeError(f"nginx got {got} bytes of {meta['bytes']}")
                results.setdefault(run.name, []).append(run)
    finally:
        nginx.stop()

    coll, url = start_collector(work)
    try:
        results["logbridge ship → collector"] = [
            run_shipper(work, url, backlog, meta, "logbridge ship → collector", compression="gzip")
        ]
    finally:
        coll.send_signal(signal.SIGTERM)
        coll.wait(timeout=60)

    print(
        f"\n{'':<28} {'lines/s':>12} {'MB/s':>8} {'CPU s':>8} {'RSS MB':>8} {'wall s':>7} {'max RSS':>8}"
        f"   (medians of {args.runs} runs; max RSS: the highest of them)"
    )
    medians: dict[str, Run] = {}
    for name, runs in results.items():
        runs.sort(key=lambda r: r.wall)
        m = runs[len(runs) // 2]
        medians[name] = Run(
            name,
            m.lines,
            m.nbytes,
            m.wall,
            statistics.median(r.cpu for r in runs),
            statistics.median(r.rss_mb for r in runs),
        )
        print(f"{medians[name].row()} {max(r.rss_mb for r in runs):>8.1f}")
    ours, peer = medians.get("logbridge ship → nginx"), medians.get("syslog-ng 3.38 → nginx")
    if ours and peer:
        print(
            f"\nratio logbridge/syslog-ng: {peer.wall / ours.wall:.2f}x lines/s, "
            f"{ours.cpu / peer.cpu:.2f}x CPU, {ours.rss_mb / peer.rss_mb:.2f}x RSS"
        )
    if not args.skip_latency:
        report_latency(work, args.latency_seconds)
    if not args.skip_many:
        report_many_files(work, args.many_files, args.many_lines, args.runs)


def report_latency(work: Path, seconds: float) -> None:
    p50, p99, n = latency(work, 5000, seconds)
    print(
        f"write → collector at 5,000 lines/s ({n:,} lines): p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )


# ------------------------------------------------------------------------------------ many files

FD_LIMIT = 1024  # ulimit -n of the shipper in the many-files case


def backlog_file(work: Path, lines: int) -> tuple[Path, dict]:
    path = work / f"audit_{lines}.ndjson"
    if not path.exists():
        subprocess.run([PY, str(PEERS / "gen.py"), "-n", str(lines), "-o", str(path)], check=True)
    return path, json.loads(Path(f"{path}.meta.json").read_text())


def deal(backlog: Path, directory: Path, files: int) -> None:
    """The backlog's lines dealt round-robin to ``files`` files (line i → file i % files)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    buckets: list[list[bytes]] = [[] for _ in range(files)]
    with backlog.open("rb") as fh:
        for i, line in enumerate(fh):
            buckets[i % files].append(line)
    for n, bucket in enumerate(buckets):
        (directory / f"app-{n:05}.log").write_bytes(b"".join(bucket))


def stored_events(url: str) -> int:
    """The collector's accepted events (sum of logbridge_events_in_total)."""
    import httpx

    text = httpx.get(url.rsplit("/", 1)[0] + "/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(r"^logbridge_events_in_total\{[^}]*\} (\S+)$", text, re.M)))


def live_round_robin(work: Path, lines: list[bytes], files: int, seconds: float) -> tuple[float, float, int]:
    """The shipper daemon (real collector, gzip) while ``lines`` are appended round-robin to
    ``files`` files over ``seconds``: (seconds from the last write until all are stored, the
    shipper's CPU seconds, its peak descriptors)."""
    coll, url = start_collector(work)
    live = work / "many-live"
    shutil.rmtree(live, ignore_errors=True)
    live.mkdir()
    paths = [live / f"app-{n:05}.log" for n in range(files)]
    cfg = ship_config(work, url, live / "*.log", "gzip")
    ship = subprocess.Popen(
        [*pin("0"), PY, "-m", "logbridge", "ship", "--config", str(cfg)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=(work / "ship-many-live.log").open("wb"),
        preexec_fn=limit_descriptors(FD_LIMIT),
    )
    peak = 0
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        written = 0
        while written < len(lines):
            due = min(len(lines), int((time.monotonic() - t0) / seconds * len(lines)) + 1)
            while written < due:
                with paths[written % files].open("ab") as fh:
                    fh.write(lines[written])
                written += 1
            time.sleep(0.005)
        last_write = time.monotonic()
        deadline = last_write + 600
        while stored_events(url) < len(lines):
            peak = max(peak, len(os.listdir(f"/proc/{ship.pid}/fd")))
            if time.monotonic() > deadline or ship.poll() is not None:
                raise RuntimeError(f"not all lines stored: see {work / 'ship-many-live.log'}")
            time.sleep(0.05)
        lag = time.monotonic() - last_write
    finally:
        ship.send_signal(signal.SIGTERM)
        cpu, _ = wait_rusage(ship)
        coll.send_signal(signal.SIGTERM)
        coll.wait(timeout=60)
    return lag, cpu, peak


def report_many_files(work: Path, files: int, lines: int, runs: int) -> None:
    backlog, meta = backlog_file(work, lines)
    many = work / f"many-{files}"
    deal(backlog, many, files)
    print(
        f"\nmany files: {meta['lines']:,} lines ({meta['bytes'] / 1e6:.0f} MB) in 1 file and in {files:,} "
        f"files (round-robin), ship --once → nginx, ulimit -n {FD_LIMIT}, medians of {runs} runs"
    )
    nginx = Nginx(work)
    results: dict[str, list[Run]] = {}
    try:
        for _ in range(runs):
            for name, source in (("1 file", backlog), (f"{files:,} files", many / "*.log")):
                nginx.reset()
                run = run_shipper(work, nginx.url, source, meta, name, fd_limit=FD_LIMIT)
                got = nginx.received()
                if got != meta["bytes"]:
                    raise RuntimeError(f"nginx got {got} bytes of {meta['bytes']} ({name})")
                results.setdefault(name, []).append(run)
    finally:
        nginx.stop()
    print(f"{'':<28} {'lines/s':>12} {'MB/s':>8} {'CPU s':>8} {'RSS MB':>8} {'wall s':>7}")
    medians = []
    for rs in results.values():
        rs.sort(key=lambda r: r.wall)
        m = rs[len(rs) // 2]
        m.cpu = statistics.median(r.cpu for r in rs)
        medians.append(m)
        print(m.row())
    one, n = medians
    print(
        f"ratio {files:,} files / 1 file: {one.wall / n.wall:.2f}x lines/s, {n.cpu / one.cpu:.2f}x CPU seconds"
    )

    live_lines = [line for _, line in zip(range(60_000), backlog.open("rb"), strict=False)]
    print(f"\nlive: {len(live_lines):,} lines appended round-robin over 20 s, daemon → real collector")
    for count in (1, files):
        lag, cpu, peak = live_round_robin(work, live_lines, count, 20.0)
        print(
            f"{count:>6,} files: all stored {lag:.1f} s after the last write, shipper CPU {cpu:.1f} s, "
            f"at most {peak} descriptors open"
        )


if __name__ == "__main__":
    main()
