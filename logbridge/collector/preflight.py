"""Set-up checks before the collector touches anything: a bad path is one message, exit 2.

Without them a ``state_dir`` that is a file ends in a traceback, and a dead letter pointing at a
file is only found when the first invalid line is published — a minute later, as 503s to every
sender. Local folders (``state_dir`` and every ``file://`` URL) are created if missing and
probed with a real write; object stores are not probed here (a store that is down at start is a
503 until it returns, not a reason to refuse to start).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import fsspec

from ..errors import ConfigError
from .config import CollectorServerConfig


def check_setup(config: CollectorServerConfig, source: str) -> None:
    """Raise `ConfigError` naming the file, the key and the path that cannot be used."""
    check_local_folder(config.resolved_state_dir(), "state_dir", source)
    check_url(config.dead_letter, {}, "dead_letter", source)
    for i, dest in enumerate(config.destinations):
        check_url(dest.url, dict(dest.storage_options), f"destinations[{i}].url ({dest.name})", source)


def check_url(url: str, storage_options: dict[str, Any], key: str, source: str) -> None:
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{source}: {key}: cannot use {url!r}: {exc}", source=source) from None
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols:
        check_local_folder(Path(root), key, source)


def check_local_folder(path: Path, key: str, source: str) -> None:
    def fail(problem: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {path} {problem}", source=source)

    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                where = "is a file" if parent == path else f"cannot be a folder: {parent} is a file"
                raise fail(f"{where}; expected a folder")
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot be created: {exc.strerror}") from None
    probe = path / f".logbridge-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"probe")
    except OSError as exc:
        raise fail(f"is not writable: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
