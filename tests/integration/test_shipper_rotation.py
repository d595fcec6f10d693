"""Rotation with real processes: a rename storm with 20 backups matched by the glob, and
copytruncate. Every line is stored exactly once."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .shipperproc import assert_exactly_once, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_rotation_storm(tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any) -> None:
    """Rename every 500 lines, 20 backups kept (the 21st deleted), glob matching the backups."""
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "audit.log"
    active.write_bytes(b"")
    s = shipper(c.events_url, [{"path": str(logs / "audit.log*")}])
    s.start()
    total, per_file, backups = 30_000, 500, 20
    written = 0
    while written < total:
        with active.open("ab") as app:
            for _ in range(5):
                app.write(lines(range(written, written + per_file // 5)))
                written += per_file // 5
                time.sleep(0.004)
            # logrotate-style: drop the oldest, shift the rest, the live file becomes .1 (while
            # the application still holds it), then a new live file.
            (logs / f"audit.log.{backups}").unlink(missing_ok=True)
            for n in range(backups - 1, 0, -1):
                if (logs / f"audit.log.{n}").exists():
                    os.rename(logs / f"audit.log.{n}", logs / f"audit.log.{n + 1}")
            os.rename(active, logs / "audit.log.1")
        active.write_bytes(b"")
    s.wait_caught_up(30)  # (steady for longer than a rescan: backups must not be shipped again)
    s.stop()
    c.stop()
    # The shipper's own loss report; not watchdog's "Inotify queue overflowed; filesystem events
    # were lost" under load, which costs nothing (the periodic rescan finds what events missed).
    assert "are lost" not in s.log_tail(100_000)
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(total))


def test_copytruncate(tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any) -> None:
    """logrotate copytruncate every 2,000 lines while the shipper runs, copies matched by the
    glob: what was unread is finished from the copy, copies are not shipped twice."""
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "app.log"
    active.write_bytes(b"")
    s = shipper(c.events_url, [{"path": str(logs / "app.log*")}])
    s.start()
    total, per_rotation = 20_000, 2_000
    written = 0
    stop = threading.Event()
    with active.open("ab") as app:  # O_APPEND, as logrotate's copytruncate requires
        while written < total:
            for _ in range(4):
                app.write(lines(range(written, written + per_rotation // 4)))
                app.flush()
                written += per_rotation // 4
                time.sleep(0.01)
            for n in range(4, 0, -1):
                if (logs / f"app.log.{n}").exists():
                    os.rename(logs / f"app.log.{n}", logs / f"app.log.{n + 1}")
            shutil.copyfile(active, logs / "app.log.1")
            os.truncate(active, 0)
    stop.set()
    s.wait_caught_up(60)
    s.stop()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(total))
