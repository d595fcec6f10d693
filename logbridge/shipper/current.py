"""Which collector of ``collector.urls`` a shipper sends to, for ``ship --status``.

The daemon keeps it in memory (`Collectors.current`) and in a metric; ``--status`` runs in
another process, so the shipper also writes ``<state_dir>/collector.json`` at start and after
each switch (replaced atomically, not fsynced: a stale answer after a crash is harmless, the
next start rewrites it). Only with several URLs: with one there is nothing to tell.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from ..fileio import write_atomic

log = logging.getLogger("logbridge.shipper")

FILE_NAME = "collector.json"


@dataclass(frozen=True, slots=True)
class CurrentCollector:
    url: str  # as logs show it (no user:password)
    index: int  # its place in collector.urls, 0 = the preferred one
    since: float  # wall clock of the switch to it (or of the start)
    switches: int  # by this process
    pid: int  # the shipper that wrote it
    left: str | None = None  # the collector it switched from, and what that one answered
    why: str | None = None


def save(state_dir: str | os.PathLike[str], current: CurrentCollector) -> None:
    try:
        write_atomic(Path(state_dir) / FILE_NAME, orjson.dumps(asdict(current)), durable=False)
    except OSError as exc:  # a status file must never stop shipping
        log.warning("cannot record the current collector in %s: %s", state_dir, exc)


def load(state_dir: str | os.PathLike[str]) -> CurrentCollector | None:
    try:
        return CurrentCollector(**orjson.loads((Path(state_dir) / FILE_NAME).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(state_dir: str | os.PathLike[str], urls: tuple[str, ...]) -> str | None:
    """One line for ``ship --status``: the collector in use, since when, and why; None with a
    single URL."""
    if len(urls) < 2:
        return None
    current = load(state_dir)
    if current is None:
        return f"collector: none recorded yet (collector.urls has {len(urls)}; the first is preferred)"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(current.since))
    text = f"collector: {current.url} ({current.index + 1} of {len(urls)} in collector.urls) since {stamp}"
    if current.left is not None:
        text += f", after {current.left}" + (f" {current.why}" if current.why else "")
    text += f"; {current.switches} switches"
    if not _alive(current.pid):
        text += f" (shipper pid {current.pid} not running: its last choice)"
    return text
