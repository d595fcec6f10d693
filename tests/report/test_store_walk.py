"""The store walk: a one-day question over a year of partitions lists and reads only that day;
layouts other than the default; files that fit no layout are named, not silently passed over."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from logbridge.report.events import Filters
from logbridge.report.layout import Selection, Window, find_data_files, parse_template
from logbridge.report.run import Store, report

from .conftest import event_time, read_lines

ONE_DAY = (datetime(2020, 7, 14, tzinfo=UTC), datetime(2020, 7, 15, tzinfo=UTC))


@pytest.fixture(scope="module")
def year_store(tmp_path_factory: pytest.TempPathFactory, generate: ModuleType) -> Path:
    root = tmp_path_factory.mktemp("year")
    generate.write_store(root, start=datetime(2020, 1, 1, tzinfo=generate.TZ), days=366, scale=0.05)
    return root


def test_a_one_day_question_reads_only_that_day(year_store: Path) -> None:
    all_files = sorted(str(p) for p in year_store.rglob("*.ndjson"))
    day_files = sorted(str(p) for p in year_store.glob("*/*/2020/07/14/*/*.ndjson"))
    assert len(all_files) > 50 * len(day_files) > 0

    table, _, selection = report(
        Store(str(year_store)), "volume", Filters(since=ONE_DAY[0], until=ONE_DAY[1])
    )
    assert selection.files_read == len(day_files)
    # topic → routing key → year → month (12) → day (~31) → that day's hours: not 8,784 hours a topic.
    assert selection.folders_listed < 400, selection.folders_listed

    expected = sum(1 for line in read_lines(year_store) if ONE_DAY[0] <= event_time(line) < ONE_DAY[1])
    assert sum(row[3] for row in table.rows) == expected > 0


def test_topic_and_routing_key_prune_folders(year_store: Path) -> None:
    store = Store(str(year_store))
    _, files, _ = store.files(Filters(topics=["apinode-query"], routing_keys=["pricing"]), None)
    assert files and all("/apinode-query/pricing/" in f for f in files)
    # A kind reads only its topics: api-usage never lists the generic folders.
    _, files, _ = store.files(Filters(), ("apinode-query",))
    assert files and all("/apinode-query/" in f for f in files)


def test_day_partitions_and_a_literal_prefix(tmp_path: Path) -> None:
    levels = parse_template("{topic}/dt=%Y-%m-%d")
    for day in ("2020-01-01", "2020-01-02", "2020-01-03"):
        folder = tmp_path / "generic" / f"dt={day}"
        folder.mkdir(parents=True)
        line = {
            "clientEvent": {"msgType": "login", "authUser": "a", "timestamp": f"{day}T12:00:00.000Z"},
            "origAddress": "1",
            "serverTimestamp": f"{day}T12:00:00.000Z",
            "topic": "generic",
        }
        (folder / "events-1.ndjson").write_bytes(orjson.dumps(line) + b"\n")
        (folder / "events-1.manifest.json").write_text("{}")
    (tmp_path / "generic" / "stray.txt").write_text("?")
    # The store's own metadata (manifests under .logbridge/) is neither read nor reported.
    (tmp_path / ".logbridge" / "manifests" / "generic" / "dt=2020-01-02").mkdir(parents=True)
    (
        tmp_path / ".logbridge" / "manifests" / "generic" / "dt=2020-01-02" / "events-1.ndjson.manifest"
    ).write_text("{}")
    (tmp_path / "generic" / "not-a-day").mkdir()
    selection = Selection(Window(datetime(2020, 1, 2, tzinfo=UTC), datetime(2020, 1, 3, tzinfo=UTC)))
    found = find_data_files(__import__("fsspec").filesystem("file"), str(tmp_path), levels, selection, UTC)
    assert [Path(f.path).parent.name for f in found] == ["dt=2020-01-02"]
    assert found[0].size > 0 and found[0].stamp
    assert sorted(Path(p.rstrip("/")).name for p in selection.skipped) == ["not-a-day", "stray.txt"]


@pytest.mark.parametrize(
    "template, problem",
    [("{topic}/%Y/%j", "%j"), ("{topic}-x/%Y", "whole folder names")],
)
def test_layouts_reports_cannot_read_are_refused(template: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_template(template)


def test_a_partition_time_zone_moves_the_window(tmp_path: Path, run_report: Any) -> None:
    # Paris partitions: the folder 2020/02/18/00 holds 2020-02-17T23:xx UTC.
    folder = tmp_path / "generic" / "default" / "2020" / "02" / "18" / "00"
    folder.mkdir(parents=True)
    line = {
        "clientEvent": {"msgType": "login", "authUser": "a"},
        "origAddress": "1",
        "serverTimestamp": "2020-02-17T23:30:00.000Z",
        "topic": "generic",
    }
    (folder / "events-1.ndjson").write_bytes(orjson.dumps(line) + b"\n")
    args = ["--since", "2020-02-17T23:00", "--until", "2020-02-18", "--format", "json"]
    utc = run_report(str(tmp_path), "last-activity", *args)
    paris = run_report(str(tmp_path), "last-activity", *args, "--timezone", "Europe/Paris")
    assert orjson.loads(utc.stdout) == []  # read as UTC, the folder is outside the window
    assert [r["user"] for r in orjson.loads(paris.stdout)] == ["a"]


def test_stray_paths_are_counted_and_a_few_named(tmp_path: Path, run_report: Any) -> None:
    for i in range(25):
        (tmp_path / f"stray-{i:02d}.txt").write_text("?")
    (tmp_path / "generic").mkdir()
    result = run_report(str(tmp_path), "logins")
    assert result.exit_code == 0
    assert "25 paths fit neither the layout" in result.stderr and "stray-00.txt" in result.stderr
