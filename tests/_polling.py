"""Waiting for something to hold, for the fixtures and tests of every folder: poll a condition
with a deadline instead of sleeping a guessed time (imported by conftests and tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
