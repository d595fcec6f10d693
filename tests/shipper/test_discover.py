"""Finding files: globs and excludes, watchdog events, the polling fallback; and the
operator's views (--status, the progress line)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from logbridge.shipper.config import InputConfig
from logbridge.shipper.discover import Watcher, base_dir, excluded, fs_type, idle_inputs, match
from logbridge.shipper.progress import ShipProgress


def test_base_dir_and_excludes() -> None:
    assert base_dir("/data/dss/run/audit/*.log") == "/data/dss/run/audit"
    assert base_dir("/data/*/audit/*.log") == "/data"
    assert base_dir("/var/log/**/*.log") == "/var/log"
    assert excluded("/logs/a.log.gz", ["*.gz"])
    assert excluded("/logs/secret/a.log", ["/logs/secret/*"])
    assert not excluded("/logs/a.log", ["*.gz"])


def test_idle_inputs_tell_a_missing_directory_from_a_glob_with_no_match_yet(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("x\n")
    (tmp_path / "logs" / "b.gz").write_text("x\n")
    (tmp_path / "plain").write_text("a file where a directory is expected\n")
    inputs = [
        InputConfig(path=str(tmp_path / "logs" / "*.log")),
        InputConfig(path=str(tmp_path / "logs" / "a.*")),  # a.log is taken by input 0: still a match
        InputConfig(path=str(tmp_path / "logs" / "*"), exclude=["*.log", "*.gz"]),
        InputConfig(path=str(tmp_path / "missing" / "*" / "*.log")),
        InputConfig(path=str(tmp_path / "plain" / "*.log")),
    ]
    assert [str(item) for item in idle_inputs(inputs)] == [
        f"input 2 ({tmp_path / 'logs' / '*'}) matches no file",
        f"input 3 ({tmp_path / 'missing' / '*' / '*.log'}): directory {tmp_path / 'missing'} does not exist",
        f"input 4 ({tmp_path / 'plain' / '*.log'}): {tmp_path / 'plain'} is not a directory",
    ]
    assert [item.missing for item in idle_inputs(inputs)] == [False, True, True]


def test_match_applies_excludes_and_first_input_wins(tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "a.log.1.gz", "c.txt"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "dir.log").mkdir()
    inputs = [
        InputConfig(path=str(tmp_path / "*.log*"), exclude=["*.gz"]),
        InputConfig(path=str(tmp_path / "*"), format="text", topic="generic"),
    ]
    found = match(inputs)
    assert found == {
        str(tmp_path / "a.log"): 0,
        str(tmp_path / "b.log"): 0,
        str(tmp_path / "a.log.1.gz"): 1,
        str(tmp_path / "c.txt"): 1,
    }


def test_recursive_glob(tmp_path: Path) -> None:
    (tmp_path / "n1" / "audit").mkdir(parents=True)
    (tmp_path / "n1" / "audit" / "x.log").write_text("x\n")
    assert list(match([InputConfig(path=str(tmp_path / "**" / "*.log"))])) == [
        str(tmp_path / "n1" / "audit" / "x.log")
    ]


def test_fs_type_is_known_for_a_local_folder(tmp_path: Path) -> None:
    assert fs_type(str(tmp_path)) not in (None, "nfs", "cifs")


@pytest.mark.parametrize("poll", [False, True])
def test_watcher_wakes_on_new_files(tmp_path: Path, poll: bool) -> None:
    wake, rescan = threading.Event(), threading.Event()
    watcher = Watcher([InputConfig(path=str(tmp_path / "*.log"), poll=poll)], wake, rescan)
    watcher.refresh()
    try:
        (tmp_path / "new.log").write_text("hello\n")
        assert rescan.wait(5) and wake.is_set()
    finally:
        watcher.stop()


def test_progress_plain_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="logbridge.shipper")
    with ShipProgress(1000, tty=False, every=0.0) as progress:
        progress.advance(10, 500)
    assert "shipped 10 lines" in caplog.text and "ETA" in caplog.text
    assert progress.line().startswith("shipped 10 lines")


def test_progress_bar_on_a_terminal() -> None:
    with ShipProgress(1000, tty=True) as progress:
        progress.set_total(2000)
        progress.advance(10, 2000)
    assert progress.lines == 10 and progress.bytes == 2000
