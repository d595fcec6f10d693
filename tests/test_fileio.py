"""`logbridge.fileio`: atomic replacement and the one-process-per-directory lock that the
collector (``collector.lock``) and the shipper (``lock``) take on their state dirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from logbridge.collector.statelock import StateLock
from logbridge.errors import ConfigError, StateDirBusy, StateDirInUse
from logbridge.fileio import LockFile, LockHolder, write_atomic
from logbridge.shipper.engine import _lock_state_dir

HOLD = """
import sys, time
from logbridge.fileio import LockFile
lock = LockFile(sys.argv[1])
assert lock.try_acquire(owner=sys.argv[2]) is None
print("held", flush=True)
time.sleep(60)
"""


def _holder(path: Path, owner: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), owner], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.parametrize("durable", [True, False])
def test_write_atomic_replaces_whole_and_leaves_no_temp_file(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"old", durable=durable)
    write_atomic(target, b"new", durable=durable)
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_second_lock_on_the_file_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    first, second = LockFile(tmp_path / "lock"), LockFile(tmp_path / "lock")
    assert first.try_acquire(owner="127.0.0.1:1") is None and first.held
    assert first.try_acquire() is None  # idempotent
    assert second.try_acquire() == LockHolder(str(os.getpid()), "127.0.0.1:1")
    assert not second.held
    with pytest.raises(ValueError, match="not locked"):
        _ = second.fd
    first.release()
    assert second.try_acquire() is None and second.held
    second.release()


def test_the_lock_names_another_process_and_dies_with_it(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    proc = _holder(path, "host:9")
    try:
        busy = LockFile(path).try_acquire()
        assert busy == LockHolder(str(proc.pid), "host:9")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    lock = LockFile(path)
    deadline = time.monotonic() + 5
    while lock.try_acquire() is not None:  # the kernel drops a dead process's flock
        assert time.monotonic() < deadline, "the lock outlived its SIGKILLed holder"
        time.sleep(0.02)
    lock.release()


def test_a_child_process_does_not_inherit_the_lock(tmp_path: Path) -> None:
    lock = LockFile(tmp_path / "lock")
    lock.try_acquire()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.release()
        assert LockFile(tmp_path / "lock").try_acquire() is None  # the child holds no copy
    finally:
        child.kill()
        child.wait(timeout=10)


def test_collector_and_shipper_keep_their_own_messages_and_types(tmp_path: Path) -> None:
    collector = StateLock(tmp_path)
    collector.acquire(owner="127.0.0.1:8765")
    try:
        with pytest.raises(StateDirInUse) as refused:
            StateLock(tmp_path).acquire(owner="127.0.0.1:8766")
        message = str(refused.value)
        assert f"state_dir {tmp_path} is in use by another collector (pid {os.getpid()}" in message
        assert "listening on 127.0.0.1:8765" in message
        assert isinstance(refused.value, ConfigError) and refused.value.__context__ is None
    finally:
        collector.release()
    assert not collector.held

    fd = _lock_state_dir(str(tmp_path))
    try:
        with pytest.raises(
            StateDirBusy, match=f"another logbridge shipper is running with state_dir {tmp_path};"
        ):
            _lock_state_dir(str(tmp_path))
    finally:
        os.close(fd)
    assert (tmp_path / "lock").stat().st_mode & 0o777 == 0o600
    os.close(_lock_state_dir(str(tmp_path)))  # free again once closed
