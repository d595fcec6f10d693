"""The fsspec boundary: URL → file system (naming the extra to install), store errors → ours.

Everything fsspec or a store SDK raises is translated here, as httpx's ``map_exceptions``
translates its transports' errors, so the collector only ever catches the `logbridge.errors` tree::

    FileNotFoundError (a missing bucket, container or folder)   → DestinationNotFound
      (azure-core's 404s, which adlfs lets through on uploads, too)
    PermissionError (refused credentials or ACL)                 → DestinationDenied
      (azure-core's and gcsfs's 401/403s too: neither is a PermissionError)
    any other error of the store (OSError, an SDK's own)         → DestinationError

The SDKs' exception types are recognised by their status code attribute, never imported: a
collector without ``[azure]`` or ``[gcs]`` must not need them to map an error.
"""

from __future__ import annotations

import importlib
import os
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


# Object stores: no folders to make before an upload (a "folder" is a key prefix). Asking for one
# costs round trips per upload, and s3fs's makedirs *creates the bucket* when it is missing (and
# adlfs's mkdir the container): a typo in the URL would publish into a new bucket nobody reads,
# instead of failing with DestinationNotFound.
OBJECT_STORES = frozenset(protocol for protocol in _EXTRAS)


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


# What a user most likely has to set when a store's file system cannot be built.
_HINTS: dict[str, str] = {
    "azure": "set storage_options.connection_string, or account_name with account_key (or sas_token)",
    "gcs": "set storage_options.token (a service account JSON file, 'google_default' or 'anon') "
    "and, for an emulator, endpoint_url",
    "s3": "set storage_options.key and secret (or the AWS_* environment variables) and, for a "
    "non-AWS store, endpoint_url",
}


def open_filesystem(url: str, storage_options: dict[str, Any], key: str) -> tuple[Any, str]:
    """``(filesystem, root path)`` for ``url``. Raises `ConfigError` (or `MissingExtra`) naming ``key``."""
    protocol = protocol_of(url)
    needed = _EXTRAS.get(protocol)
    if needed is not None:
        require_module(needed[0], needed[1], f"{key}: {url!r}")
    try:
        if needed is not None and needed[1] == "gcs" and _gcs_endpoint_is_not_google(storage_options):
            return _plain_gcs_filesystem(url, storage_options)
        return fsspec.core.url_to_fs(url, **storage_options)  # type: ignore[no-any-return]
    except ImportError as exc:  # a protocol we have no extra for
        raise ConfigError(f"{key}: cannot use {url!r}: {exc}") from None
    except (ValueError, TypeError) as exc:  # an unknown protocol, a bad storage option
        hint = _HINTS.get(needed[1]) if needed is not None else None
        raise ConfigError(f"{key}: cannot use {url!r}: {exc}" + (f" ({hint})" if hint else "")) from None


def _gcs_endpoint_is_not_google(storage_options: dict[str, Any]) -> bool:
    endpoint = storage_options.get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST") or ""
    if endpoint in ("", "default"):
        return False
    host = str(endpoint).split("://")[-1].split("/")[0].rsplit(":", 1)[0]
    return not (host == "googleapis.com" or host.endswith(".googleapis.com"))


def _plain_gcs_filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """gcsfs's JSON-API file system, without the bucket-type probe of its default class.

    Since 2026 ``gcsfs.GCSFileSystem`` is a subclass that asks, before most calls on a bucket, the
    gRPC storage-control API for the bucket's type (zonal, hierarchical) — at the configured
    endpoint. Only Google's endpoints speak it: anywhere else (an emulator, a gateway) the probe
    waits out its one-minute retry deadline, and since an unknown answer is not cached, every
    upload does. Zonal buckets exist only behind Google's endpoints, so nothing is lost here."""
    from gcsfs.core import GCSFileSystem  # the plain class (the probing one is its subclass)

    options = dict(GCSFileSystem._get_kwargs_from_urls(url))
    options.update(storage_options)
    fs = GCSFileSystem(**options)
    return fs, fs._strip_protocol(url)


def is_local(fs: Any) -> bool:
    return "file" in _protocols(fs)


def is_object_store(fs: Any) -> bool:
    """A store whose folders are only key prefixes (see `OBJECT_STORES`)."""
    return not OBJECT_STORES.isdisjoint(_protocols(fs))


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def map_storage_errors(destination: str, action: str) -> Iterator[None]:
    """Translate whatever the store raises inside the block into a `DestinationError`."""
    try:
        yield
    except LogbridgeError:
        raise
    except Exception as exc:  # an SDK's own errors (botocore, aiohttp, azure-core) included
        kind = _kind_of(exc)
        if kind is DestinationNotFound:
            raise DestinationNotFound(
                f"{destination}: {action}: {describe(exc)} (is the bucket, container or folder there? "
                "logbridge creates no bucket or container: create it, or fix the destination's url)"
            ) from exc
        if kind is DestinationDenied:
            raise DestinationDenied(
                f"{destination}: {action}: {describe(exc)} (the store refused the credentials: "
                "check the destination's storage_options and the account's permissions)"
            ) from exc
        raise DestinationError(f"{destination}: {action}: {describe(exc)}") from exc


def _kind_of(exc: BaseException) -> type[DestinationError]:
    """Which of our errors a store's exception is, from its type or its HTTP status."""
    if isinstance(exc, FileNotFoundError):
        return DestinationNotFound
    if isinstance(exc, PermissionError):
        return DestinationDenied
    # azure-core's HttpResponseError has ``status_code``; gcsfs's HttpError an int ``code``.
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "code", None)
    if status == 404:
        return DestinationNotFound
    if status in (401, 403):
        return DestinationDenied
    # gcsfs turns a 403 into a plain OSError("Forbidden: <url>\n<message>").
    if type(exc) is OSError and str(exc).startswith("Forbidden"):
        return DestinationDenied
    return DestinationError
