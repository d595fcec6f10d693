"""What is particular to Azure Blob and GCS destinations, beyond the shared contract: their
``storage_options``, their SDKs' errors mapped to ours, and gcsfs's bucket-type probe kept away
from endpoints that are not Google's."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import fsspec
import pytest
from _emulators import AZURITE_KEY

from logbridge.errors import ConfigError, DestinationDenied, DestinationError, DestinationNotFound
from logbridge.sinks.filesystem import FilesystemSink
from logbridge.sinks.fs import map_storage_errors, open_filesystem
from logbridge.sinks.partition import PartitionPaths
from logbridge.sinks.writer import PUBLISH_CONCURRENCY

LATER = time.monotonic() + 3600
# adlfs takes credentials from these when storage_options has none
AZURE_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY")


def publish_one(url: str, storage_options: dict[str, Any], staging: Path) -> FilesystemSink:
    sink = FilesystemSink(
        "dest", url, staging, partitions=PartitionPaths("{topic}"), storage_options=storage_options
    )
    sink.acknowledge([sink.append("generic", b'{"seq":1}\n')])
    sink.roll(LATER)
    sink.publish()
    return sink


# ---------------------------------------------------------------------------------------- Azure


def test_azure_refusing_the_key_is_denied_naming_what_to_check(az_bucket: Any, tmp_path: Path) -> None:
    wrong_key = AZURITE_KEY[:10] + ("A" if AZURITE_KEY[10] != "A" else "B") + AZURITE_KEY[11:]
    options = {"connection_string": az_bucket.emulator.connection_string.replace(AZURITE_KEY, wrong_key)}
    sink = publish_one(az_bucket.url("audit"), options, tmp_path / "staging")
    assert sink.blocked and sink.pending == 1
    problem = sink.problem()
    assert problem is not None and "the store refused the credentials" in problem, problem
    assert "check the destination's storage_options" in problem
    assert az_bucket.read_store("audit") == {}


def test_azure_account_name_and_key_are_storage_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    fs, root = open_filesystem(
        "az://audit/store", {"account_name": "auditlogs", "account_key": AZURITE_KEY}, "destinations[0]"
    )
    assert (fs.account_name, root) == ("auditlogs", "audit/store")
    assert fs.account_url == "https://auditlogs.blob.core.windows.net"


def test_azure_without_credentials_is_a_config_error_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in AZURE_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        open_filesystem("az://audit/store", {}, "destinations[0] (blob)")
    message = str(info.value)
    assert message.startswith("destinations[0] (blob): cannot use 'az://audit/store'")
    assert "set storage_options.connection_string, or account_name with account_key" in message


# ------------------------------------------------------------------------------------------ GCS


def test_gcs_off_google_skips_the_bucket_type_probe(gs_bucket: Any, tmp_path: Path) -> None:
    """Recent gcsfs asks a gRPC API for the bucket's type before most calls, at the configured
    endpoint; an emulator cannot answer and each call waited a minute. The collector's upload
    must take the time of an upload."""
    fs, _ = open_filesystem(gs_bucket.url("audit"), gs_bucket.storage_options(), "test")
    import gcsfs.core

    assert type(fs) is gcsfs.core.GCSFileSystem
    started = time.monotonic()
    sink = publish_one(gs_bucket.url("audit"), gs_bucket.storage_options(), tmp_path / "staging")
    assert not sink.blocked and len(gs_bucket.read_store("audit")) == 1
    assert time.monotonic() - started < 20, "the upload waited for the bucket-type probe"


@pytest.mark.parametrize("endpoint", [None, "https://storage.googleapis.com"])
def test_gcs_on_google_keeps_gcsfs_default_class(endpoint: str | None) -> None:
    options: dict[str, Any] = {"token": "anon"}
    if endpoint:
        options["endpoint_url"] = endpoint
    fs, root = open_filesystem("gs://audit-store/audit", options, "test")
    assert type(fs) is fsspec.get_filesystem_class("gs") and root == "audit-store/audit"


def test_gcs_refusals_are_denied() -> None:
    """gcsfs raises a plain OSError for a 403 and its HttpError for a 401 (no emulator checks
    credentials, so these are gcsfs's own exceptions as it raises them)."""
    from gcsfs.retry import HttpError

    for error in (
        OSError("Forbidden: https://storage.googleapis.com/upload/storage/v1/b/audit/o\nno access"),
        HttpError({"code": 401, "message": "Invalid Credentials"}),
    ):
        denied = pytest.raises(DestinationDenied, match="the store refused the credentials")
        with denied, map_storage_errors("dest", "cannot publish x"):
            raise error
    with pytest.raises(DestinationNotFound), map_storage_errors("dest", "cannot publish x"):
        raise HttpError({"code": 404, "message": "No such bucket"})
    with pytest.raises(DestinationError) as info, map_storage_errors("dest", "cannot publish x"):
        raise HttpError({"code": 503, "message": "Service Unavailable"})
    assert type(info.value) is DestinationError


# ----------------------------------------------------------------------------------- publishing


def test_a_round_against_a_missing_bucket_stops_at_its_first_failures(
    object_store: Any, tmp_path: Path
) -> None:
    """Twenty files queued, the bucket gone: the round ends once the uploads under way have
    failed (at most `PUBLISH_CONCURRENCY` attempts, not twenty — against a store that is down,
    each attempt costs the SDK's whole retry schedule). All twenty go once the bucket is back."""
    sink = FilesystemSink(
        "dest",
        object_store.url("audit"),
        tmp_path / "staging",
        partitions=PartitionPaths("{topic}"),
        storage_options=object_store.storage_options(),
    )
    sink.acknowledge([sink.append(f"topic-{n}", b'{"seq":%d}\n' % n) for n in range(20)])
    sink.roll(LATER)
    object_store.delete()
    assert sink.publish() == 0
    assert 1 <= sink.writer.stats.failures <= PUBLISH_CONCURRENCY
    assert sink.pending == 20 and sink.blocked
    object_store.create()
    assert sink.publish() == 20
    assert not sink.blocked and len(object_store.read_store("audit")) == 20
