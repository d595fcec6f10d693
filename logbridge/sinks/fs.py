"""The fsspec boundary: URL → file system (naming the extra to install), store errors → ours.

Everything fsspec or a store SDK raises is translated here, as httpx's ``map_exceptions``
translates its transports' errors, so the collector only ever catches the `logbridge.errors` tree::

    FileNotFoundError (a missing bucket, container or folder)   → DestinationNotFound
    PermissionError (refused credentials or ACL)                 → DestinationDenied
    any other error of the store (OSError, an SDK's own)         → DestinationError
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec

from ..errors import (
    ConfigError,
    DestinationDenied,
    DestinationError,
    DestinationNotFound,
    LogbridgeError,
    MissingExtra,
)

# URL protocol → (the module fsspec imports for it, the logbridge extra that installs it).
# Kept here rather than read from fsspec's registry: the extra's name is ours.
_EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "adl": ("adlfs", "azure"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
}


def require_module(module: str, extra: str, what: str) -> None:
    """Raise `MissingExtra` naming ``pip install 'logbridge[extra]'`` when ``module`` is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{what} needs the Python package {module!r}, which is not installed: "
            f"pip install 'logbridge[{extra}]'",
            extra=extra,
        ) from None


def protocol_of(url: str) -> str:
    protocol, _ = fsspec.core.split_protocol(url)
    return protocol or "file"


def open_filesystem(url: str, storage_options: dict[str, Any], key: str) -> tuple[Any, str]:
    """``(filesystem, root path)`` for ``url``. Raises `ConfigError` (or `MissingExtra`) naming ``key``."""
    needed = _EXTRAS.get(protocol_of(url))
    if needed is not None:
        require_module(needed[0], needed[1], f"{key}: {url!r}")
    try:
        return fsspec.core.url_to_fs(url, **storage_options)  # type: ignore[no-any-return]
    except ImportError as exc:  # a protocol we have no extra for
        raise ConfigError(f"{key}: cannot use {url!r}: {exc}") from None
    except (ValueError, TypeError) as exc:  # an unknown protocol, a bad storage option
        raise ConfigError(f"{key}: cannot use {url!r}: {exc}") from None


def is_local(fs: Any) -> bool:
    proto = fs.protocol
    return "file" in ((proto,) if isinstance(proto, str) else tuple(proto))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def map_storage_errors(destination: str, action: str) -> Iterator[None]:
    """Translate whatever the store raises inside the block into a `DestinationError`."""
    try:
        yield
    except LogbridgeError:
        raise
    except FileNotFoundError as exc:
        raise DestinationNotFound(f"{destination}: {action}: {describe(exc)}") from exc
    except PermissionError as exc:
        raise DestinationDenied(f"{destination}: {action}: {describe(exc)}") from exc
    except Exception as exc:  # an SDK's own errors (botocore, aiohttp, azure-core) included
        raise DestinationError(f"{destination}: {action}: {describe(exc)}") from exc
