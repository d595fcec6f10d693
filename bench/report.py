#!/usr/bin/env python3
"""``logbridge report`` over a store of ~10M events: a full scan (last-activity) and one-day questions.

    python bench/report.py                      # --events 10000000 --days 30 --cache DIR --gzip

The store is written once by samples/generate.py's store mode (the four sample nodes, their
volume scaled up, stored lines in ``{topic}/{routing_key}/%Y/%m/%d/%H`` partitions, one file per
node, partition and hour) into a cache folder and reused. Each question runs ``logbridge report``
as a subprocess (wall time, CPU s = user+sys of that process, peak RSS): once reading the JSON
(``--no-cache``), once filling an empty digest cache, once answering from it. The reference in the
same invocation is DuckDB alone counting the same files' lines with one declared column: the
floor of reading the JSON, so the ratios say what the report adds to it, or saves.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVENTS_PER_DAY = 2859 / 3  # samples/README.md: 2,859 events over three days


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("samples_generate", ROOT / "samples" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _write_chunk(args: tuple[Any, ...]) -> int:
    root, name, kind, seed, start, days, scale, gzipped = args
    return int(generator().write_node_store(root, name, kind, seed, start, days, scale, gzipped))


def build_store(root: Path, events: int, days: int, gzipped: bool) -> int:
    """Write the store in (node, 3-day) chunks on every core; the number of events written."""
    import multiprocessing

    gen = generator()
    scale = events / (SAMPLE_EVENTS_PER_DAY * days)
    chunks = []
    for offset in range(0, days, 3):
        start = gen.START + timedelta(days=offset)
        for name, kind in gen.NODES:
            chunks.append((root, name, kind, 2020 + offset, start, min(3, days - offset), scale, gzipped))
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        return sum(pool.map(_write_chunk, chunks))


def measure(argv: list[str]) -> dict[str, float]:
    """Run a command; wall s, CPU s and peak RSS MiB of that process alone."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else b""
    stderr = proc.stderr.read() if proc.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed:\n{stderr.decode()}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,
        "rows": stdout.count(b"\n"),
        "note": stderr.decode().strip().splitlines()[-1] if stderr.strip() else "",
    }


REFERENCE = """
import sys, duckdb, glob
files = sorted(glob.glob(sys.argv[1] + "/**/*.ndjson*", recursive=True))
files = [f for f in files if sys.argv[2] in f] if len(sys.argv) > 2 else files
n = duckdb.sql(
    "SELECT count(*) FROM read_json($f, format='newline_delimited', columns={'topic': 'VARCHAR'})",
    params={"f": files},
).fetchone()[0]
print(n)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--gzip", action="store_true", help="publish .ndjson.gz files")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logbridge-bench",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each question (the median is shown)")
    args = parser.parse_args()

    name = f"report-{args.events}-{args.days}d{'-gz' if args.gzip else ''}"
    store = args.cache / name
    done = store / ".complete"
    if not done.exists():
        print(f"writing the store once into {store} …", flush=True)
        started = time.perf_counter()
        written = build_store(store, args.events, args.days, args.gzip)
        done.write_text(str(written))
        print(f"  {written:,} events in {time.perf_counter() - started:.0f}s", flush=True)
    total = int(done.read_text())
    files = sum(1 for _ in store.rglob("*.ndjson*"))
    size = sum(p.stat().st_size for p in store.rglob("*.ndjson*"))
    print(f"store: {total:,} events, {files:,} files, {size / 2**30:.2f} GiB ({store})")

    gen = generator()
    day = (gen.START + timedelta(days=args.days // 2)).date()
    one_day = ["--since", day.isoformat(), "--until", (day + timedelta(days=1)).isoformat()]
    cache = args.cache / f"{name}-digests"
    shutil.rmtree(cache, ignore_errors=True)
    report = [sys.executable, "-m", "logbridge", "report", str(store)]
    direct = ["--no-cache", "--format", "csv"]
    cached = ["--cache", str(cache), "--format", "csv"]
    questions = [
        ("reference: DuckDB count(*), all files", [sys.executable, "-c", REFERENCE, str(store)], 0),
        ("last-activity, JSON (--no-cache)", [*report, "last-activity", *direct], 0),
        ("last-activity, filling the cache", [*report, "last-activity", *cached], 1),
        ("last-activity, from the cache", [*report, "last-activity", *cached], 0),
        (
            f"reference: DuckDB count(*), {day}",
            [sys.executable, "-c", REFERENCE, str(store), f"/{day:%Y/%m/%d}/"],
            0,
        ),
        (f"logins {day}, JSON", [*report, "logins", *one_day, *direct], 0),
        (f"api-usage {day}, JSON", [*report, "api-usage", *one_day, *direct], 0),
        (f"volume {day}, JSON", [*report, "volume", *one_day, *direct], 0),
        (f"logins {day}, from the cache", [*report, "logins", *one_day, *cached], 0),
        (f"api-usage {day}, from the cache", [*report, "api-usage", *one_day, *cached], 0),
        (f"volume {day}, from the cache", [*report, "volume", *one_day, *cached], 0),
    ]
    print(f"\n{'question':<42} {'wall s':>7} {'CPU s':>7} {'RSS MiB':>8}  {'rows':>6}  note")
    results = {}
    for label, argv, once in questions:
        runs = sorted((measure(argv) for _ in range(1 if once else args.repeat)), key=lambda r: r["wall"])
        r = runs[len(runs) // 2]
        results[label] = r
        print(
            f"{label:<42} {r['wall']:7.2f} {r['cpu']:7.2f} {r['rss']:8.0f}  {r['rows']:>6}  {r['note']}",
            flush=True,
        )
    reference = results["reference: DuckDB count(*), all files"]["wall"]
    for label in ("last-activity, JSON (--no-cache)", "last-activity, from the cache"):
        print(f"{label} / reference: {results[label]['wall'] / reference:.2f}")
    print(f"machine: {os.cpu_count()} cores, {datetime.now():%Y-%m-%d}")


if __name__ == "__main__":
    main()
