"""`shipped`: the read-only view of a shipper's checkpoint that a rolling appender asks at
rollover. Checkpoints are written by the real engine (``run(once=True)`` against the loopback
collector), as the guard would find them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from logbridge.shipper import Shipper
from logbridge.shipper.checkpoint import FILE_NAME, CheckpointStore
from logbridge.shipper.shipped import CheckpointUnreadable, ShippedView


def _lines(first: int, n: int) -> bytes:
    return b"".join(b'{"msgType":"t","seq":%d}\n' % i for i in range(first, first + n))


def test_a_shipped_file_is_known_by_inode_and_bytes_after_a_rename(tmp_path: Path, make_config: Any) -> None:
    cfg = make_config()
    log = tmp_path / "logs" / "a.log"
    log.write_bytes(_lines(0, 50))
    Shipper(cfg).run(once=True)
    view = ShippedView.read(cfg.state_dir)
    assert view.of(log).shipped
    os.rename(log, tmp_path / "logs" / "a.log.1")  # what a rollover does: same inode, new name
    moved = view.of(tmp_path / "logs" / "a.log.1")
    assert moved.shipped and moved.size == moved.acked == len(_lines(0, 50))


def test_bytes_written_after_the_checkpoint_are_unshipped(tmp_path: Path, make_config: Any) -> None:
    cfg = make_config()
    log = tmp_path / "logs" / "a.log"
    log.write_bytes(_lines(0, 10))
    Shipper(cfg).run(once=True)
    with log.open("ab") as f:
        f.write(_lines(10, 5))
    state = ShippedView.read(cfg.state_dir).of(log)
    assert not state.shipped and state.unshipped == len(_lines(10, 5))


def test_a_file_the_shipper_never_saw_is_wholly_unshipped(tmp_path: Path, make_config: Any) -> None:
    cfg = make_config()
    (tmp_path / "logs" / "a.log").write_bytes(_lines(0, 3))
    Shipper(cfg).run(once=True)
    other = tmp_path / "elsewhere.log"
    other.write_bytes(_lines(0, 3))  # same bytes, another inode: not the shipped file
    state = ShippedView.read(cfg.state_dir).of(other)
    assert state.acked == 0 and state.unshipped == other.stat().st_size


def test_a_malformed_entry_counts_as_nothing_shipped(tmp_path: Path, make_config: Any) -> None:
    cfg = make_config()
    log = tmp_path / "logs" / "a.log"
    log.write_bytes(_lines(0, 3))
    st = log.stat()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / FILE_NAME).write_bytes(
        b'{"version": 1, "files": [{"source": "x", "dev": %d, "ino": %d, "offset": 999}]}'
        % (st.st_dev, st.st_ino)
    )
    state = ShippedView.read(cfg.state_dir).of(log)
    assert state.acked == 0 and not state.shipped


def test_a_reused_inode_with_other_bytes_is_not_taken_for_the_shipped_file(
    tmp_path: Path, make_config: Any
) -> None:
    cfg = make_config()
    log = tmp_path / "logs" / "a.log"
    log.write_bytes(_lines(0, 10))
    Shipper(cfg).run(once=True)
    with log.open("r+b") as f:  # same inode, rewritten with other bytes (as a reused inode holds)
        f.truncate(0)
        f.write(_lines(100, 20))
    state = ShippedView.read(cfg.state_dir).of(log)
    assert state.acked == 0 and not state.shipped


def test_a_missing_or_bad_checkpoint_is_reported_and_left_alone(tmp_path: Path) -> None:
    with pytest.raises(CheckpointUnreadable, match="cannot read the shipper's checkpoint"):
        ShippedView.read(tmp_path)
    bad = tmp_path / FILE_NAME
    bad.write_bytes(b'{"version": 1, "files": {"source": "x"}}')
    with pytest.raises(CheckpointUnreadable, match="unreadable"):
        ShippedView.read(tmp_path)
    bad.write_bytes(b"[1, 2")
    with pytest.raises(CheckpointUnreadable, match="unreadable"):
        ShippedView.read(tmp_path)
    bad.write_bytes(b'{"version": 99, "files": []}')
    with pytest.raises(CheckpointUnreadable, match="version 99"):
        ShippedView.read(tmp_path)
    # A reader in another process never moves the shipper's file aside (the shipper does).
    assert bad.read_bytes() == b'{"version": 99, "files": []}'
    assert [p.name for p in tmp_path.iterdir()] == [FILE_NAME]
    # The shipper itself still sets it aside and starts over.
    assert CheckpointStore(tmp_path).load() == {}
    assert not bad.exists()
