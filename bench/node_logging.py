"""Node-side logging costs, in one run (issue 3, item 9).

1. Per-event cost of ``audit.emit`` → JSON audit envelope → rolling file, configured the way
   a DSS node is (``logbridge.configure`` on a log4j RollingFileAppender + JSONAuditLayout,
   100MB × 20), against plain stdlib logging + python-json-logger writing the same event to a
   ``FileHandler``. Rounds alternate between the two so that both see the same machine state;
   the ratio is of the medians. Target: ≤ 1.5×.
2. Caller-side cost of ``EventServerHandler`` (what ``handler.handle(record)`` costs the
   application thread) with a real ``logbridge collect`` up, and with nothing listening:
   p50/p99/max µs. Target: p99 ≤ 100 µs with the collector down.

    python bench/logging.py [--events 20000] [--rounds 7]

(The file is run as a script; it is not imported as ``logging``.)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import httpx
import yaml
from pythonjsonlogger.json import JsonFormatter

import logbridge
from logbridge import audit
from logbridge.collector.local import free_port, local_config
from logbridge.handlers import EventServerHandler
from logbridge.log4j.jsonaudit import JSONAuditFormatter

FIELDS: dict[str, Any] = {
    "authUser": "admin",
    "projectKey": "CHURN_PREDICTION",
    "datasetName": "customers_prepared",
    "rows": 124_512,
    "connection": "filesystem_managed",
}
MSG_TYPE = "dataset-read-data"

DSS_AUDIT_PROPERTIES = """\
log4j.rootLogger=WARN, null
log4j.appender.null=org.apache.log4j.varia.NullAppender
log4j.logger.dku.audit=INFO, auditGeneric
log4j.additivity.dku.audit=false
log4j.appender.auditGeneric=org.apache.log4j.RollingFileAppender
log4j.appender.auditGeneric.File=${audit.dir}/audit.log
log4j.appender.auditGeneric.MaxFileSize=100MB
log4j.appender.auditGeneric.MaxBackupIndex=20
log4j.appender.auditGeneric.layout=com.dataiku.dip.logging.JSONAuditLayout
"""


def per_event_us(fn: Callable[[int], None], events: int) -> float:
    t0 = time.perf_counter()
    fn(events)
    return (time.perf_counter() - t0) / events * 1e6


# ------------------------------------------------------------------------------ audit path


def setup_baseline(tmp: Path) -> Callable[[int], None]:
    logger = logging.getLogger("bench.plain")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(tmp / "plain.log")
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)

    def run(n: int) -> None:
        info = logger.info
        for i in range(n):
            info({"msgType": MSG_TYPE, **FIELDS, "seq": i})

    return run


def setup_audit_translated(tmp: Path) -> tuple[Callable[[int], None], str]:
    props = tmp / "dku-log4j.properties"
    props.write_text(DSS_AUDIT_PROPERTIES)
    logbridge.configure(props, **{"audit.dir": str(tmp / "audit")})
    handler = logging.getLogger("dku.audit").handlers[0]
    return _audit_run("generic"), f"{type(handler).__name__} (logbridge.configure, log4j translation)"


def setup_audit_stdlib_rotating(tmp: Path) -> tuple[Callable[[int], None], str]:
    logger = logging.getLogger("dku.audit.stdlibrot")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = RotatingFileHandler(tmp / "rotating.log", maxBytes=100 * 1024 * 1024, backupCount=20)
    handler.setFormatter(JSONAuditFormatter(line_end=""))
    logger.addHandler(handler)
    return _audit_run("stdlibrot"), "stdlib RotatingFileHandler (seek+tell per record)"


def _audit_run(topic: str) -> Callable[[int], None]:
    def run(n: int) -> None:
        emit = audit.emit
        with audit.request("/api/datasets/get-data", user="admin"):
            for i in range(n):
                emit(topic, MSG_TYPE, **FIELDS, seq=i)

    return run


def bench_audit(events: int, rounds: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="lb-bench-") as d:
        tmp = Path(d)
        baseline = setup_baseline(tmp)
        translated, translated_name = setup_audit_translated(tmp)
        rotating, rotating_name = setup_audit_stdlib_rotating(tmp)
        cases = [
            ("stdlib logging + python-json-logger → FileHandler (baseline)", baseline),
            (f"audit.emit → JSON envelope → {translated_name}", translated),
            (f"audit.emit → JSON envelope → {rotating_name}", rotating),
        ]
        for _, fn in cases:  # warm-up: imports, caches, file creation
            fn(min(events, 2000))
        samples: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(rounds):
            for name, fn in cases:
                samples[name].append(per_event_us(fn, events))
        base = statistics.median(samples[cases[0][0]])
        return [(name, statistics.median(s), statistics.median(s) / base) for name, s in samples.items()]


# ------------------------------------------------------------------------- event server


class CollectorProcess:
    """A real ``logbridge collect`` on loopback with its store in a temp dir."""

    def __init__(self, home: Path):
        self.port = free_port()
        config = local_config(home, self.port)
        path = home / "collector.yaml"
        path.write_text(yaml.safe_dump(config))
        self.log = open(home / "collector.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "logbridge", "collect", "--config", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"collector did not start; see {home / 'collector.log'}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def caller_cost(url: str, events: int, spool_dir: Path | None, up: bool = True) -> tuple[list[float], Any]:
    handler = EventServerHandler(
        url, spool_dir=spool_dir, backoff_initial="100ms", backoff_max="1s", close_timeout="10s"
    )
    logger = logging.getLogger("dku.audit.bench-events")
    timings: list[float] = []
    clock = time.perf_counter_ns
    try:
        with audit.request("/api/datasets/get-data", user="admin"):
            for i in range(events):
                record = logger.makeRecord(
                    logger.name,
                    logging.INFO,
                    "(audit)",
                    0,
                    {"msgType": MSG_TYPE, **FIELDS, "seq": i},
                    (),
                    None,
                )
                record.mdc = {"apiCall": "/api/datasets/get-data", "user": "admin"}
                t0 = clock()
                handler.handle(record)
                timings.append((clock() - t0) / 1000)
                if i % 1000 == 999:
                    time.sleep(0.002)  # an application does other work between audit events
        if up:
            handler.wait_delivered(30)
    finally:
        handler.close(timeout=5 if up else 0.5)
    return timings, handler.stats


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def bench_event_server(events: int) -> list[tuple[str, list[float], Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="lb-bench-es-") as d:
        tmp = Path(d)
        (tmp / "collector").mkdir()
        collector = CollectorProcess(tmp / "collector")
        try:
            caller_cost(collector.url, 2000, None)  # warm-up
            rows.append(("collector up, spool_dir", *caller_cost(collector.url, events, tmp / "spool-up")))
            rows.append(("collector up, memory spool", *caller_cost(collector.url, events, None)))
        finally:
            collector.stop()
        nobody = f"http://127.0.0.1:{free_port()}/events"
        rows.append(("collector down, spool_dir", *caller_cost(nobody, events, tmp / "spool-down", up=False)))
        rows.append(("collector down, memory spool", *caller_cost(nobody, events, None, up=False)))
    return rows


# ----------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000, help="events per round / per case")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of the audit-path cases")
    args = parser.parse_args()
    logging.getLogger("logbridge.handlers").addHandler(logging.NullHandler())  # no warnings in the table
    logging.getLogger("logbridge.handlers").propagate = False
    logging.getLogger("httpx").setLevel(logging.WARNING)

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.events} events × {args.rounds} rounds"
    )
    print()
    print("| audit path (same event, one run) | µs/event (median) | ratio |")
    print("|---|---:|---:|")
    for name, us, ratio in bench_audit(args.events, args.rounds):
        print(f"| {name} | {us:.2f} | {ratio:.2f}× |")
    print()
    print("| EventServerHandler caller cost | p50 µs | p99 µs | max µs | sent | dropped |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, timings, stats in bench_event_server(args.events):
        dropped = stats.dropped_queue_full + stats.dropped_spool_full
        print(
            f"| {name} | {pct(timings, 0.50):.1f} | {pct(timings, 0.99):.1f} | {max(timings):.0f} "
            f"| {stats.sent_events} | {dropped} |"
        )
    print()
    print("targets: audit.emit ≤ 1.5× the python-json-logger path; p99 ≤ 100 µs with the collector down")


if __name__ == "__main__":
    main()
