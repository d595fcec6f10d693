"""What the shipper tells its operator when something is wrong (issue 8): ``ship --once`` exit
codes for cron, a warning for an input that can read nothing, and lines never shipped (refused
by the collector, or lost before they were read) in the log, the summary and ``--status``.

Real ``logbridge ship`` processes against a real collector, as in test_shipper_e2e.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _polling import wait_for

from .shipperproc import assert_exactly_once, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def warnings_naming(log: str, *words: str) -> list[str]:
    """Log lines at WARNING or ERROR that contain every one of ``words``."""
    return [
        line
        for line in log.splitlines()
        if (" WARNING " in line or " ERROR " in line) and all(w in line for w in words)
    ]


def test_once_exits_1_when_the_collector_refuses_lines(tmp_path: Path, collector: Any, shipper: Any) -> None:
    # A body over the collector's limit is answered 413: the batch is split until its halves
    # fit, and a single line over the limit is a line the collector will never take.
    c = collector(limits={"max_body_bytes": "4KiB"})
    logs = tmp_path / "logs"
    logs.mkdir()
    too_large = b'{"severity":"INFO","logger":"dku.audit.generic","message":{"pad":"%s"}}\n' % (b"p" * 5000)
    (logs / "audit.log").write_bytes(lines(range(0, 50)) + too_large + lines(range(50, 100)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    out = s.once(expect=1)
    assert "1 lines refused by the collector" in out
    (kept,) = (s.state_dir / "dead-letter").glob("*.ndjson")
    assert kept.read_bytes() == too_large


def test_a_second_shipper_on_the_same_state_dir_exits_2(tmp_path: Path, collector: Any, shipper: Any) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.start()
    out = s.once(expect=2)
    assert "Traceback" not in out
    assert f"state_dir {s.state_dir}" in out
    s.stop()


def test_once_exits_1_and_status_reports_bytes_deleted_before_they_were_read(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    c.stop()  # away while the shipper first sees the file
    logs = tmp_path / "logs"
    logs.mkdir()
    doomed = logs / "doomed.log"
    doomed.write_bytes(lines(range(0, 50)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.start()
    wait_for(lambda: "retry 2 of range" in s.logs[-1].read_text(), 20, "the shipper retrying")
    s.stop()  # its checkpoint now knows the file's size, none of it acknowledged
    (logs / "kept.log").write_bytes(lines(range(50, 60)))  # first: it cannot reuse doomed's inode
    doomed.unlink()
    c.start()
    out = s.once(expect=1)
    size = len(lines(range(0, 50)))
    assert warnings_naming(out, str(doomed), f"{size} bytes", "lost"), out
    assert f"{size} bytes lost" in out.splitlines()[-1]  # the summary
    status = s.status()
    assert f"lost: {size:,} bytes in 1 files" in status, status
    assert str(doomed) in status.split("lost:")[1]
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(50, 60))


def test_once_warns_about_an_input_whose_directory_does_not_exist_and_exits_3(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs, empty, missing = tmp_path / "logs", tmp_path / "empty", tmp_path / "missing"
    logs.mkdir()
    empty.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 20)))
    inputs = [{"path": str(missing / "*.log")}, {"path": str(empty / "*.log")}, {"path": str(logs / "*.log")}]
    s = shipper(c.events_url, inputs)
    out = s.once(expect=3)
    assert warnings_naming(out, "input 0", str(missing / "*.log"), "does not exist"), out
    summary = out.splitlines()[-1]
    assert "shipped 20 lines" in summary
    assert f"input 0 ({missing / '*.log'}): directory {missing} does not exist" in summary
    assert f"input 1 ({empty / '*.log'}) matches no file" in summary  # normal on a fresh node: exit 0
    status = s.status()
    assert f"input 0 ({missing / '*.log'}): directory {missing} does not exist" in status, status
    assert f"input 1 ({empty / '*.log'}) matches no file" in status, status
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(0, 20))


def test_status_warns_about_a_missing_directory_before_anything_was_shipped(
    tmp_path: Path, collector: Any, shipper: Any
) -> None:
    missing = tmp_path / "missing"
    s = shipper("http://127.0.0.1:9/events", [{"path": str(missing / "*.log")}])
    status = s.status()
    assert "nothing shipped yet" in status
    assert f"input 0 ({missing / '*.log'}): directory {missing} does not exist" in status, status


def test_daemon_warns_at_start_and_reads_the_directory_once_it_exists(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    later = tmp_path / "later"
    s = shipper(c.events_url, [{"path": str(later / "*.log")}])
    s.start()
    log = s.logs[-1].read_text()
    assert warnings_naming(log, "input 0", str(later / "*.log"), "does not exist"), log
    later.mkdir()
    (later / "audit.log").write_bytes(lines(range(0, 10)))
    wait_for(lambda: s.lag() == 0, 20, "the new directory's file shipped")
    s.stop()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(0, 10))
