"""The shipper and the collector as real processes over real files (issue 4).

The harness (a restartable ``logbridge ship`` process, the sequence-numbered log writer, the store
count) is shipperproc.py; the ``shipper`` fixture is in conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from _polling import wait_for

from .shipperproc import TOPICS, assert_exactly_once, audit_line, dead_letter_records, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_once_ships_every_topic_into_the_partitioned_store(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 3000)))
    (logs / "other.log").write_bytes(lines(range(3000, 3500)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    out = s.once()
    assert "shipped 3,500 lines" in out
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(3500))
    topics = {p.split("/")[0] for p in read_local_store(c.store)}
    assert topics == set(TOPICS)
    assert any(p.startswith("apinode-query/service-1/2020/02/19/15/") for p in read_local_store(c.store))


def test_partial_last_line_and_inode_reuse(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "audit.log"
    last = audit_line(100)
    active.write_bytes(lines(range(0, 100)) + last[:50])
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}], partial_line_timeout="500ms")
    s.start()
    wait_for(lambda: s.lag() == len(last[:50]), 20, "the 100 complete lines acknowledged")
    time.sleep(1.0)  # past partial_line_timeout: the live file's half line is still held
    assert s.lag() == 50
    with active.open("ab") as fh:
        fh.write(last[50:])
    wait_for(lambda: s.lag() == 0, 20, "the completed line acknowledged")
    s.stop()
    # The file is removed and a new one created (the file system may reuse the inode).
    os.unlink(active)
    (logs / "new.log").write_bytes(lines(range(101, 200)))
    s.once()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(200))


def test_ten_megabyte_line_goes_to_the_dead_letter_as_a_marker(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    big = audit_line(500, pad=10 * 1024 * 1024)
    (logs / "audit.log").write_bytes(lines(range(0, 500)) + big + lines(range(501, 1000)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    out = s.once()
    assert "over max_line_bytes" in out
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), set(range(1000)) - {500})
    dead = dead_letter_records(c.dead_letter)
    markers = [
        r.get("rawObject") or orjson.loads(r["raw"]) for r in dead if "logbridge-oversized-line" in str(r)
    ]
    assert len(markers) == 1
    assert markers[0]["msgType"] == "logbridge-oversized-line"
    assert markers[0]["bytes"] == len(big) - 1 and markers[0]["offset"] == len(lines(range(0, 500)))


def test_status_prints_each_files_lag(tmp_path: Path, collector: Any, shipper: Any) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 10)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.once()
    with (logs / "audit.log").open("ab") as fh:
        fh.write(lines(range(10, 20)))
    s.config_path.write_text(yaml.safe_dump(s.config))
    out = subprocess.run(
        [sys.executable, "-m", "logbridge", "ship", "--config", str(s.config_path), "--status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(logs / "audit.log") in out
    assert f"total lag: {len(lines(range(10, 20))):,} bytes in 1 files" in out


def test_bad_config_is_one_message_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "collector: {url: ftp://x}\ninputs: [{path: /x, format: text}]\nbatch: {max_bytes: lots}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "ship", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for key in ("collector.url", "inputs[0]", "batch.max_bytes"):
        assert key in proc.stderr, proc.stderr


def test_daemon_serves_prometheus_metrics(tmp_path: Path, collector: Any, shipper: Any) -> None:
    import httpx

    from logbridge.collector.local import free_port

    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 100)))
    port = free_port()
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}], metrics={"host": "127.0.0.1", "port": port})
    s.start()
    wait_for(lambda: s.lag() == 0, 20, "the lines acknowledged")

    def scraped() -> str:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return text if "logbridge_shipper_lines_total 100.0" in text else ""

    text = wait_for(scraped, 10, "the metrics to show 100 lines")
    for name in (
        "bytes_total",
        "retries_total",
        "dead_lettered_lines_total",
        "lost_bytes_total",
        "lost_files_total",
        "lag_bytes",
    ):
        assert f"logbridge_shipper_{name}" in text
    s.stop()
