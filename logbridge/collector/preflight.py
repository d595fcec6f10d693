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

from ..errors import ConfigError, MissingExtra
from ..sinks.base import check_available
from ..sinks.config import FilesystemDestination, NatsDestination
from ..sinks.fs import is_local, open_filesystem
from .config import CollectorServerConfig


def check_setup(config: CollectorServerConfig, source: str) -> None:
    """Raise `ConfigError` naming the file, the key and the path that cannot be used (a
    `MissingExtra` naming what to install when a destination needs an optional dependency)."""
    check_local_folder(config.resolved_state_dir(), "state_dir", source)
    check_url(config.dead_letter, {}, "dead_letter", source)
    for i, dest in enumerate(config.destinations):
        key = f"destinations[{i}]"
        try:
            check_available(dest, key)
        except MissingExtra as exc:
            raise MissingExtra(f"{source}: {exc}", extra=exc.extra, source=source) from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", source=source) from None
        if isinstance(dest, FilesystemDestination):
            check_url(dest.url, dict(dest.storage_options), f"{key}.url ({dest.name})", source)


def check_publishers(config: CollectorServerConfig, source: str) -> None:
    """Connect to every ``nats`` destination once and create or check its stream, before the
    collector serves: an unreachable server, refused credentials, JetStream off or a stream
    whose settings conflict is one `ConfigError` line naming the destination (exit 2). Later
    outages are not start-up errors: the collector answers 503 until NATS is back."""
    for i, dest in enumerate(config.destinations):
        if isinstance(dest, NatsDestination):
            from ..sinks.nats import check_destination

            try:
                check_destination(dest, f"destinations[{i}] ({dest.name})")
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}", source=source) from None


def check_url(url: str, storage_options: dict[str, Any], key: str, source: str) -> None:
    try:
        fs, root = open_filesystem(url, storage_options, key)
    except MissingExtra as exc:
        raise MissingExtra(f"{source}: {exc}", extra=exc.extra, source=source) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", source=source) from None
    if is_local(fs):
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
