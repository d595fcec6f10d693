"""Config loading: sizes, durations, and messages that name the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.collector.config import load
from logbridge.errors import ConfigError
from logbridge.units import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * 1024**2),
        ("1MB", 1_000_000),
        ("4096", 4096),
        (4096, 4096),
        ("1.5KiB", 1536),
        ("2 GiB", 2 * 1024**3),
    ],
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"), [("200ms", 0.2), ("5m", 300.0), ("1s", 1.0), (3, 3.0), ("2h", 7200.0)]
)
def test_durations(text: object, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["lots", "64XB", "-1", "", True])
def test_bad_sizes_say_what_is_expected(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["KiB", "MiB", "KB", "MB", ""]))
def test_size_round_trip(n: int, unit: str) -> None:
    factor = {"KiB": 1024, "MiB": 1024**2, "KB": 1000, "MB": 1000**2, "": 1}[unit]
    assert parse_size(f"{n}{unit}") == n * factor


def test_minimal_collector_config_from_design_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LB_TOKEN_A", "s3cret")
    config = load(ROOT / "config" / "collector.yaml")
    assert config.destinations[0].roll.max_bytes == 64 * 1024**2
    assert config.destinations[0].roll.max_age == 300.0
    assert config.resolved_tokens() == {"node-a": "s3cret"}


def test_every_problem_is_named_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "listen: {host: 127.0.0.1, port: 99999}\n"
        "dead_letter: file:///tmp/dl\n"
        "destinations:\n"
        "  - name: store\n"
        "    url: file:///tmp/s\n"
        "    roll: {max_bytes: lots}\n"
        "    colour: blue\n"
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    text = str(info.value)
    assert str(path) in text
    assert "listen.port" in text
    assert "destinations[0].roll.max_bytes" in text and "size" in text
    assert "destinations[0].colour: unknown key" in text


def test_missing_token_env_names_the_variable_not_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LB_NOT_SET", raising=False)
    path = tmp_path / "c.yaml"
    path.write_text(
        "auth: {tokens: [{name: a, token_env: LB_NOT_SET}]}\n"
        "dead_letter: file:///tmp/dl\n"
        "destinations: [{name: s, url: 'file:///tmp/s'}]\n"
    )
    with pytest.raises(ConfigError, match="LB_NOT_SET"):
        load(path)


def test_cli_bad_config_is_one_message_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("listen: [not, a, mapping\n")
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "collect", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and "YAML" in proc.stderr
