"""The shipper and the collector as real processes over real files (issue 4).

This module also holds the harness the other ``test_shipper_*`` modules import: a restartable
``logbridge ship`` process, a sequence-numbered log writer and the store count. Every check is
the same: each sequence number is in the store (or a dead letter) exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from logbridge.shipper.checkpoint import CheckpointStore
from logbridge.shipper.status import file_lag

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPICS = ("generic", "generic-failure", "authfail", "apinode-query", "compute-resource-usage", "apicalls")


def audit_line(seq: int, pad: int = 60) -> bytes:
    """A log4j file envelope (DESIGN.md §2.1) carrying its sequence number."""
    topic = TOPICS[seq % len(TOPICS)]
    event: dict[str, Any] = {
        "msgType": "test-event",
        "authUser": f"user{seq % 5}",
        "seq": seq,
        "pad": "p" * pad,
    }
    if topic == "apinode-query":
        event["routingKey"] = f"service-{seq // 6 % 3}"
    return (
        orjson.dumps(
            {
                "severity": "INFO",
                "logger": f"dku.audit.{topic}",
                "message": event,
                "mdc": {"user": event["authUser"]},
                "callTime": 3,
                "timestamp": "2020-02-19T16:05:02.441+0100",
            }
        )
        + b"\n"
    )


def lines(seqs: range) -> bytes:
    return b"".join(audit_line(s) for s in seqs)


@dataclass
class ShipperProc:
    """One shipper config, run as ``logbridge ship`` (daemon, restartable) or ``--once``."""

    home: Path
    config: dict[str, Any]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)
    preexec_fn: Callable[[], None] | None = None  # run in the child before exec (resource limits)

    @property
    def config_path(self) -> Path:
        return self.home / "shipper.yaml"

    @property
    def state_dir(self) -> Path:
        return Path(self.config["state_dir"])

    def _popen(self, *extra: str) -> subprocess.Popen[bytes]:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.starts += 1
        log_path = self.home / f"shipper-{self.starts}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "logbridge", "ship", "--config", str(self.config_path), *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                preexec_fn=self.preexec_fn,
            )

    def start(self, timeout: float = 20.0) -> None:
        """Start the daemon and wait until it has said it is shipping (signals handled)."""
        assert self.process is None or self.process.poll() is not None, "shipper already running"
        self.process = self._popen()
        log = self.logs[-1]
        deadline = time.monotonic() + timeout
        while b"shipping" not in log.read_bytes():
            if self.process.poll() is not None:
                raise AssertionError(f"shipper exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"shipper not started after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.02)

    def once(self, timeout: float = 60.0, *, expect: int = 0) -> str:
        """Run ``ship --once``, check its exit code is ``expect``; its log and summary."""
        proc = self._popen("--once")
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"ship --once still running after {timeout}s:\n{self.log_tail()}") from None
        assert code == expect, f"ship --once exited with {code}, not {expect}:\n{self.log_tail()}"
        return self.logs[-1].read_text(errors="replace")

    def status(self) -> str:
        """What ``ship --status`` prints (it must exit 0)."""
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        proc = subprocess.run(
            [sys.executable, "-m", "logbridge", "ship", "--config", str(self.config_path), "--status"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, f"ship --status exited with {proc.returncode}:\n{proc.stderr}"
        return proc.stdout

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"shipper ignored SIGTERM:\n{self.log_tail()}") from None
        assert code == 0, f"shipper exited with {code} on SIGTERM:\n{self.log_tail()}"

    def lag(self) -> int | None:
        """Total unacknowledged bytes per the checkpoint file, as ``--status`` prints them
        (renamed files followed by inode: a backlog of rotated copies is a lag)."""
        if not (self.state_dir / "checkpoints.json").exists():
            return None
        entries = CheckpointStore(self.state_dir).load()
        return sum(file_lag(entry)[2] or 0 for entry in entries.values())

    def wait_caught_up(self, timeout: float, steady: float = 1.5) -> None:
        """Until the lag has been 0 for ``steady`` seconds: longer than a scan and a checkpoint
        interval, so files not yet discovered (not in the checkpoint yet) show up first."""
        deadline = time.monotonic() + timeout
        since: float | None = None
        while True:
            now = time.monotonic()
            if self.lag() == 0:
                since = now if since is None else since
                if now - since >= steady:
                    return
            else:
                since = None
            if now > deadline:
                raise AssertionError(f"lagging after {timeout}s: {self.lagging()}\n{self.log_tail()}")
            time.sleep(0.05)

    def lagging(self) -> list[str]:
        entries = CheckpointStore(self.state_dir).load()
        return [f"{e.path}: {file_lag(e)}, offset {e.offset}" for e in entries.values() if file_lag(e)[2]]

    def log_tail(self, n: int = 40) -> str:
        if not self.logs:
            return "(no log)"
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-n:])


def shipper_config(home: Path, url: str, inputs: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "node": "test-node",
        "collector": {"url": url, "retry": {"initial": "50ms", "max": "500ms"}},
        "inputs": inputs,
        "state_dir": str(home / "state"),
        "batch": {"max_events": 1000, "max_bytes": "1MiB", "linger": "50ms"},
        "scan_interval": "500ms",
        "poll_interval": "50ms",
        "partial_line_timeout": "1s",
        "checkpoint_interval": "200ms",
    }
    config.update(overrides)
    return config


@pytest.fixture(name="shipper")
def shipper_fixture(tmp_path: Path) -> Iterator[Callable[..., ShipperProc]]:
    """``shipper(url, inputs, **overrides)`` → a `ShipperProc` (not started); stopped in teardown."""
    made: list[ShipperProc] = []

    def make(url: str, inputs: list[dict[str, Any]], **overrides: Any) -> ShipperProc:
        home = tmp_path / f"shipper-{len(made)}"
        home.mkdir()
        proc = ShipperProc(home, shipper_config(home, url, inputs, **overrides))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.process is not None and proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(timeout=10)


def stored_seqs(
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]], root: Path
) -> Counter[int]:
    counts: Counter[int] = Counter()
    for stored in read_local_store(root).values():
        for rec in stored:
            seq = rec["clientEvent"].get("seq")
            if seq is not None:
                counts[seq] += 1
    return counts


def assert_exactly_once(counts: Counter[int], expected: set[int] | range) -> None:
    expected = set(expected)
    missing = sorted(expected - set(counts))
    twice = sorted(s for s, c in counts.items() if c > 1)
    extra = sorted(set(counts) - expected)
    assert not missing and not twice and not extra, (
        f"{len(missing)} missing (first {missing[:10]}), {len(twice)} stored twice (first {twice[:10]}), "
        f"{len(extra)} unexpected"
    )


def dead_letter_records(root: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(root.rglob("*.ndjson")):
        out.extend(orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip())
    return out


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ tests


def test_once_ships_every_topic_into_the_partitioned_store(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 3000)))
    (logs / "other.log").write_bytes(lines(range(3000, 3500)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    out = s.once()
    assert "shipped 3,500 lines" in out
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(3500))
    topics = {p.split("/")[0] for p in read_local_store(c.store)}
    assert topics == set(TOPICS)
    assert any(p.startswith("apinode-query/service-1/2020/02/19/15/") for p in read_local_store(c.store))


def test_partial_last_line_and_inode_reuse(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "audit.log"
    last = audit_line(100)
    active.write_bytes(lines(range(0, 100)) + last[:50])
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}], partial_line_timeout="500ms")
    s.start()
    wait_until(lambda: s.lag() == len(last[:50]), 20, "the 100 complete lines acknowledged")
    time.sleep(1.0)  # past partial_line_timeout: the live file's half line is still held
    assert s.lag() == 50
    with active.open("ab") as fh:
        fh.write(last[50:])
    wait_until(lambda: s.lag() == 0, 20, "the completed line acknowledged")
    s.stop()
    # The file is removed and a new one created (the file system may reuse the inode).
    os.unlink(active)
    (logs / "new.log").write_bytes(lines(range(101, 200)))
    s.once()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(200))


def test_ten_megabyte_line_goes_to_the_dead_letter_as_a_marker(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    big = audit_line(500, pad=10 * 1024 * 1024)
    (logs / "audit.log").write_bytes(lines(range(0, 500)) + big + lines(range(501, 1000)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    out = s.once()
    assert "over max_line_bytes" in out
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), set(range(1000)) - {500})
    dead = dead_letter_records(c.dead_letter)
    markers = [
        r.get("rawObject") or orjson.loads(r["raw"]) for r in dead if "logbridge-oversized-line" in str(r)
    ]
    assert len(markers) == 1
    assert markers[0]["msgType"] == "logbridge-oversized-line"
    assert markers[0]["bytes"] == len(big) - 1 and markers[0]["offset"] == len(lines(range(0, 500)))


def test_status_prints_each_files_lag(tmp_path: Path, collector: Any, shipper: Any) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 10)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.once()
    with (logs / "audit.log").open("ab") as fh:
        fh.write(lines(range(10, 20)))
    s.config_path.write_text(yaml.safe_dump(s.config))
    out = subprocess.run(
        [sys.executable, "-m", "logbridge", "ship", "--config", str(s.config_path), "--status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(logs / "audit.log") in out
    assert f"total lag: {len(lines(range(10, 20))):,} bytes in 1 files" in out


def test_bad_config_is_one_message_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "collector: {url: ftp://x}\ninputs: [{path: /x, format: text}]\nbatch: {max_bytes: lots}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "ship", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for key in ("collector.url", "inputs[0]", "batch.max_bytes"):
        assert key in proc.stderr, proc.stderr


def test_daemon_serves_prometheus_metrics(tmp_path: Path, collector: Any, shipper: Any) -> None:
    import httpx

    from .conftest import free_port

    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 100)))
    port = free_port()
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}], metrics={"host": "127.0.0.1", "port": port})
    s.start()
    wait_until(lambda: s.lag() == 0, 20, "the lines acknowledged")

    def scraped() -> str:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        return text if "logbridge_shipper_lines_total 100.0" in text else ""

    text = wait_until(scraped, 10, "the metrics to show 100 lines")
    for name in (
        "bytes_total",
        "retries_total",
        "dead_lettered_lines_total",
        "lost_bytes_total",
        "lost_files_total",
        "lag_bytes",
    ):
        assert f"logbridge_shipper_{name}" in text
    s.stop()
