"""The collector as a real ``logbridge collect`` process, for the ``collector`` fixture of
conftest.py and the tests that build a `Collector` themselves (a config they start by hand)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from logbridge.collector.local import free_port, local_config


@dataclass
class Collector:
    """One collector configuration, (re)startable as a real ``logbridge collect`` process.

    The config, state dir, store and dead letter live in ``home``, so a restart after `kill`
    finds everything the killed process left behind.
    """

    home: Path
    config: dict[str, Any]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.config["listen"]["port"])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"{self.base_url}/events"

    @property
    def config_path(self) -> Path:
        return self.home / "collector.yaml"

    @property
    def store(self) -> Path:
        """The local root of the first destination (``file://`` destinations only)."""
        url = self.config["destinations"][0]["url"]
        assert url.startswith("file://"), url
        return Path(url[len("file://") :])

    @property
    def dead_letter(self) -> Path:
        return Path(self.config["dead_letter"][len("file://") :])

    def start(self, timeout: float = 20.0, *, require_healthy: bool = True) -> None:
        """Start the process and wait until ``GET /healthz`` answers 200 (any answer, when a
        test starts it with a destination that is known to fail: ``require_healthy=False``)."""
        assert self.process is None or self.process.poll() is not None, "collector already running"
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.starts += 1
        log_path = self.home / f"collector-{self.starts}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "logbridge", "collect", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.home,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"collector exited with {code} at start:\n{self.log_tail()}")
            try:
                status = httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code
                if status == 200 or not require_healthy:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"collector not healthy after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, staging files and journals stay as they are."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a clean shutdown publishes everything staged. Returns the exit code.

        0 or -SIGTERM both count as clean: uvicorn re-raises the signal it caught once its graceful
        shutdown is done (as systemd expects); anything else fails with the collector's log.
        """
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(f"collector ignored SIGTERM for {timeout}s:\n{self.log_tail()}") from None
        assert code in (0, -signal.SIGTERM), f"collector exited with {code} on SIGTERM:\n{self.log_tail()}"
        return 0

    def log_tail(self, lines: int = 40) -> str:
        if not self.logs:
            return "(no log)"
        text = self.logs[-1].read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def collector_config(home: Path, port: int, **overrides: Any) -> dict[str, Any]:
    """The minimal config of DESIGN.md §6 rooted in ``home``; top-level keys can be overridden."""
    return local_config(home, port, **overrides)


def nats_collector(home: Path, server_url: str, **destination: Any) -> Collector:
    """A collector in ``home`` (made here) whose one destination publishes to the stream AUDIT
    of the NATS server at ``server_url``; ``destination``: more keys of it (``max_bytes``, …)."""
    home.mkdir(parents=True)
    config = collector_config(home, free_port())
    config["destinations"] = [
        {"name": "bus", "type": "nats", "servers": [server_url], "stream": "AUDIT", **destination}
    ]
    return Collector(home, config, env=dict(os.environ))


# ------------------------------------------------------------------------ refused starts


def refusal_lines(stderr: str, what: str) -> tuple[list[str], list[str]]:
    """The lines a refused start printed (there should be one), and what is wrong with them."""
    problems = []
    if "Traceback" in stderr:
        problems.append(f"{what}: a traceback on stderr")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if len(lines) != 1:
        problems.append(f"{what}: expected one line on stderr, got {len(lines)}")
    return lines, problems


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def collect_cmd(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "logbridge", "collect", "--config", str(config_path)]


def run_refused_start(config_path: Path, port: int, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``logbridge collect`` expecting it to refuse to start; (exit code, stderr).

    Fails at once if the collector starts serving instead (``/healthz`` answers anything), so a
    set-up it accepts costs a second, not a 30 s timeout."""
    err_path = config_path.with_suffix(".stderr")
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            collect_cmd(config_path),
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            cwd=config_path.parent,
        )
    deadline = time.monotonic() + 30
    try:
        while proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
            except httpx.TransportError:
                pass
            else:
                raise AssertionError(
                    f"collector started (healthz {health.status_code} {health.text}) instead of exiting 2:\n"
                    + err_path.read_text(errors="replace")[-2000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError("collector neither exited nor served within 30 s")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    return proc.returncode, err_path.read_text(errors="replace")
