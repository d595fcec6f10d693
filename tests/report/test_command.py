"""``logbridge report`` arguments: every mistake is exit code 2 with a message saying what to
fix; a store line that cannot be read stops the report (exit 1) naming the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from logbridge.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["who-did-it"], "'who-did-it' is not one of"),
        (["logins", "--since", "yesterday"], "'yesterday' is not a date or time"),
        (["logins", "--since", "2020-02-19", "--until", "2020-02-18"], "must be later than --since"),
        (["logins", "--inactive-since", "2020-02-19"], "only applies to last-activity"),
        (["logins", "--format", "xml"], "Invalid value for '--format'"),
        (["logins", "--layout", "{topic}/%Y/%j"], "%j"),
        (["logins", "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["logins", "--storage-option", "anon"], "is not KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    args: list[str], message: str, sample_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(sample_store), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_store_that_is_not_there_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "nope"), "logins"])
    assert exit_info.value.code == 2
    assert "nothing there" in capsys.readouterr().err


def test_an_unknown_url_scheme_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "nosuchproto://bucket/x", "logins"])
    assert exit_info.value.code == 2
    assert "STORE_URL" in capsys.readouterr().err


def test_a_line_that_is_not_a_stored_line_names_its_file(tmp_path: Path, run_report: Any) -> None:
    folder = tmp_path / "generic" / "default" / "2020" / "02" / "18" / "10"
    folder.mkdir(parents=True)
    (folder / "events-bad.ndjson").write_bytes(
        b'{"clientEvent":{"msgType":"login","authUser":"a"},"origAddress":"1","serverTimestamp":"2020-02-18T10:00:00Z","topic":"generic"}\n'
        b"this is not json\n"
    )
    result = run_report(str(tmp_path), "logins")
    assert result.exit_code == 1
    assert "events-bad.ndjson" in result.stderr and "line 2" in result.stderr
    assert "logbridge verify" in result.stderr


def test_an_empty_window_is_an_empty_report(sample_store: Path, run_report: Any) -> None:
    result = run_report(str(sample_store), "api-usage", "--since", "2031-01-01")
    assert result.exit_code == 0
    assert "(no events matched)" in result.stdout and "0 files" in result.stderr


def test_a_bad_line_in_a_compressed_file_is_named_too(tmp_path: Path, run_report: Any) -> None:
    import zstandard

    folder = tmp_path / "generic" / "default" / "2020" / "02" / "18" / "10"
    folder.mkdir(parents=True)
    good = b'{"clientEvent":{"msgType":"login","authUser":"a"},"origAddress":"1","serverTimestamp":"2020-02-18T10:00:00Z","topic":"generic"}\n'
    (folder / "events-bad.ndjson.zst").write_bytes(
        zstandard.ZstdCompressor().compress(good * 3 + b'{"clientEvent": 5}\n')
    )
    result = run_report(str(tmp_path), "logins", "--no-cache")
    assert result.exit_code == 1
    assert "events-bad.ndjson.zst, line 4: clientEvent is not an object" in result.stderr
