"""A collector on this machine: a free loopback port and a minimal config rooted in one folder.

Shared by `logbridge demo`, the benchmarks and the tests, which all start real collectors.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port nobody listens on right now on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_config(
    home: Path,
    port: int,
    *,
    durability: str = "flush",
    max_age: str = "5m",
    state_dir: Path | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The minimal collector config of DESIGN.md §6 with its state, store and dead letter in
    ``home``; top-level keys can be overridden."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "durability": durability,
        "state_dir": str(state_dir or home / "state"),
        "dead_letter": f"file://{home / 'dead-letter'}",
        "destinations": [
            {
                "name": "store",
                "type": "filesystem",
                "url": f"file://{home / 'store'}",
                "topics": "all",
                "routing_keys": "all",
                "path": "{topic}/{routing_key}/%Y/%m/%d/%H",
                "roll": {"max_bytes": "64MiB", "max_age": max_age},
            }
        ],
    }
    config.update(overrides)
    return config
