"""`logbridge ship` SIGKILLed between two checkpoint writes; the real collector on the other side.

The checkpoint is written once per ``checkpoint_interval``, not per batch, so a SIGKILL leaves
offsets older than what the collector holds: the restarted shipper re-sends from them, the
collector answers what it already has as a duplicate (or 409 with where to resume), and every
line is stored once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from logbridge.shipper.checkpoint import CheckpointStore

from .test_shipper_e2e import (  # the shipper fixture and helpers
    assert_exactly_once,
    lines,
    shipper_fixture,  # noqa: F401
    stored_seqs,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


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
            wait_until(lambda: stored_lines(c) - covered_by_checkpoint(s.state_dir) >= 200, 20, "progress")
        else:
            wait_until(lambda: stored_lines(c) >= seq, 20, "every line written so far stored")
        s.kill()
        behind = stored_lines(c) - covered_by_checkpoint(s.state_dir)
        # Far more than one batch per file: the checkpoint was not written per batch.
        assert behind >= 200, f"the checkpoint is only {behind} lines behind the collector"
        write_round()  # while the shipper is down
    s.start()
    write_round()
    wait_until(lambda: stored_lines(c) >= seq, 30, "every line stored")
    resent = metric(c, "logbridge_duplicate_batches_total") + metric(
        c, "logbridge_requests_total", 'status="409"'
    )
    s.stop()
    c.stop()
    assert resent > 0, "the restarts must have re-sent ranges the collector had"
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(seq))
