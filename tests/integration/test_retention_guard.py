"""Retention without loss, with real processes: a log4j properties file configures this process's
``dku.audit.*`` loggers (a RollingFileAppender per topic, as DSS has them), a real ``logbridge
ship`` tails the files and a real ``logbridge collect`` stores them. The collector goes away
while the logger rolls its file ~40 times past ``MaxBackupIndex``; the shipper may hold only two
files open (as on a node with many appenders), so backups deleted meanwhile are gone.

- Guard on: nothing is deleted before it is shipped; once the collector is back every event is
  stored exactly once, and the kept backups are deleted at the next rollovers.
- Guard off (``KeepUnshipped=false``): log4j's deletions, each loss reported with the file name
  on stderr, counted on the handler, and as a ``logbridge-backup-lost`` event that reaches the
  store; every event missing from the store is accounted for by those reports.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import logbridge
from logbridge import audit
from logbridge.log4j.appenders import RollingFileAppenderHandler
from logbridge.log4j.retention import LOSS_MSG_TYPE

from .shipperproc import assert_exactly_once, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MAX_BACKUP_INDEX = 2


@pytest.fixture
def audit_loggers() -> Iterator[None]:
    """Whatever `logbridge.configure` attaches to the audit loggers is closed after the test."""
    saved = logging.lastResort, logging.getLogger().level
    yield
    for name in ("dku.audit.generic", "dku.audit.generic-failure"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    logging.lastResort = saved[0]
    logging.getLogger().setLevel(saved[1])


def _configure(tmp_path: Path, state_dir: Path, keep: bool) -> RollingFileAppenderHandler:
    props = tmp_path / "log4j.properties"
    props.write_text(
        "log4j.rootLogger=OFF\n"
        "log4j.logger.dku.audit.generic=INFO, A1\n"
        "log4j.additivity.dku.audit.generic=false\n"
        "log4j.appender.A1=org.apache.log4j.RollingFileAppender\n"
        "log4j.appender.A1.File=${logs}/audit.log\n"
        "log4j.appender.A1.MaxFileSize=4KB\n"
        f"log4j.appender.A1.MaxBackupIndex={MAX_BACKUP_INDEX}\n"
        "log4j.appender.A1.layout=com.dataiku.dip.logging.JSONAuditLayout\n"
        "log4j.appender.A1.logbridge.ShipperStateDir=${state}\n"
        f"log4j.appender.A1.logbridge.KeepUnshipped={str(keep).lower()}\n"
        "log4j.logger.dku.audit.generic-failure=INFO, A2\n"
        "log4j.additivity.dku.audit.generic-failure=false\n"
        "log4j.appender.A2=org.apache.log4j.RollingFileAppender\n"
        "log4j.appender.A2.File=${logs}/failures.log\n"
        "log4j.appender.A2.MaxFileSize=1MB\n"
        "log4j.appender.A2.layout=com.dataiku.dip.logging.JSONAuditLayout\n"
    )
    logbridge.configure(props, logs=str(tmp_path / "logs"), state=str(state_dir))
    (handler,) = logging.getLogger("dku.audit.generic").handlers
    assert isinstance(handler, RollingFileAppenderHandler)
    return handler


def _emit(first: int, n: int) -> None:
    for seq in range(first, first + n):
        audit.emit("generic", "test-event", seq=seq, authUser=f"user{seq % 5}", pad="p" * 120)


@pytest.mark.parametrize("keep", [True, False], ids=["guard-on", "guard-off"])
def test_rolling_past_max_backup_index_while_the_collector_is_down(
    tmp_path: Path,
    keep: bool,
    collector: Any,
    shipper: Any,
    read_local_store: Any,
    audit_loggers: None,
    capfd: pytest.CaptureFixture[str],
) -> None:
    c = collector()
    (tmp_path / "logs").mkdir()
    s = shipper(c.events_url, [{"path": str(tmp_path / "logs" / "*.log*")}], max_open_files=2)
    handler = _configure(tmp_path, s.state_dir, keep)
    guard = handler.retention
    assert guard is not None
    s.start()
    _emit(0, 100)  # ~6 rollovers while everything works
    s.wait_caught_up(30)

    c.stop()
    total = 700
    _emit(100, total - 100)  # ~40 rollovers with nothing acknowledged
    logs = tmp_path / "logs"
    backups = sorted(p.name for p in logs.glob("audit.log.*"))
    if keep:
        assert guard.stats.lost_files == 0 and guard.stats.kept_files >= 30, guard.stats
        assert len(backups) == MAX_BACKUP_INDEX + guard.stats.kept_files, backups
    else:
        assert guard.stats.lost_files >= 30 and len(backups) == MAX_BACKUP_INDEX, (guard.stats, backups)

    c.start()
    s.wait_caught_up(60)
    kept_before = guard.stats.kept_files
    _emit(total, 40)  # the next rollovers delete the backups shipped meanwhile
    total += 40
    s.wait_caught_up(30)
    s.stop()
    c.stop()
    err = capfd.readouterr().err
    counts = stored_seqs(read_local_store, c.store)
    losses = [
        rec["clientEvent"]
        for stored in read_local_store(c.store).values()
        for rec in stored
        if rec["clientEvent"].get("msgType") == LOSS_MSG_TYPE
    ]
    if keep:
        assert_exactly_once(counts, range(total))
        assert guard.stats.lost_files == 0 and losses == [] and "log4j:ERROR" not in err
        assert guard.stats.kept_files <= 3 and guard.stats.deleted_shipped >= kept_before
        assert len(list(logs.glob("audit.log.*"))) <= MAX_BACKUP_INDEX + 3
    else:
        stats = guard.stats
        # Each loss: a log4j:ERROR line naming the file, the counters, an event in the store.
        lines = [line for line in err.splitlines() if "before the shipper had shipped it" in line]
        assert len(lines) == stats.lost_files and len(losses) == stats.lost_files, (
            f"{len(lines)} lines on stderr, {len(losses)} loss events stored, {stats}\n{s.log_tail()}"
        )
        assert all(f"deleted [{logs / 'audit.log.2'}]" in line for line in lines)
        assert {e["file"] for e in losses} == {str(logs / "audit.log.2")}
        assert sum(e["unshippedBytes"] for e in losses) == stats.lost_bytes
        # Nothing lost silently: every missing event is within the reported bytes, none twice.
        missing = set(range(total)) - set(counts)
        twice = [seq for seq, n in counts.items() if n > 1]
        assert missing and not twice, f"{len(missing)} missing, {len(twice)} stored twice\n{s.log_tail()}"
        line_bytes = min(e["bytes"] for e in losses) // 16  # a 4KB file holds 16+ events
        assert len(missing) * line_bytes <= stats.lost_bytes, (
            f"{len(missing)} events missing, more than the {stats.lost_bytes} bytes reported lost hold"
        )
