"""The shipper with many files: checkpoints written per interval (never per batch), a cap on
open files (least recently used closed, reopened by identity), and running out of descriptors
survived. Real files, a real socket (the small collector of conftest.py), no mocks.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _polling import wait_for

from logbridge.shipper.checkpoint import CheckpointStore
from logbridge.shipper.engine import Shipper

from .seqlines import assert_exactly_once, exactly_once, line, seqs, write

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
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    for n in range(300):  # 300 files of 3 lines: 300 short batches
        write(logs / f"f{n:03}.log", range(n * 3, n * 3 + 3))
    shipper = CountingSaves(make_config(checkpoint_interval="1h"))
    totals = shipper.run(once=True)
    assert totals.batches == 300
    assert_exactly_once(loopback_collector, 900)
    # The first pass's and the one at shutdown; a per-batch save would be 300 of them.
    assert shipper.saves <= 3, f"{shipper.saves} checkpoint writes for 300 batches"
    entries = CheckpointStore(tmp_path / "state").load()
    assert len(entries) == 300
    assert all(e.offset == os.path.getsize(e.path) for e in entries.values())


def test_an_older_checkpoint_only_causes_duplicates_and_409s(
    tmp_path: Path, make_config: Any, loopback_collector: Any
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
            wait_for(lambda a=a, b=b: {a - 1, b - 1} <= set(seqs(loopback_collector)), what="the new lines")
    shutil.copy(older, tmp_path / "state" / "checkpoints.json")  # as if killed before any save
    write(logs / "a.log", range(a, a + 30))
    write(logs / "b.log", range(b, b + 30))
    before = len(loopback_collector.requests)
    Shipper(cfg).run(once=True)
    got = seqs(loopback_collector)
    expected = set(range(0, a + 30)) | set(range(1000, b + 30))
    assert set(got) == expected and max(got.values()) == 1
    # The restart went back to the older offsets, and the collector told it what it had.
    older_offsets = {e.source: e.offset for e in _load(older).values()}
    first: dict[str, int] = {}
    for r in loopback_collector.requests[before:]:
        first.setdefault(r.headers["x-logbridge-source"], int(r.headers["x-logbridge-range"].split("-")[0]))
    assert first == older_offsets


def _load(path: Path) -> dict[str, Any]:
    """The entries of a checkpoint file kept aside."""
    directory = path.parent / "loaded"
    directory.mkdir(exist_ok=True)
    shutil.copy(path, directory / "checkpoints.json")
    return CheckpointStore(directory).load()


# ------------------------------------------------------------------------------- open-file cap


def test_no_more_files_open_than_max_open_files(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    peak = 0
    writing = threading.Lock()  # the test's own writes open files there too: not counted

    def on_ack(lines: int, nbytes: int) -> None:  # in the shipper's thread, at every batch
        nonlocal peak
        with writing:
            peak = max(peak, open_under(logs))

    cfg = make_config(max_open_files=16)
    files = [logs / f"f{n:03}.log" for n in range(120)]
    for n, path in enumerate(files):
        write(path, range(n, n + 1))
    shipper = Shipper(cfg, on_ack=on_ack)
    with shipping(shipper):
        wait_for(lambda: exactly_once(loopback_collector, 120), what="the first line of each file")
        seq = 120
        for _ in range(3):  # appended to round-robin while the shipper runs
            for path in files:
                with writing:
                    write(path, range(seq, seq + 1))
                seq += 1
        wait_for(lambda: exactly_once(loopback_collector, seq), timeout=30, what="every line")
    assert_exactly_once(loopback_collector, seq)
    assert 0 < peak <= 16, f"{peak} files open with max_open_files 16"


def test_a_file_closed_for_room_is_reopened_by_identity(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(max_open_files=2, inputs=[{"path": str(logs / "*.log*")}])
    for n in range(6):
        write(logs / f"f{n}.log", range(n * 100, n * 100 + 10))
    shipper = Shipper(cfg)
    with shipping(shipper):
        wait_for(lambda: len(seqs(loopback_collector)) == 60, what="60 lines")
        sources = {r.headers["x-logbridge-source"] for r in loopback_collector.requests}
        assert str(logs / "f0.log") not in open_paths()  # the first one in: closed for the others
        # f0.log, closed to make room, is renamed away (still matched) and grows under its new
        # name; a new f0.log takes its place.
        os.rename(logs / "f0.log", logs / "f0.log.1")
        write(logs / "f0.log.1", range(10, 20))
        write(logs / "f0.log", range(600, 610))
        for n in range(1, 6):
            write(logs / f"f{n}.log", range(n * 100 + 10, n * 100 + 20))
        wait_for(lambda: len(seqs(loopback_collector)) == 130, what="130 lines")
    got = seqs(loopback_collector)
    assert set(got) == set(range(0, 20)) | {
        s for n in range(1, 6) for s in range(n * 100, n * 100 + 20)
    } | set(range(600, 610))
    assert max(got.values()) == 1
    # The renamed file continued its source (same identity); the new one got its own.
    after = [r for r in loopback_collector.requests if b'"seq":10,' in r.body]
    assert after and after[0].headers["x-logbridge-source"] in sources
    new = [r for r in loopback_collector.requests if b'"seq":600,' in r.body]
    assert new and new[0].headers["x-logbridge-source"] not in sources


def test_max_open_files_defaults_well_under_the_descriptor_limit(make_config: Any) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    shipper = Shipper(make_config())
    try:
        assert 1 <= shipper.max_open <= soft // 2
    finally:
        shipper.close()
    shipper = Shipper(make_config(max_open_files=soft + 100))
    try:
        assert shipper.max_open < soft  # a configured cap above the limit is lowered (with a warning)
    finally:
        shipper.close()


# ------------------------------------------------------------------------ descriptors run out


def _exhaust_descriptors() -> list[int]:
    held = []
    while True:
        try:
            held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            return held


def test_running_out_of_descriptors_is_survived(
    tmp_path: Path, make_config: Any, loopback_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="logbridge.shipper")
    logs = tmp_path / "logs"
    for n in range(6):
        write(logs / f"f{n}.log", range(n * 100, n * 100 + 10))
    cfg = make_config(checkpoint_interval="50ms")
    shipper = Shipper(cfg)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    expected = {s for n in range(12) for s in range(n * 100, n * 100 + 10)}
    expected |= {s for n in range(6) for s in range(n * 100 + 10, n * 100 + 20)}
    with shipping(shipper) as thread:
        wait_for(lambda: len(seqs(loopback_collector)) == 60, what="the first lines")
        # The test's own writes go through descriptors taken before the limit is reached (six
        # new files among them, empty until then), each replaced by /dev/null once used: the
        # shipper gets no descriptor but those it gives back itself.
        handles = [
            os.open(logs / f"f{n}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            for n in range(12)
        ]
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 24, hard))
        held = handles + _exhaust_descriptors()
        devnull = held[-1]
        try:
            for n, fd in enumerate(handles):
                start = n * 100 + (10 if n < 6 else 0)
                os.write(fd, b"".join(line(s) for s in range(start, start + 10)))
                os.dup2(devnull, fd)  # closed and taken again at once
            wait_for(
                lambda: set(seqs(loopback_collector)) == expected,
                timeout=30,
                what="every line, shipped while no descriptor is free",
            )
            assert thread.is_alive()
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert max(seqs(loopback_collector).values()) == 1
    assert "too many open files" in caplog.text.lower()
    assert "Traceback" not in caplog.text
    entries = CheckpointStore(tmp_path / "state").load()
    assert all(e.offset == os.path.getsize(e.path) for e in entries.values())


def test_restart_with_more_files_than_the_cap_ships_them_all(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    for n in range(50):
        write(logs / f"f{n:02}.log", range(n * 10, n * 10 + 10))
    peak = 0

    def on_ack(lines: int, nbytes: int) -> None:
        nonlocal peak
        peak = max(peak, open_under(logs))

    on_start: list[int] = []
    totals = Shipper(make_config(max_open_files=4), on_ack=on_ack, on_start=on_start.append).run(once=True)
    assert totals.lines == 500
    assert on_start == [sum(os.path.getsize(p) for p in logs.iterdir())]  # --once's progress total
    assert_exactly_once(loopback_collector, 500)
    assert peak <= 4
