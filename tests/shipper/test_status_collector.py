"""``ship --status`` names the collector of ``collector.urls`` the shipper sends to (issue 10)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from logbridge.shipper import current
from logbridge.shipper.engine import Shipper
from logbridge.shipper.status import render

from .seqlines import write


def test_status_names_the_collector_in_use_after_a_failover_and_why(
    tmp_path: Path, make_config: Any, loopback_collectors: Any
) -> None:
    a, b = loopback_collectors(2)
    a.script.append((503, {}, b""))
    write(tmp_path / "logs" / "a.log", range(0, 50))
    cfg = make_config(collector={"urls": [a.url, b.url], "retry": {"initial": "10ms", "max": "20ms"}})
    assert render(cfg).splitlines()[0].startswith("collector: none recorded yet (collector.urls has 2")
    Shipper(cfg).run(once=True)
    first = render(cfg).splitlines()[0]
    assert first.startswith(f"collector: {b.url} (2 of 2 in collector.urls) since "), first
    assert f"after {a.url} HTTP 503" in first and first.endswith("; 1 switches"), first


def test_status_says_when_the_shipper_that_chose_is_gone(tmp_path: Path, make_config: Any) -> None:
    cfg = make_config(collector={"urls": ["http://127.0.0.1:9/events", "http://127.0.0.1:10/events"]})
    Path(cfg.state_dir).mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    current.save(cfg.state_dir, current.CurrentCollector("http://127.0.0.1:9/events", 0, 0.0, 0, gone.pid))
    first = render(cfg).splitlines()[0]
    assert first.startswith("collector: http://127.0.0.1:9/events (1 of 2 in collector.urls)"), first
    assert f"(shipper pid {gone.pid} not running: its last choice)" in first


def test_status_with_one_collector_has_no_collector_line(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    write(tmp_path / "logs" / "a.log", range(0, 5))
    cfg = make_config(collector={"url": loopback_collector.url})
    Shipper(cfg).run(once=True)
    assert not render(cfg).startswith("collector:")
    assert not (Path(cfg.state_dir) / current.FILE_NAME).exists()
