"""The shipper config: DESIGN.md §6 as written, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from logbridge.errors import ConfigError
from logbridge.shipper.config import load, validate_dict

ROOT = Path(__file__).resolve().parents[2]

DESIGN_SAMPLE = """\
# shipper
node: node-a                                   # default: the host name
collector: {url: "http://127.0.0.1:8765/events", token_env: LB_TOKEN_A}
inputs:
  - path: /data/dss/run/audit/*.log            # glob; topic from the envelope
  - {path: /var/log/app/audit-*.txt, topic: generic, format: text}
state_dir: /var/lib/logbridge/shipper
batch: {max_events: 1000, max_bytes: 1MiB, linger: 200ms}
"""


def test_design_sample_works_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "shipper.yaml"
    path.write_text(DESIGN_SAMPLE)
    cfg = load(path)
    assert cfg.node == "node-a"
    assert cfg.batch.max_bytes == 1024 * 1024 and cfg.batch.linger == pytest.approx(0.2)
    assert cfg.inputs[1].format == "text" and cfg.inputs[1].topic == "generic"
    assert cfg.collector.compression == "gzip"


def test_repository_sample_is_valid() -> None:
    assert load(ROOT / "config" / "shipper.yaml").collector.token_env == "LB_TOKEN_A"


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        ({"collector": {"url": "ftp://x"}, "inputs": [{"path": "/x"}]}, "collector.url", "http://"),
        ({"collector": {"url": "http://x"}, "inputs": []}, "inputs", "at least 1"),
        (
            {"collector": {"url": "http://x"}, "inputs": [{"path": "/x", "format": "text"}]},
            "inputs[0]",
            "topic",
        ),
        (
            {"collector": {"url": "http://x"}, "inputs": [{"path": "/x", "pth": 1}]},
            "inputs[0].pth",
            "unknown key",
        ),
        (
            {"collector": {"url": "http://x"}, "inputs": [{"path": "/x"}], "batch": {"linger": "soon"}},
            "batch.linger",
            "duration",
        ),
        (
            {
                "collector": {"url": "http://x", "token_env": "A", "token_file": "/f"},
                "inputs": [{"path": "/x"}],
            },
            "collector",
            "not both",
        ),
    ],
)
def test_errors_name_the_key(data: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_dict(data)
    assert any(p.startswith(key) and words in p for p in info.value.problems), info.value.problems


def test_missing_token_variable_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "shipper.yaml"
    path.write_text(DESIGN_SAMPLE.replace("/var/lib/logbridge/shipper", str(tmp_path / "state")))
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "ship", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "LB_TOKEN_A" in proc.stderr and "Traceback" not in proc.stderr
