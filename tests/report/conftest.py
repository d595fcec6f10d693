"""Stores for the report tests, written by samples/generate.py's ``--store`` mode, and a plain
Python reading of them (`reference`) that the reports are checked against."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import zstandard
from click.testing import CliRunner, Result

from logbridge.cli import cli

pytest.importorskip("duckdb")

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("samples_generate", SAMPLES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass-free, but pickling by name needs it registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def generate() -> ModuleType:
    return _generator()


# Stored lines the generator does not write: the other envelopes' times, an event with no time of
# its own, hostile values. One file in an hour partition of 2020-02-18 (UTC).
EXTRA_PARTITION = "generic/default/2020/02/18/10"
EXTRA_LINES: list[dict[str, Any]] = [
    # log4j 2 JsonLayout: time from envelope.instant
    {
        "clientEvent": {"msgType": "flow-job-start", "authUser": "log4j2.user", "projectKey": "P"},
        "origAddress": "10.9.0.1",
        "serverTimestamp": "2020-02-18T10:00:09.000+0000",
        "topic": "generic",
        "node": "jvm-node",
        "envelope": {
            "loggerName": "dku.audit.generic",
            "instant": {"epochSecond": 1582020005, "nanoOfSecond": 250000000},
        },
    },
    # bare event with its own timestamp (offset with a colon)
    {
        "clientEvent": {
            "msgType": "login",
            "authUser": "bare.user",
            "timestamp": "2020-02-18T11:30:00.500+01:00",
        },
        "origAddress": "10.9.0.2",
        "serverTimestamp": "2020-02-18T10:31:00.000+0000",
        "topic": "generic",
        "node": "jvm-node",
    },
    # no time of its own: the receive time; no node header: the address stands for the node
    {
        "clientEvent": {"msgType": "project-open", "authUser": "no.time"},
        "origAddress": "10.9.0.3",
        "serverTimestamp": "2020-02-18T10:45:00.123Z",
        "topic": "generic",
    },
    # hostile: control characters in the user, a number where text is expected
    {
        "clientEvent": {"msgType": "project-open", "authUser": "evil\u001b[2J\nuser", "timestamp": 17},
        "origAddress": "10.9.0.4",
        "serverTimestamp": "2020-02-18T10:50:00.000+0000",
        "topic": "generic",
        "node": "jvm-node",
        "envelope": {"timeMillis": 1582023000000},
    },
]


def write_extra(root: Path) -> None:
    folder = root / EXTRA_PARTITION
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(line) + b"\n" for line in EXTRA_LINES)
    (folder / "events-extra.ndjson").write_bytes(data)


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory: pytest.TempPathFactory, generate: ModuleType) -> Path:
    """The four sample nodes' three days (the same events as samples/*/audit), a third of the
    files gzip- and a third zstd-compressed (as destinations publish them), plus `EXTRA_LINES`."""
    root = tmp_path_factory.mktemp("store")
    generate.write_store(root, scale=1.0)
    for i, path in enumerate(sorted(root.rglob("*.ndjson"))):
        if i % 3 == 1:
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
        elif i % 3 == 2:
            path.with_name(path.name + ".zst").write_bytes(
                zstandard.ZstdCompressor().compress(path.read_bytes())
            )
            path.unlink()
    write_extra(root)
    return root


def read_lines(root: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(root.rglob("*.ndjson*")):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        elif path.name.endswith(".zst"):
            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        lines.extend(orjson.loads(raw) for raw in data.splitlines() if raw.strip())
    return lines


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def event_time(line: dict[str, Any]) -> datetime:
    """DESIGN.md §2's order, in plain Python."""
    envelope = line.get("envelope") or {}
    for candidate in (
        _parse(envelope.get("timestamp")),
        datetime.fromtimestamp(
            envelope["instant"]["epochSecond"] + envelope["instant"]["nanoOfSecond"] / 1e9, UTC
        )
        if "instant" in envelope
        else None,
        datetime.fromtimestamp(envelope["timeMillis"] / 1000, UTC) if "timeMillis" in envelope else None,
        _parse(line["clientEvent"].get("timestamp")),
        _parse(line.get("serverTimestamp")),
    ):
        if candidate is not None:
            return candidate.astimezone(UTC)
    raise AssertionError(f"no time in {line}")


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@pytest.fixture
def run_report() -> Callable[..., Result]:
    """``logbridge report ARGS…`` in this process (stdout and stderr apart)."""

    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)

    return run


@pytest.fixture(autouse=True)
def report_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own digest cache (the command's default place is under $XDG_CACHE_HOME)."""
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home / "logbridge" / "report"
