"""The shipper as a real ``logbridge ship`` process, for tests/integration/test_shipper_*.py (the
``shipper`` fixture of conftest.py makes them): a restartable process, a sequence-numbered log
writer and the store count. Every check is the same: each sequence number is in the store (or a
dead letter) exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from logbridge.shipper.checkpoint import CheckpointStore
from logbridge.shipper.status import file_lag

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
