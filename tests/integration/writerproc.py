"""``logbridge consume`` as a real process: the `Writer` harness of the consume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml


def writer_config(home: Path, server_url: str, store: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "nats": {"servers": [server_url], "stream": "AUDIT", "consumer": "writers", "ack_wait": "3s"},
        "writer_id": home.name,
        "state_dir": str(home / "state"),
        "dead_letter": f"file://{home / 'dead-letter'}",
        "destinations": [
            {"name": "store", "url": f"file://{store}", "roll": {"max_age": "1s"}},
        ],
    }
    config.update(overrides)
    return config


@dataclass
class Writer:
    home: Path
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.home / "writer.yaml"

    def start(self, env: dict[str, str] | None = None) -> None:
        assert self.process is None or self.process.poll() is not None, "writer already running"
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.starts += 1
        log_path = self.home / f"writer-{self.starts}.log"
        self.logs.append(log_path)
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "logbridge", "consume", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, "PYTHONFAULTHANDLER": "1", **(env or {})},
                cwd=self.home,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    @property
    def started(self) -> bool:
        """Past start-up (signal handlers set, recovery done): it logged "writer started"."""
        return bool(self.logs) and "writer started" in self.logs[-1].read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> None:
        if not self.running:
            return
        assert self.process is not None
        from _polling import wait_for

        wait_for(lambda: self.started or not self.running, 60, f"writer {self.home.name} to start")
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # PYTHONFAULTHANDLER: SIGABRT writes every thread's stack to the log.
            self.process.send_signal(signal.SIGABRT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            raise AssertionError(f"writer ignored SIGTERM:\n{self.log_tail(80)}") from None
        assert code == 0, f"writer exited with {code}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        if not self.logs:
            return "(no log)"
        return "\n".join(self.logs[-1].read_text(errors="replace").splitlines()[-lines:])

    def command(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``logbridge consume --config … ARGS`` run to its end (``--status``, ``--release``)."""
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return subprocess.run(
            [sys.executable, "-m", "logbridge", "consume", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
        )


def store_lines(root: Path) -> dict[str, list[bytes]]:
    """Published data files under ``root`` (no hidden or staging files): relative folder → lines."""
    out: dict[str, list[bytes]] = {}
    if not root.exists():
        return out
    for path in sorted(root.rglob("*.ndjson")):
        if path.name.startswith("."):
            continue
        folder = path.parent.relative_to(root).as_posix()
        out.setdefault(folder, []).extend(path.read_bytes().splitlines())
    return out


def seqs_in(root: Path, field_name: str = "seq") -> list[int]:
    return [
        orjson.loads(line)["clientEvent"][field_name]
        for lines in store_lines(root).values()
        for line in lines
    ]


def consumer_drained(server: Any, *running: Writer) -> bool:
    """The writers' consumer has nothing pending nor unacknowledged (each of ``running`` must
    still run: a writer that died would leave it undrained for good)."""
    for w in running:
        assert w.running, f"writer {w.home.name} exited:\n{w.log_tail()}"

    async def check(nc: Any) -> bool:
        info = await nc.jetstream(timeout=5.0).consumer_info("AUDIT", "writers")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    return bool(server.run(check))
