"""Shipper configs pointed at the loopback collector of tests/conftest.py (the real collector
is exercised by tests/integration/test_shipper_*.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logbridge.shipper.config import ShipperConfig, validate_dict


@pytest.fixture
def make_config(tmp_path: Path, loopback_collector: Any) -> Callable[..., ShipperConfig]:
    """``make_config(inputs=[...], **keys)`` → a ShipperConfig pointed at the loopback collector."""

    def make(**keys: Any) -> ShipperConfig:
        data: dict[str, Any] = {
            "node": "test-node",
            "collector": {"url": loopback_collector.url, "retry": {"initial": "10ms", "max": "50ms"}},
            "inputs": [{"path": str(tmp_path / "logs" / "*.log")}],
            "state_dir": str(tmp_path / "state"),
            "batch": {"max_events": 100, "max_bytes": "64KiB", "linger": "20ms"},
            "partial_line_timeout": "200ms",
            "poll_interval": "20ms",
            "scan_interval": "100ms",
        }
        data.update(keys)
        return validate_dict(data)

    (tmp_path / "logs").mkdir()
    return make
