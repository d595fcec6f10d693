"""Fixtures shared by every test folder: real servers on loopback (moto's S3), stopped in teardown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from _storefiles import is_manifest, read_data_file

from logbridge.collector.local import free_port

S3_KEY = "testing"
S3_SECRET = "testing"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    server: Any = None  # moto's ThreadedMotoServer

    def outage(self) -> None:
        """Stop answering (buckets and objects are kept: moto's state is process-wide)."""
        self.server.stop()

    def restore(self) -> None:
        from moto.server import ThreadedMotoServer

        port = int(self.endpoint_url.rsplit(":", 1)[1])
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this server (botocore reads these too)."""
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "key": S3_KEY, "secret": S3_SECRET}

    def read_store(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Key under ``bucket/prefix`` → stored lines, for every published object (as `read_local_store`)."""
        fs = self.filesystem()
        root = f"{self.bucket}/{prefix}".rstrip("/")
        files: dict[str, list[dict[str, Any]]] = {}
        for key in sorted(fs.find(root)):
            name = key.rsplit("/", 1)[-1]
            if is_manifest(name):
                continue
            rel = key[len(root) + 1 :]
            assert name.endswith((".ndjson", ".ndjson.gz", ".ndjson.zst")), (
                f"stray object in the store: {key}"
            )
            files[rel] = read_data_file(name, fs.cat_file(key))
        return files

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem (no listing cache) on this server."""
        import s3fs

        return s3fs.S3FileSystem(
            key=S3_KEY,
            secret=S3_SECRET,
            endpoint_url=self.endpoint_url,
            use_listings_cache=False,
            skip_instance_cache=True,
        )


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto in server mode on loopback with one empty bucket."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    # moto's werkzeug logs every request; that drowns the collector's own log in a failure report.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(f"http://127.0.0.1:{port}", "audit-store", server)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    try:
        # moto keeps its buckets in process-wide state, which outlives a server: start empty.
        httpx.post(f"{s3.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        # boto3's create_bucket, not s3fs mkdir: s3fs sends a location constraint moto refuses.
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        s3.server.stop()
