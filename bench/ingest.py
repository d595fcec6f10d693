#!/usr/bin/env python3
"""The collector's ingest step alone, in process: CPU µs per event, this tree against another.

Both trees run in one process, alternating (``--old`` is imported as the package
``logbridge_old``), on ``bench/collector.py``'s 1000-event body of DSS log4j envelopes. Each
round times ``--batches`` batches per tree with ``time.process_time``; the median round is
reported. Two functions are timed: the ingest step (parse, unwrap, route, partition: what
the ingest pool runs) and ``Collector.ingest`` (that plus the appends and journal records of
``durability: flush``). Before timing, the prepared chunks of both trees are compared
byte for byte.

    PYTHONPATH=. python bench/ingest.py --old /path/to/old/worktree
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import structlog

import logbridge

BENCH = Path(__file__).resolve().parent


def load_tree(root: Path, name: str) -> ModuleType:
    """``root``/logbridge imported as package ``name`` (its imports are relative)."""
    spec = importlib.util.spec_from_file_location(
        name, root / "logbridge" / "__init__.py", submodule_search_locations=[str(root / "logbridge")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def collector_for(package: str, home: Path) -> Any:
    config_mod = importlib.import_module(f"{package}.collector.config")
    core = importlib.import_module(f"{package}.collector.core")
    local = importlib.import_module(f"{package}.collector.local")
    home.mkdir()
    (home / "c.yaml").write_text(json.dumps(local.local_config(home, 1)))
    collector = core.Collector(config_mod.load(home / "c.yaml"))
    collector.start()
    return collector, core


def cpu_per_event(fn: Any, batches: int, events: int) -> float:
    started = time.process_time()
    for _ in range(batches):
        fn()
    return (time.process_time() - started) / (batches * events) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", type=Path, required=True, help="worktree of the tree to compare against")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100, help="1000-event batches per round and tree")
    parser.add_argument("--core", type=int, default=None, help="pin to this core")
    args = parser.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    load_tree(args.old.resolve(), "logbridge_old")
    sys.path.insert(0, str(BENCH))
    import collector as bench_collector  # bench/collector.py: the same body

    body = bench_collector.dss_events(1000)
    items = body.strip().split(b"\n")
    work = Path(tempfile.mkdtemp(prefix="lb-ingest-bench-"))
    trees: dict[str, tuple[Any, Any]] = {
        "old": collector_for("logbridge_old", work / "old"),
        "new": collector_for("logbridge", work / "new"),
    }
    print(f"new tree: {Path(logbridge.__file__).parent.parent}; old tree: {args.old}", file=sys.stderr)
    received = time.time()
    chunks = {}
    for name, (collector, core) in trees.items():
        ctx = core.RequestContext("127.0.0.1")
        prepared = collector.prepare(list(items), ctx, received)
        chunks[name] = (prepared.chunks, prepared.result.accepted, prepared.topic_counts, prepared.out_counts)
    same = chunks["old"] == chunks["new"]
    print(f"prepared chunks and counts identical: {same}", file=sys.stderr)
    if not same:
        raise SystemExit(1)

    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, (collector, core) in trees.items():
            ctx = core.RequestContext("127.0.0.1")
            for what, fn in (
                ("ingest step", lambda c=collector, x=ctx: c.prepare(list(items), x, time.time())),
                (
                    "Collector.ingest (flush)",
                    lambda c=collector, x=ctx: c.ingest(list(items), x, time.time()),
                ),
            ):
                times.setdefault((what, name), []).append(cpu_per_event(fn, args.batches, len(items)))
    for trees_ in trees.values():
        trees_[0].close()
    print(f"{'':28} {'old µs/ev':>10} {'new µs/ev':>10} {'new/old':>8}   rounds (old | new)")
    for what in ("ingest step", "Collector.ingest (flush)"):
        old, new = statistics.median(times[(what, "old")]), statistics.median(times[(what, "new")])
        detail = " ".join(f"{x:.2f}" for x in times[(what, "old")]) + " | "
        detail += " ".join(f"{x:.2f}" for x in times[(what, "new")])
        print(f"{what:28} {old:10.2f} {new:10.2f} {new / old:8.2f}   {detail}")


if __name__ == "__main__":
    main()
