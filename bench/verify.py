"""``logbridge verify`` speed on a local store, against plain hashing of the same files.

    python bench/verify.py            # ~1 GB store
    python bench/verify.py 200        # ~200 MB
    python bench/verify.py 1000 --dir /var/tmp/lb-verify-store   # keep (and reuse) the store

The store is written by a real `FilesystemSink` (what the collector uses: staging, sealing,
manifests, publication) with ~480-byte stored lines in 64 MiB files over 8 topics × 6 hours.
Writing it runs three times on the first 64 MiB (manifests off, on without line digests, on) to
show what sealing costs the writer (CPU per MB), and the collector's in-process ingest of
``bench/collector.py``'s body (CPU µs per event) in the same three modes, alternating. Then, alternating, each twice (files in the page cache: the disk's own
speed is not measured, hashing is):

- ``logbridge verify --format json`` as a process;
- ``sha256sum`` over every data file (one process, one core), the reference;
- plain ``hashlib`` SHA-256 over every data file on the same number of threads as verify.

Printed: MB/s of store, CPU seconds and peak RSS of each process (``os.wait4``), and ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import structlog

from logbridge.sinks.filesystem import FilesystemSink
from logbridge.sinks.partition import PartitionPaths

MiB = 1024 * 1024
TOPICS = ["generic", "authfail", "apicalls", "apinode-query", "generic-failure", "compute", "t7", "t8"]


def lines(n: int, start: int) -> bytes:
    out = []
    for i in range(start, start + n):
        event = {
            "msgType": "dataset-read-data",
            "authUser": f"user{i % 97}",
            "seq": i,
            "projectKey": "PRJ",
            "x": "a" * 260,
        }
        stored = {
            "clientEvent": event,
            "origAddress": "10.0.0.7",
            "serverTimestamp": "2026-12-01T10:15:30.609+0000",
            "topic": "generic",
        }
        out.append(orjson.dumps(stored))
    return b"\n".join(out) + b"\n"


def write_store(
    root: Path, staging: Path, megabytes: int, *, manifests: bool = True, line_digests: bool = True
) -> tuple[float, int]:
    """Write ~megabytes of store through a real sink; returns (CPU seconds, bytes)."""
    sink = FilesystemSink(
        "store",
        f"file://{root}",
        staging / "store",
        partitions=PartitionPaths("{topic}/{routing_key}/%Y/%m/%d/%H"),
        max_bytes=64 * MiB,
        max_age=3600,
        manifests=manifests,
        line_digests=line_digests,
    )
    batch = lines(1000, 0)
    total = 0
    cpu = time.process_time()
    n = 0
    while total < megabytes * MiB:
        topic = TOPICS[n % len(TOPICS)]
        partition = f"{topic}/default/2026/12/01/{10 + (n // len(TOPICS)) % 6:02d}"
        receipt = sink.append(partition, batch)
        sink.acknowledge([receipt])
        total += len(batch)
        n += 1
        if n % 64 == 0:
            sink.roll(time.monotonic())
            sink.publish()
    sink.roll(time.monotonic(), force=True)
    sink.publish()
    sink.close()
    return time.process_time() - cpu, total


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.ndjson") if ".logbridge" not in p.parts)


def run_process(cmd: list[str]) -> tuple[float, float, float, bytes]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def hashlib_threads(files: list[Path], threads: int) -> tuple[float, float]:
    def one(path: Path) -> str:
        sha = hashlib.sha256()
        buf = bytearray(8 * MiB)
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                sha.update(memoryview(buf)[:n])
        return sha.hexdigest()

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, files))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - started, cpu


def ingest_cost(work: Path, rounds: int = 6, batches: int = 100) -> None:
    """CPU µs per event of `Collector.ingest` (durability flush, in process) with manifests off,
    on without line digests, and on: rounds alternate, the median is printed."""
    import json
    import statistics

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import collector as bench_collector  # bench/collector.py: its 1000-event DSS body

    from logbridge.collector import config as config_mod
    from logbridge.collector import core
    from logbridge.collector.local import local_config

    items = bench_collector.dss_events(1000).strip().split(b"\n")
    modes = {"off": {"enabled": False}, "on, no line digests": {"line_digests": False}, "on": {}}
    collectors = {}
    for i, (mode, manifest) in enumerate(modes.items()):
        home = work / f"ingest-{i}"
        home.mkdir()
        config = local_config(home, 1)
        config["destinations"][0]["manifest"] = manifest
        (home / "c.yaml").write_text(json.dumps(config))
        collectors[mode] = core.Collector(config_mod.load(home / "c.yaml"))
        collectors[mode].start()
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        for mode, c in collectors.items():
            ctx = core.RequestContext("127.0.0.1")
            started = time.process_time()
            for _ in range(batches):
                c.ingest(list(items), ctx, time.time())
            times[mode].append((time.process_time() - started) / (batches * len(items)) * 1e6)
    for c in collectors.values():
        c.close()
    off = statistics.median(times["off"])
    for mode, runs in times.items():
        median = statistics.median(runs)
        print(f"Collector.ingest, manifests {mode}: {median:.2f} CPU µs/event ({median / off:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("megabytes", type=int, nargs="?", default=1000)
    parser.add_argument("--dir", type=Path, help="keep the store here (reused when it is there)")
    parser.add_argument("--threads", type=int, default=min(8, (os.cpu_count() or 2) * 2))
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    work = args.dir or Path(tempfile.mkdtemp(prefix="lb-bench-verify-"))
    root = work / "store"
    try:
        # What sealing costs the writer: the same 64 MiB with manifests off, without and with line digests.
        for manifests, per_line in ((False, False), (True, False), (True, True)):
            scratch = work / f"scratch-{manifests}-{per_line}"
            cpu, size = write_store(
                scratch / "store",
                scratch / "state" / "staging",
                64,
                manifests=manifests,
                line_digests=per_line,
            )
            mode = "on" if per_line else "on, no line digests" if manifests else "off"
            print(f"write 64 MiB, manifests {mode}: {cpu:.2f} CPU s ({size / MiB / cpu:,.0f} MiB per CPU s)")
            shutil.rmtree(scratch)
        ingest_cost(work)
        if not root.exists():
            cpu, size = write_store(root, work / "state" / "staging", args.megabytes)
            print(f"store written: {size / 1e6:,.0f} MB in {cpu:.1f} CPU s")
        files = data_files(root)
        size = sum(p.stat().st_size for p in files)
        manifests = sum(p.stat().st_size for p in (root / ".logbridge").rglob("*.manifest"))
        print(f"load average before the runs: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(
            f"store: {len(files)} data files, {size / 1e6:,.0f} MB; manifests {manifests / 1e6:,.1f} MB "
            f"({100 * manifests / size:.2f} %); {os.cpu_count()} CPUs, {args.threads} threads"
        )
        verify_cmd = [
            sys.executable,
            "-m",
            "logbridge",
            "verify",
            f"file://{root}",
            "--format",
            "json",
            "--threads",
            str(args.threads),
        ]
        sha_cmd = ["sha256sum", *map(str, files)]
        results: dict[str, list[tuple[float, float, float]]] = {"verify": [], "sha256sum": [], "hashlib": []}
        for _ in range(2):
            wall, cpu, rss, out = run_process(verify_cmd)
            report = orjson.loads(out)
            assert report["ok"] and report["checked"] == len(files), report["counts"]
            results["verify"].append((wall, cpu, rss))
            wall, cpu, rss, _ = run_process(sha_cmd)
            results["sha256sum"].append((wall, cpu, rss))
            wall, cpu = hashlib_threads(files, args.threads)
            results["hashlib"].append((wall, cpu, 0.0))
        print(f"{'':24} {'MB/s':>8} {'CPU s':>7} {'MB/CPU s':>9} {'peak RSS MiB':>13}")
        best = {}
        for name, runs in results.items():
            wall, cpu, rss = min(runs)
            best[name] = size / wall / 1e6
            label = {
                "verify": "logbridge verify",
                "sha256sum": "sha256sum (1 core)",
                "hashlib": f"hashlib, {args.threads} threads",
            }[name]
            print(
                f"{label:24} {best[name]:8,.0f} {cpu:7.2f} {size / cpu / 1e6:9,.0f} {rss if rss else float('nan'):13.0f}"
            )
        print(
            f"verify / sha256sum: {best['verify'] / best['sha256sum']:.2f}   "
            f"verify / hashlib threads: {best['verify'] / best['hashlib']:.2f}"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
