"""The rolling appenders' retention guard (`logbridge.log4j.retention`): backups kept until the
shipper's checkpoint says they are shipped, losses reported with the file name. Checkpoints come
from the real shipper engine against the loopback collector; the processes-and-collector version
is tests/integration/test_retention_guard.py."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import logbridge
from logbridge.errors import ConfigError
from logbridge.log4j import PatternLayoutFormatter, load_model
from logbridge.log4j.appenders import DailyRollingFileAppenderHandler, RollingFileAppenderHandler
from logbridge.log4j.retention import LOSS_MSG_TYPE, compaction_moves
from logbridge.shipper import Shipper
from logbridge.shipper.config import validate_dict

LINE = 50  # bytes a record takes with "%m%n" (49 characters and the newline)


pytestmark = pytest.mark.usefixtures("clean_logging")


class Collected(logging.Handler):
    """Where the loss events go in these tests: the ``dku.audit.generic-failure`` logger."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(dict(record.msg))  # type: ignore[call-overload]


@pytest.fixture
def loss_events() -> Iterator[list[dict[str, Any]]]:
    collected = Collected()
    logger = logging.getLogger("dku.audit.generic-failure")
    logger.addHandler(collected)
    logger.setLevel(logging.INFO)
    yield collected.events
    logger.removeHandler(collected)


def _rolling(path: Path, **kwargs: Any) -> RollingFileAppenderHandler:
    # Two records per file: every second record rolls the file over.
    h = RollingFileAppenderHandler(str(path), max_file_size=2 * LINE, **kwargs)
    h.setFormatter(PatternLayoutFormatter("%m%n"))
    return h


def _write(h: logging.Handler, first: int, n: int) -> None:
    for seq in range(first, first + n):
        text = f'{{"msgType":"t","seq":{seq}}}'
        h.handle(logging.LogRecord("app", logging.INFO, "", 0, text.ljust(LINE - 1, " "), None, None))


def _backups(folder: Path, name: str = "app.log") -> list[str]:
    return sorted((p.name for p in folder.iterdir() if p.name.startswith(name)), key=lambda n: (len(n), n))


def _ship(tmp_path: Path, url: str, glob: str) -> Any:
    cfg = validate_dict(
        {
            "node": "n",
            "collector": {"url": url, "retry": {"initial": "10ms", "max": "50ms"}},
            "inputs": [{"path": glob}],
            "state_dir": str(tmp_path / "state"),
            "batch": {"max_events": 100, "max_bytes": "64KiB", "linger": "20ms"},
            "poll_interval": "20ms",
            "scan_interval": "100ms",
        }
    )
    Shipper(cfg).run(once=True)
    return cfg


@given(st.integers(0, 5), st.lists(st.integers(0, 12), unique=True, max_size=8))
def test_compaction_moves_never_overwrite_a_file_and_keep_the_order(first: int, offsets: list[int]) -> None:
    sources = sorted(first - 1 + o for o in offsets if first - 1 + o >= 0)
    slots = {s: f"file-{s}" for s in sources}
    for src, dst in compaction_moves(sources, first):
        assert dst not in slots, f"{src} -> {dst} overwrites"
        slots[dst] = slots.pop(src)
    assert slots == {first + k: f"file-{s}" for k, s in enumerate(sources)}


def test_unshipped_backups_are_kept_past_max_backup_index_then_deleted_once_shipped(
    tmp_path: Path, loopback_collector: Any, capsys: pytest.CaptureFixture[str], loss_events: list[Any]
) -> None:
    logs = tmp_path / "logs"
    h = _rolling(
        logs / "app.log", max_backup_index=2, retention={"shipper_state_dir": str(tmp_path / "state")}
    )
    _write(h, 0, 12)  # 6 rollovers, no shipper has run: nothing is known to be shipped
    assert _backups(logs) == ["app.log", *(f"app.log.{i}" for i in range(1, 7))]
    assert h.retention is not None and h.retention.stats.kept_files == 4
    err = capsys.readouterr().err
    assert err.count("log4j:WARN") == 1 and "cannot read the shipper's checkpoint" in err
    # The kept backups are the oldest, in order: app.log.6 holds records 0 and 1.
    assert (logs / "app.log.6").read_text().startswith('{"msgType":"t","seq":0}')

    _ship(tmp_path, loopback_collector.url, str(logs / "app.log*"))
    _write(h, 12, 2)  # the next rollover deletes what the checkpoint says is shipped
    h.close()
    assert _backups(logs) == ["app.log", "app.log.1", "app.log.2"]
    stats = h.retention.stats
    assert (stats.kept_files, stats.lost_files, stats.deleted_shipped) == (0, 0, 5)
    assert capsys.readouterr().err == "" and loss_events == []
    shipped = sorted(e["seq"] for e in loopback_collector.events())
    assert shipped == list(range(12))  # every record once (12, 13 are in the live file)


def test_past_the_cap_the_oldest_backups_go_and_each_loss_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loss_events: list[Any]
) -> None:
    logs = tmp_path / "logs"
    retention = {"shipper_state_dir": str(tmp_path / "none"), "max_kept_files": 2}
    h = _rolling(logs / "app.log", max_backup_index=1, retention=retention)
    h.name = "A1"
    _write(h, 0, 12)  # 6 rollovers: 1 backup + 2 kept, 3 lost
    h.close()
    assert _backups(logs) == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    assert h.retention is not None
    stats = h.retention.stats
    assert (stats.lost_files, stats.lost_bytes, stats.kept_files) == (3, 3 * 2 * LINE, 2)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("log4j:ERROR")]
    assert len(errors) == 3
    assert all(f"deleted [{logs / 'app.log.3'}] before the shipper had shipped it" in e for e in errors)
    assert "max_kept_files=2" in errors[0] and "cannot read the shipper's checkpoint" in errors[0]
    assert [e["msgType"] for e in loss_events] == [LOSS_MSG_TYPE] * 3
    assert loss_events[0]["file"] == str(logs / "app.log.3") and loss_events[0]["appender"] == "A1"
    assert loss_events[0]["unshippedBytes"] == 2 * LINE


def test_keep_unshipped_false_deletes_as_log4j_does_and_reports(
    tmp_path: Path, loopback_collector: Any, capsys: pytest.CaptureFixture[str], loss_events: list[Any]
) -> None:
    logs = tmp_path / "logs"
    retention = {"shipper_state_dir": str(tmp_path / "state"), "keep_unshipped": False}
    h = _rolling(logs / "app.log", max_backup_index=2, retention=retention)
    _write(h, 0, 4)  # app.log.2 holds 0-1, app.log.1 2-3
    _ship(tmp_path, loopback_collector.url, str(logs / "app.log*"))  # ships 0-3
    _write(h, 4, 4)  # two rollovers delete the shipped files: nothing to report
    assert loss_events == [] and "log4j:ERROR" not in capsys.readouterr().err
    assert h.retention is not None and h.retention.stats.deleted_shipped == 2
    _write(h, 8, 6)  # three rollovers delete 4-5, 6-7 and 8-9, never shipped
    h.close()
    assert _backups(logs) == ["app.log", "app.log.1", "app.log.2"]  # log4j's names, always
    assert h.retention.stats.lost_files == 3
    assert [e["unshippedBytes"] for e in loss_events] == [2 * LINE] * 3
    assert "MaxBackupIndex=2" in capsys.readouterr().err


def test_max_backup_index_zero_keeps_the_live_file_instead_of_truncating_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    h = _rolling(logs / "app.log", max_backup_index=0, retention={"shipper_state_dir": str(tmp_path / "s")})
    _write(h, 0, 6)
    h.close()
    assert _backups(logs) == ["app.log", "app.log.1", "app.log.2", "app.log.3"]
    assert (logs / "app.log.3").read_text().startswith('{"msgType":"t","seq":0}')


def test_without_retention_the_handler_is_log4j_and_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    h = _rolling(logs / "app.log", max_backup_index=2)
    _write(h, 0, 12)
    h.close()
    assert _backups(logs) == ["app.log", "app.log.1", "app.log.2"] and h.retention is None
    assert capsys.readouterr().err == ""


def test_daily_rolling_sets_an_unshipped_dated_file_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "d.log.2020-02-19").write_text("written before a restart\n")
    (logs / "d.log").write_text("today\n")
    os.utime(logs / "d.log", (1582120000, 1582120000))  # 2020-02-19: log4j would delete the old one
    now = [1582153199.0]
    h = DailyRollingFileAppenderHandler(
        str(logs / "d.log"), clock=lambda: now[0], retention={"shipper_state_dir": str(tmp_path / "s")}
    )
    h.setFormatter(PatternLayoutFormatter("%m%n"))
    now[0] += 86400 * 2
    h.handle(logging.LogRecord("app", logging.INFO, "", 0, "later", None, None))
    h.close()
    assert (logs / "d.log.2020-02-19.1").read_text() == "written before a restart\n"
    assert (logs / "d.log.2020-02-19").read_text() == "today\n"
    assert h.retention is not None and h.retention.stats.kept_files == 1


def test_properties_options_turn_the_guard_on_and_log4j_ignores_them(tmp_path: Path) -> None:
    props = tmp_path / "log4j.properties"
    props.write_text(
        "log4j.rootLogger=INFO, A\n"
        "log4j.appender.A=org.apache.log4j.RollingFileAppender\n"
        f"log4j.appender.A.File={tmp_path / 'app.log'}\n"
        "log4j.appender.A.MaxBackupIndex=3\n"
        "log4j.appender.A.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.A.logbridge.ShipperStateDir=${state}\n"
        "log4j.appender.A.logbridge.MaxKeptBytes=2GiB\n"
    )
    model = load_model(props, state=str(tmp_path / "state"))
    assert model.diagnostics == []  # nothing for `check` to warn about: log4j skips the keys
    logbridge.configure(props, state=str(tmp_path / "state"))
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, RollingFileAppenderHandler))
    assert handler.retention is not None
    settings = handler.retention.settings
    assert (settings.shipper_state_dir, settings.max_kept_bytes, settings.keep_unshipped) == (
        str(tmp_path / "state"),
        2 * 1024**3,
        True,
    )


def test_bad_or_unknown_properties_options_are_named(tmp_path: Path) -> None:
    props = tmp_path / "log4j.properties"
    base = (
        "log4j.rootLogger=INFO, A\n"
        "log4j.appender.A=org.apache.log4j.RollingFileAppender\n"
        f"log4j.appender.A.File={tmp_path / 'app.log'}\n"
        "log4j.appender.A.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.A.logbridge.ShipperStateDir=/var/lib/logbridge/shipper\n"
    )
    props.write_text(base + "log4j.appender.A.logbridge.MaxKeptFiles=many\n")
    with pytest.raises(
        ConfigError, match=r"log4j\.appender\.A\.logbridge\.MaxKeptFiles: expected a whole number"
    ):
        logbridge.configure(props)
    props.write_text(base + "log4j.appender.A.logbridge.KeepUnshiped=true\n")
    notes = [d.message for d in load_model(props).diagnostics]
    assert len(notes) == 1 and "unknown logbridge option" in notes[0] and "KeepUnshipped" in notes[0]


def test_a_bad_retention_mapping_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retention.max_kept_bytes: expected a size"):
        _rolling(tmp_path / "app.log", retention={"shipper_state_dir": "/x", "max_kept_bytes": "lots"})
    with pytest.raises(ConfigError, match="retention: unknown key"):
        _rolling(tmp_path / "app.log", retention={"shipper_state_dir": "/x", "keep": True})


def test_loss_events_that_come_back_to_the_same_handler_do_not_loop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The handler also takes ``dku.audit.generic-failure``, and a loss event is longer than its
    MaxFileSize: each event written rolls the file and loses the backup again. Every call ends;
    every loss is counted, and its event written once the next record comes."""
    logs = tmp_path / "logs"
    retention = {"shipper_state_dir": str(tmp_path / "none"), "max_kept_files": 0}
    h = _rolling(logs / "app.log", max_backup_index=1, retention=retention)
    failures = logging.getLogger("dku.audit.generic-failure")
    failures.addHandler(h)
    failures.setLevel(logging.INFO)
    failures.propagate = False
    try:
        _write(h, 0, 40)
    finally:
        failures.removeHandler(h)
        h.close()
    assert h.retention is not None
    stats = h.retention.stats
    assert stats.lost_files >= 19  # at least every rollover of the 40 records lost a backup
    written = sum(p.read_text().count(LOSS_MSG_TYPE) for p in logs.iterdir())
    assert 0 < written <= stats.lost_files
    assert capsys.readouterr().err.count("log4j:ERROR") == stats.lost_files


def _first_seq(path: Path) -> int:
    return int(path.read_text().split('"seq":', 1)[1].split("}", 1)[0])


def test_a_kept_backup_shipped_out_of_order_goes_and_the_rest_close_up_in_order(
    tmp_path: Path, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    h = _rolling(
        logs / "app.log", max_backup_index=2, retention={"shipper_state_dir": str(tmp_path / "state")}
    )
    _write(h, 0, 12)  # app.log.1 … app.log.6, nothing shipped: 4 kept past MaxBackupIndex
    before = {i: _first_seq(logs / f"app.log.{i}") for i in range(1, 7)}
    assert [before[i] for i in range(6, 0, -1)] == [0, 2, 4, 6, 8, 10]  # oldest last
    _ship(tmp_path, loopback_collector.url, str(logs / "app.log.4"))  # only that one is shipped
    _write(h, 12, 2)  # one rollover: .4 goes, .2 .3 .5 .6 are kept as .3 .4 .5 .6, .1 → .2
    h.close()
    after = {i: _first_seq(logs / f"app.log.{i}") for i in range(1, 7)}
    assert after == {1: 12, 2: before[1], 3: before[2], 4: before[3], 5: before[5], 6: before[6]}
    assert h.retention is not None and h.retention.stats.deleted_shipped == 1
    assert sorted(e["seq"] for e in loopback_collector.events()) == [before[4], before[4] + 1]
