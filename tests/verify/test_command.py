"""``logbridge verify``'s command line: usage errors exit 2, the text report names each change."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logbridge.cli import cli
from logbridge.sinks.filesystem import FilesystemSink
from logbridge.sinks.partition import PartitionPaths


def publish(tmp_path: Path, files: dict[str, bytes], template: str = "{topic}/%Y", **options: Any) -> Path:
    """A store of ``files`` (partition → lines), one file each, written and sealed by a real sink."""
    sink = FilesystemSink(
        "store",
        f"file://{tmp_path / 'store'}",
        tmp_path / "state" / "staging" / "store",
        partitions=PartitionPaths(template),
        **options,
    )
    for partition, data in files.items():
        sink.acknowledge([sink.append(partition, data)])
        sink.roll(time.monotonic() + 3600)
    sink.publish()
    sink.close()
    return tmp_path / "store"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    lines = b'{"a":1}\n{"a":2}\n{"a":3}\n'
    return publish(
        tmp_path,
        {"generic/2026/12/01": lines, "generic/2026/12/02": lines},
        "{topic}/%Y/%m/%d",
        sign_key=b"secret",
    )


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["verify", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["{store}/nothing-here"], None, "nothing at"),
        (["{store}", "--key-env", "LB_NO_SUCH_VAR"], None, "LB_NO_SUCH_VAR is not set"),
        (["{store}", "--key-env", "A", "--key-file", "b"], None, "not both"),
        (["{store}", "--since", "yesterday"], None, "not a time"),
        (["{store}", "-o", "novalue"], None, "KEY=VALUE"),
        (["nosuchproto://x"], None, "cannot use"),
    ],
)
def test_usage_errors_exit_2(store: Path, args: list[str], env: dict[str, str] | None, message: str) -> None:
    code, output = run(*[a.format(store=f"file://{store}") for a in args], env=env)
    assert code == 2, output
    assert message in output


def test_text_report(store: Path) -> None:
    code, output = run(f"file://{store}", "--key-env", "K", env={"K": "secret"})
    assert code == 0 and "OK" in output, output
    data = next(store.glob("generic/2026/12/02/*.ndjson"))
    data.write_bytes(data.read_bytes().replace(b'{"a":2}', b'{"a":9}'))
    code, output = run(f"file://{store}", "--key-env", "K", env={"K": "secret"})
    assert code == 1
    assert "edited-line" in output and "line 2" in output and "TAMPERED" in output


def test_since_and_until_limit_the_files_hashed(store: Path) -> None:
    import orjson

    code, output = run(f"file://{store}", "--since", "2026-12-02", "--format", "json")
    report = orjson.loads(output)
    assert code == 0 and report["checked"] == 1 and report["files"] == 2
    code, output = run(f"file://{store}", "--until", "2026-12-01", "--format", "json")
    assert orjson.loads(output)["checked"] == 0


def test_a_gzip_store_is_checked_on_its_content(tmp_path: Path) -> None:
    import gzip

    from logbridge.sinks.encoders import Gzip

    publish(tmp_path, {"generic/2026": b'{"a":1}\n{"a":2}\n{"a":3}\n'}, encoder=Gzip())
    (data,) = (tmp_path / "store").glob("generic/2026/*.ndjson.gz")
    assert run(f"file://{tmp_path / 'store'}")[0] == 0
    data.write_bytes(gzip.compress(gzip.decompress(data.read_bytes()).replace(b'{"a":3}\n', b"")))
    code, output = run(f"file://{tmp_path / 'store'}")
    assert code == 1 and "removed-line" in output and "sealed as line 3" in output, output


def test_files_from_before_manifests_are_left_out_by_since(store: Path) -> None:
    import orjson

    old = store / "generic" / "2026" / "11" / "30" / "events-20261130T101500Z-host-1-00000000-000001.ndjson"
    old.parent.mkdir(parents=True)
    old.write_bytes(b'{"a":0}\n')
    code, output = run(f"file://{store}", "--format", "json")
    assert code == 1 and orjson.loads(output)["counts"]["unmanifested-file"] == 1
    code, output = run(f"file://{store}", "--format", "json", "--since", "2026-12-01")
    assert code == 0, output


def test_without_line_digests_a_changed_file_is_named_without_lines(tmp_path: Path) -> None:
    publish(tmp_path, {"generic/2026": b'{"a":1}\n{"a":2}\n'}, line_digests=False)
    (data,) = (tmp_path / "store").glob("generic/2026/*.ndjson")
    manifest = next((tmp_path / "store" / ".logbridge").rglob("*.manifest")).read_bytes()
    assert manifest.endswith(b"}\n")  # a header and nothing else
    assert run(f"file://{tmp_path / 'store'}")[0] == 0
    data.write_bytes(b'{"a":1}\n{"a":3}\n')
    code, output = run(f"file://{tmp_path / 'store'}")
    assert code == 1 and "content-mismatch" in output and "line digests" in output, output
