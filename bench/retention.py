"""What the retention guard costs a rolling appender (issue 11, "Retention without loss").

A `RollingFileAppenderHandler` (JSON audit layout, ~330 B events, ``MaxFileSize`` 256 KiB so
that it rolls every ~800 events, ``MaxBackupIndex`` 5) writes ``--events`` events, with and
without ``retention`` (the guard reads the shipper's checkpoint at every rollover). The checkpoint
is a real one (`CheckpointStore.save`) of ``--entries`` files, as a shipper tailing that many files
writes it, and says every backup is shipped (so the guard deletes as log4j does: the steady
state). Rounds alternate between the two; medians. Prints events/s, CPU s, rollover p50/p99 ms
and peak RSS, and the ratio guard / log4j.

    python bench/retention.py [--events 40000] [--entries 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from logbridge.log4j.appenders import RollingFileAppenderHandler
from logbridge.log4j.jsonaudit import JSONAuditFormatter
from logbridge.shipper.checkpoint import CheckpointStore, Entry
from logbridge.shipper.identity import fingerprint, hash_bytes

EVENT: dict[str, Any] = {
    "msgType": "dataset-read-data",
    "authUser": "admin",
    "projectKey": "CHURN_PREDICTION",
    "datasetName": "customers_prepared",
    "rows": 124_512,
    "connection": "filesystem_managed",
    "pad": "p" * 120,
}


class TimedRolls(RollingFileAppenderHandler):
    """Records how long each rollover took, and marks each new backup shipped in the checkpoint
    (what a shipper keeping up would have written by the next rollover)."""

    def __init__(self, *args: Any, checkpoint: CheckpointStore, entries: dict[str, Entry], **kwargs: Any):
        self.rolls: list[float] = []
        self.shipper_cpu = self.shipper_wall = 0.0
        self.checkpoint = checkpoint
        self.entries = entries
        super().__init__(*args, **kwargs)

    def roll_over(self) -> None:
        t0 = time.perf_counter()
        super().roll_over()
        self.rolls.append(time.perf_counter() - t0)
        if self.retention is not None:  # the shipper's work, not the handler's: not counted
            c1, t1 = time.process_time(), time.perf_counter()
            shipped(Path(self.baseFilename + ".1"), self.checkpoint, self.entries)
            self.shipper_cpu += time.process_time() - c1
            self.shipper_wall += time.perf_counter() - t1


def shipped(path: Path, store: CheckpointStore, entries: dict[str, Entry]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fp = fingerprint(fd, force=True)
        size = os.fstat(fd).st_size
        check = os.pread(fd, 64 * 1024, 0)
    finally:
        os.close(fd)
    assert fp is not None
    source = fp.source_id("bench")
    entries[source] = Entry(
        source, str(path), fp.dev, fp.ino, fp.head_len, fp.head_hash, offset=size, size=size,
        check_len=len(check), check_hash=hash_bytes(check),
    )  # fmt: skip
    store.save(entries)


def filler(n: int) -> dict[str, Entry]:
    """``n`` entries of other files (another device number: never a match)."""
    return {
        f"bench/{i}": Entry(
            f"bench/{i}", f"/var/log/app/f{i}.log", 1, 10_000 + i, 80, "0" * 32, 4096, size=4096
        )
        for i in range(n)
    }


def run(events: int, entries: int, guard: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        store = CheckpointStore(state)
        known = filler(entries)
        store.save(known)
        h = TimedRolls(
            str(Path(tmp) / "logs" / "audit.log"),
            max_file_size=256 * 1024,
            max_backup_index=5,
            retention={"shipper_state_dir": str(state)} if guard else None,
            checkpoint=store,
            entries=known,
        )
        h.setFormatter(JSONAuditFormatter())
        record = logging.LogRecord("dku.audit.generic", logging.INFO, "", 0, EVENT, None, None)
        record.mdc = {}
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(events):
            h.handle(record)
        wall = time.perf_counter() - t0 - h.shipper_wall
        cpu = time.process_time() - c0 - h.shipper_cpu
        h.close()
        assert h.retention is None or h.retention.stats.lost_files == 0
        rolls = sorted(h.rolls)
        return {
            "events/s": events / wall,
            "cpu": cpu,
            "rolls": len(rolls),
            "p50": rolls[len(rolls) // 2] * 1000,
            "p99": rolls[min(len(rolls) - 1, int(len(rolls) * 0.99))] * 1000,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--entries", type=int, default=3_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for guard in (False, True):
            results[guard].append(run(args.events, args.entries, guard))
    med = {g: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for g, rs in results.items()}
    print(f"{args.events} events, checkpoint of {args.entries} entries, median of {args.rounds} rounds")
    print(f"{'':24} {'events/s':>10} {'CPU s':>7} {'rolls':>6} {'roll p50 ms':>12} {'roll p99 ms':>12}")
    for guard, name in ((False, "log4j (no guard)"), (True, "guard (keep_unshipped)")):
        m = med[guard]
        print(
            f"{name:24} {m['events/s']:>10,.0f} {m['cpu']:>7.2f} {m['rolls']:>6.0f} "
            f"{m['p50']:>12.2f} {m['p99']:>12.2f}"
        )
    print(f"throughput ratio guard/log4j: {med[True]['events/s'] / med[False]['events/s']:.3f}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
