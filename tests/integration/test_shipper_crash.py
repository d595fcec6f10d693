"""The shipper SIGKILLed 10 times while 200,000 lines are written (and the file rotates, once
while the shipper is down): every line is stored exactly once.

What makes it hold: offsets advance only after the collector's 2xx, a killed shipper resumes
from its last checkpoint and re-sends the same byte ranges, and the collector stores a range
it already has as a duplicate (or answers 409 with where to resume).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _polling import wait_for

from .shipperproc import assert_exactly_once, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

TOTAL = 200_000
KILLS = 10
ROTATE_EVERY = 50_000


def test_sigkill_ten_times_while_200k_lines_are_written(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "audit.log"
    active.write_bytes(b"")
    s = shipper(c.events_url, [{"path": str(logs / "audit.log*")}])
    shipper_down = threading.Event()
    written = 0
    rotations = 0

    def writer() -> None:
        nonlocal written, rotations
        chunk = 500
        while written < TOTAL:
            if written and written % ROTATE_EVERY == 0 and rotations < written // ROTATE_EVERY:
                # Rotate; the second rotation waits for a moment when the shipper is dead.
                if rotations == 1:
                    shipper_down.wait(timeout=10)
                for n in range(rotations, 0, -1):
                    os.rename(logs / f"audit.log.{n}", logs / f"audit.log.{n + 1}")
                os.rename(active, logs / "audit.log.1")
                rotations += 1
            with active.open("ab") as fh:
                fh.write(lines(range(written, written + chunk)))
            written += chunk
            time.sleep(0.012)  # ~40,000 lines/s: the kills land while the file grows

    thread = threading.Thread(target=writer, daemon=True)
    s.start()
    thread.start()
    behind_at_kill = 0
    for kill in range(KILLS):
        time.sleep(0.35 + 0.07 * kill)
        behind_at_kill += bool(s.lag())
        s.kill()
        shipper_down.set()
        time.sleep(0.05)
        shipper_down.clear()
        s.start()
    thread.join(timeout=60)
    assert written == TOTAL and rotations == TOTAL // ROTATE_EVERY - 1
    # At least one kill must land on unacknowledged data (most do; how many depends on the machine).
    assert behind_at_kill >= 1, "kills must land while there is unacknowledged data"
    wait_for(lambda: s.lag() == 0, 60, "the shipper to catch up")
    s.stop()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(TOTAL))
