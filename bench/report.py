#!/usr/bin/env python3
"""``logbridge report`` over a store of ~10M events: a full scan (last-activity) and one-day questions.

    python bench/report.py                      # --events 10000000 --days 30 --cache DIR --repeat 3

The store is written once into a cache folder and reused: samples/generate.py's store mode writes
one day of the four sample nodes, their volume scaled up (stored lines in
``{topic}/{routing_key}/%Y/%m/%d/%H`` partitions, one file per node, partition and hour), and that
day is copied to every day of the store with its dates moved. Each question runs ``logbridge report``
as a subprocess (wall time, CPU s = user+sys of that process, peak RSS): once reading the JSON
(``--no-cache``), once filling an empty digest cache, once answering from it. The reference in the
same invocation is DuckDB alone counting the same files' lines with one declared column: the
floor of reading the JSON, so the ratios say what the report adds to it, or saves.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
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


def _write_node(args: tuple[Any, ...]) -> int:
    return int(generator().write_node_store(*args))


def _copy_day(args: tuple[Path, Path, int]) -> int:
    """The template day's files as day ``offset``: every date in paths and lines moved along."""
    template, root, offset = args
    base = datetime(2020, 2, 16)
    moved = {
        (base + timedelta(days=d)).strftime(fmt).encode(): (base + timedelta(days=d + offset))
        .strftime(fmt)
        .encode()
        for d in (0, 1)
        for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
    }
    pattern = re.compile(b"|".join(re.escape(k) for k in moved))
    count = 0
    for path in template.rglob("*.ndjson"):
        rel = pattern.sub(
            lambda m: moved[m.group(0)], path.relative_to(template).as_posix().encode()
        ).decode()
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        target.write_bytes(pattern.sub(lambda m: moved[m.group(0)], data))
        count += data.count(b"\n")
    return count


def build_store(root: Path, events: int, days: int) -> int:
    """One day of the four sample nodes at the volume that makes ``events`` over ``days``
    (samples/generate.py, the slow part), copied to each day with its dates moved: the same
    lines every day, which changes nothing for a query engine and takes minutes, not an hour."""
    import multiprocessing

    gen = generator()
    template = root.with_name(root.name + "-template")
    shutil.rmtree(template, ignore_errors=True)
    scale = events / (SAMPLE_EVENTS_PER_DAY * days)
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        pool.map(
            _write_node, [(template, n, kind, 2020, gen.START, 1, scale, False) for n, kind in gen.NODES]
        )
        total = sum(pool.map(_copy_day, [(template, root, d) for d in range(days)]))
    shutil.rmtree(template)
    return total


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
sql = "SELECT count(*) FROM read_json($f, format='newline_delimited', records=true, columns={'topic': 'VARCHAR'})"
print(duckdb.connect().execute(sql, {"f": files}).fetchall()[0][0])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logbridge-bench",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each question (the median is shown)")
    args = parser.parse_args()

    name = f"report-{args.events}-{args.days}d"
    store = args.cache / name
    done = store.with_name(store.name + ".complete")  # beside the store: nothing stray inside it
    if not done.exists():
        print(f"writing the store once into {store} …", flush=True)
        started = time.perf_counter()
        written = build_store(store, args.events, args.days)
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
    reference_cpu = results["reference: DuckDB count(*), all files"]["cpu"]
    for label in ("last-activity, JSON (--no-cache)", "last-activity, from the cache"):
        r = results[label]
        print(f"{label} / reference: wall {r['wall'] / reference:.2f}, CPU {r['cpu'] / reference_cpu:.2f}")
    print(f"machine: {os.cpu_count()} cores, {datetime.now():%Y-%m-%d}")


if __name__ == "__main__":
    main()
