"""The digest cache: the same answers as reading the JSON, files published later are read, a
replaced file is read again, a removed one no longer counts, and a busy cache is not waited for."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson

from logbridge.report.digest import cache_file


def _events(run_report: Any, store: Path, *args: str) -> tuple[int, str]:
    result = run_report(str(store), "volume", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return sum(r["events"] for r in orjson.loads(result.stdout)), result.stderr


def _line(user: str, when: str) -> bytes:
    return (
        orjson.dumps(
            {
                "clientEvent": {"msgType": "login", "authUser": user},
                "origAddress": "10.0.0.1",
                "serverTimestamp": when,
                "topic": "generic",
                "node": "n1",
            }
        )
        + b"\n"
    )


def test_cached_answers_equal_direct_ones(sample_store: Path, run_report: Any, report_cache: Path) -> None:
    for kind in ("last-activity", "logins", "api-usage", "compute", "failures", "volume"):
        direct = run_report(str(sample_store), kind, "--format", "json", "--no-cache")
        first = run_report(str(sample_store), kind, "--format", "json")
        second = run_report(str(sample_store), kind, "--format", "json")
        assert direct.stdout == first.stdout == second.stdout, kind
        assert "from the cache" in second.stderr and "from the cache" not in direct.stderr
    assert list(report_cache.glob("*.duckdb"))


def test_new_replaced_and_removed_files(tmp_path: Path, run_report: Any) -> None:
    store = tmp_path / "store"
    hour = store / "generic" / "default" / "2020" / "02" / "18" / "10"
    hour.mkdir(parents=True)
    (hour / "events-a.ndjson").write_bytes(_line("a", "2020-02-18T10:00:00Z") * 3)
    assert _events(run_report, store)[0] == 3

    (hour / "events-b.ndjson").write_bytes(_line("b", "2020-02-18T10:05:00Z") * 2)
    count, note = _events(run_report, store)
    assert count == 5 and "(1 from the cache)" in note  # only the new file was read

    (hour / "events-a.ndjson").write_bytes(_line("a", "2020-02-18T10:00:00Z") * 7)  # replaced
    assert _events(run_report, store)[0] == 9

    (hour / "events-b.ndjson").unlink()
    assert _events(run_report, store)[0] == 7
    shutil.rmtree(store / "generic")
    (store / "generic").mkdir()
    assert _events(run_report, store)[0] == 0


def test_a_busy_cache_is_not_waited_for(sample_store: Path, run_report: Any, report_cache: Path) -> None:
    import duckdb

    path = cache_file(report_cache, str(sample_store))
    path.parent.mkdir(parents=True)
    holder = duckdb.connect(str(path))  # another process's report, as far as DuckDB's lock goes
    try:
        # Within one process DuckDB shares the open database instead of refusing it: a child
        # process is the real case.
        import subprocess
        import sys

        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "logbridge",
                "report",
                str(sample_store),
                "failures",
                "--cache",
                str(report_cache),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        holder.close()
    assert proc.returncode == 0, proc.stderr
    assert "was not used" in proc.stderr and "read directly" in proc.stderr
    assert "project-export-download" in proc.stdout
