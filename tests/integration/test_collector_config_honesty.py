"""Collector config keys mean what they say (DESIGN.md §5, §6), checked over a real
``logbridge collect``: a state_dir inside a store, and a key that nothing reads, are refused
with exit 2 and one message — before anything is created or touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from logbridge.collector.config import load
from logbridge.collector.local import free_port, local_config
from logbridge.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def refused(tmp_path: Path, config: dict[str, Any]) -> str:
    """Run ``logbridge collect`` on ``config``; assert exit 2 without a traceback; its stderr."""
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "collect", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, f"exit {proc.returncode}, expected 2:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(
    "where",
    ["store/state", "store", "dead-letter/x/state"],
)
def test_state_dir_inside_a_store_exits_2_naming_both_paths(tmp_path: Path, where: str) -> None:
    state_dir = tmp_path / where
    config = local_config(tmp_path, free_port(), state_dir=state_dir)
    store_key, store = (
        ("dead_letter", tmp_path / "dead-letter")
        if where.startswith("dead-letter")
        else ("destinations[0].url (store)", tmp_path / "store")
    )

    stderr = refused(tmp_path, config)

    lines = [
        line for line in stderr.splitlines() if str(state_dir) in line and f"{store_key}, {store}:" in line
    ]
    assert lines and "state_dir" in lines[0], stderr
    assert not state_dir.exists(), "the refused collector created its state_dir"
    assert not store.exists(), "the refused collector touched the store"


def test_state_dir_beside_the_store_or_below_a_look_alike_name_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    for state_dir in (tmp_path / "state", tmp_path / "store-state", tmp_path / "stor"):
        path.write_text(yaml.safe_dump(local_config(tmp_path, 8765, state_dir=state_dir)))
        assert load(path).resolved_state_dir() == state_dir


def test_state_dir_reached_through_a_symlink_into_the_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "store")
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(local_config(tmp_path, 8765, state_dir=tmp_path / "link" / "state")))
    with pytest.raises(ConfigError, match="is inside the store of destinations"):
        load(path)


def test_node_header_trusted_is_refused_with_what_to_do_and_every_other_problem(tmp_path: Path) -> None:
    config = local_config(tmp_path, free_port(), node_header_trusted=False, durability="sometimes")

    stderr = refused(tmp_path, config)

    assert "node_header_trusted: this key was removed: it was never read" in stderr, stderr
    assert "Delete the key" in stderr
    assert "durability:" in stderr, "the other problem of the file was not reported with it"
    assert not (tmp_path / "state").exists()
