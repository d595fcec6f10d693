"""`logbridge ship` with thousands of files under a 1,024-descriptor limit, and SIGKILLed between
two checkpoint writes; the real collector on the other side.

The checkpoint is written once per ``checkpoint_interval``, not per batch, so a SIGKILL leaves
offsets older than what the collector holds: the restarted shipper re-sends from them, the
collector answers what it already has as a duplicate (or 409 with where to resume), and every
line is stored once.
"""

from __future__ import annotations

import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _polling import wait_for

from logbridge.shipper.checkpoint import CheckpointStore

from .shipperproc import assert_exactly_once, audit_line, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

FILES = 2000
ROUNDS = 15
FD_LIMIT = 1024


def limit_descriptors() -> None:
    """``ulimit -n 1024`` for the shipper process (runs in the child, before exec)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def metric(collector: Any, name: str, labels: str = "") -> float:
    """Sum of a counter of the collector's /metrics over the series whose labels contain ``labels``."""
    text = httpx.get(f"{collector.base_url}/metrics", timeout=10).text
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{([^}}]*)}})? (\S+)$", text, re.M):
        if labels in (m.group(1) or ""):
            total += float(m.group(2))
    return total


def stored_lines(collector: Any) -> int:
    """Events the collector has accepted (durable per its durability setting)."""
    return int(metric(collector, "logbridge_events_in_total"))


def open_descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def test_two_thousand_files_under_a_1024_descriptor_limit(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.preexec_fn = limit_descriptors
    s.start()
    assert s.process is not None
    pid = s.process.pid
    paths = [logs / f"app-{n:04}.log" for n in range(FILES)]
    peak = 0
    for r in range(ROUNDS):  # appended to round-robin, one line per file per round
        for n, path in enumerate(paths):
            with path.open("ab") as fh:
                fh.write(audit_line(r * FILES + n))
        peak = max(peak, open_descriptors(pid))
    last_write = time.monotonic()

    def all_stored() -> bool:
        nonlocal peak
        assert s.process is not None and s.process.poll() is None, f"the shipper died:\n{s.log_tail()}"
        peak = max(peak, open_descriptors(pid))
        return stored_lines(c) >= FILES * ROUNDS

    wait_for(all_stored, 60, f"{FILES * ROUNDS:,} lines stored within 60 s of the last write")
    took = time.monotonic() - last_write
    s.stop()
    c.stop()
    log = "".join(p.read_text(errors="replace") for p in s.logs)
    assert "Traceback" not in log and "Errno 24" not in log, log[-3000:]
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(FILES * ROUNDS))
    assert peak < FD_LIMIT
    print(f"stored {took:.1f} s after the last write; at most {peak} descriptors open")


def covered_by_checkpoint(state_dir: Path) -> int:
    """Lines before the offsets of the checkpoint file on disk."""
    total = 0
    for entry in CheckpointStore(state_dir).load().values():
        with open(entry.path, "rb") as fh:
            total += fh.read(entry.offset).count(b"\n")
    return total


def test_sigkill_between_checkpoint_writes_stores_every_line_once(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    paths = [logs / f"app-{n:02}.log" for n in range(20)]
    # Checkpoints far apart: every kill lands between two writes of the checkpoint file.
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}], checkpoint_interval="1h")
    seq = 0

    def write_round() -> None:
        nonlocal seq
        for path in paths:  # three lines per file: every batch is short (cut where the data ends)
            with path.open("ab") as fh:
                fh.write(lines(range(seq, seq + 3)))
            seq += 3

    for cycle in range(3):
        s.start()
        for _ in range(8):
            write_round()
            time.sleep(0.03)
        if cycle == 1:  # killed while the last lines are still on their way
            wait_for(lambda: stored_lines(c) - covered_by_checkpoint(s.state_dir) >= 200, 20, "progress")
        else:
            wait_for(lambda: stored_lines(c) >= seq, 20, "every line written so far stored")
        s.kill()
        behind = stored_lines(c) - covered_by_checkpoint(s.state_dir)
        # Far more than one batch per file: the checkpoint was not written per batch.
        assert behind >= 200, f"the checkpoint is only {behind} lines behind the collector"
        write_round()  # while the shipper is down
    s.start()
    write_round()
    wait_for(lambda: stored_lines(c) >= seq, 30, "every line stored")
    resent = metric(c, "logbridge_duplicate_batches_total") + metric(
        c, "logbridge_requests_total", 'status="409"'
    )
    s.stop()
    c.stop()
    assert resent > 0, "the restarts must have re-sent ranges the collector had"
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(seq))
