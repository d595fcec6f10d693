"""The shipper with many files: checkpoints written per interval (never per batch).
Real files, a real socket (the small collector of conftest.py), no mocks.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from logbridge.shipper.checkpoint import CheckpointStore
from logbridge.shipper.engine import Shipper

from .test_engine import assert_exactly_once, seqs, wait_for, write

pytestmark = pytest.mark.timeout(60)


def open_paths() -> list[str]:
    """What the descriptors of this process are open on."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed since the listing
    return targets


def open_under(directory: Path) -> int:
    """How many descriptors of this process are open on files under ``directory``."""
    prefix = str(directory) + os.sep
    return sum(target.startswith(prefix) for target in open_paths())


@contextmanager
def shipping(shipper: Shipper) -> Iterator[threading.Thread]:
    """Run ``shipper`` in a thread; stop it (and check it stopped cleanly) on exit."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            shipper.run()
        except BaseException as exc:  # the test fails on it below, with the exception
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        shipper.stop.set()
        shipper.wake.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "shipper did not stop"
    assert not errors, f"the shipper's loop died: {errors[0]!r}"


class CountingSaves(Shipper):
    """A real shipper that counts how often it writes its checkpoint file."""

    saves = 0

    def save(self) -> None:
        self.saves += 1
        super().save()


# ----------------------------------------------------------------------------------- checkpoints


def test_checkpoint_is_written_per_interval_not_per_batch(
    tmp_path: Path, make_config: Any, fake_collector: Any
) -> None:
    logs = tmp_path / "logs"
    for n in range(300):  # 300 files of 3 lines: 300 short batches
        write(logs / f"f{n:03}.log", range(n * 3, n * 3 + 3))
    shipper = CountingSaves(make_config(checkpoint_interval="1h"))
    totals = shipper.run(once=True)
    assert totals.batches == 300
    assert_exactly_once(fake_collector, 900)
    # The first pass's and the one at shutdown; a per-batch save would be 300 of them.
    assert shipper.saves <= 3, f"{shipper.saves} checkpoint writes for 300 batches"
    entries = CheckpointStore(tmp_path / "state").load()
    assert len(entries) == 300
    assert all(e.offset == os.path.getsize(e.path) for e in entries.values())


def test_an_older_checkpoint_only_causes_duplicates_and_409s(
    tmp_path: Path, make_config: Any, fake_collector: Any
) -> None:
    """What a SIGKILL between two checkpoint writes leaves: offsets older than what the
    collector has. Short batches are cut again at other places; the collector's answers
    (duplicate, 409 + high-water mark) keep every line stored once."""
    logs = tmp_path / "logs"
    cfg = make_config(checkpoint_interval="1h")
    write(logs / "a.log", range(0, 40))
    write(logs / "b.log", range(1000, 1040))
    Shipper(cfg).run(once=True)
    older = tmp_path / "older-checkpoints.json"
    shutil.copy(tmp_path / "state" / "checkpoints.json", older)
    a, b = 40, 1040
    shipper = Shipper(cfg)
    with shipping(shipper):
        for _ in range(15):  # short batches: each cut where the data ended at that moment
            write(logs / "a.log", range(a, a + 7))
            write(logs / "b.log", range(b, b + 5))
            a, b = a + 7, b + 5
            wait_for(lambda a=a, b=b: {a - 1, b - 1} <= set(seqs(fake_collector)), what="the new lines")
    shutil.copy(older, tmp_path / "state" / "checkpoints.json")  # as if killed before any save
    write(logs / "a.log", range(a, a + 30))
    write(logs / "b.log", range(b, b + 30))
    before = len(fake_collector.requests)
    Shipper(cfg).run(once=True)
    got = seqs(fake_collector)
    expected = set(range(0, a + 30)) | set(range(1000, b + 30))
    assert set(got) == expected and max(got.values()) == 1
    # The restart went back to the older offsets, and the collector told it what it had.
    older_offsets = {e.source: e.offset for e in _load(older).values()}
    first: dict[str, int] = {}
    for r in fake_collector.requests[before:]:
        first.setdefault(r.headers["x-logbridge-source"], int(r.headers["x-logbridge-range"].split("-")[0]))
    assert first == older_offsets


def _load(path: Path) -> dict[str, Any]:
    """The entries of a checkpoint file kept aside."""
    directory = path.parent / "loaded"
    directory.mkdir(exist_ok=True)
    shutil.copy(path, directory / "checkpoints.json")
    return CheckpointStore(directory).load()
