"""Shared by every test folder: a small HTTP collector on loopback (`LoopbackCollector`) and
moto's S3 server (`S3Server`), each stopped in teardown.

The loopback collector speaks the part of DESIGN.md §4 that senders rely on (gzip NDJSON bodies,
``X-Logbridge-Source``/``X-Logbridge-Range`` with 200-duplicate and 409-high-water answers, each
source's ranges stored once as the real collector does) and can be told how to answer, so the
client's, the shipper's and the handler's decisions are checked over a real socket and requests
can be counted. The real collector is exercised by tests/integration/.
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest
from _storefiles import is_manifest, read_data_file

from logbridge.collector.local import free_port


@dataclass
class Request:
    headers: dict[str, str]  # lower-case names
    body: bytes  # decompressed

    @property
    def lines(self) -> list[bytes]:
        return self.body.splitlines(keepends=True)


Answer = tuple[int, dict[str, str], bytes]


@dataclass
class LoopbackCollector:
    """Records every POST; stores each source's byte ranges once."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)  # stored non-blank lines, without newline
    high_water: dict[str, int] = field(default_factory=dict)
    # Each request takes the next scripted answer (status, headers, body), and nothing is stored.
    script: list[Answer] = field(default_factory=list)
    # When set (and the script is empty), every request gets it and nothing is stored.
    status: int | None = None
    # Bodies (decompressed) larger than this get a 413, as with the collector's max_body_bytes.
    max_body_bytes: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self.lock:
            self.requests.append(Request(headers, body))
            if self.script:
                return self.script.pop(0)
            if self.status is not None:
                return self.status, {}, b'{"error":"told to refuse"}'
            if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
                return 413, {}, b'{"error":"body too large"}'
            source, byte_range = headers.get("x-logbridge-source"), headers.get("x-logbridge-range")
            if source and byte_range:
                start, end = (int(x) for x in byte_range.split("-"))
                high = self.high_water.get(source, 0)
                if end <= high:
                    return 200, {}, b'{"accepted":0,"invalid":0,"duplicate":true}'
                if start < high:
                    return 409, {}, orjson.dumps({"high_water": high})
                self.high_water[source] = end
            new = [line for line in body.split(b"\n") if line.strip()]
            self.lines.extend(new)
            return 200, {}, orjson.dumps({"accepted": len(new), "invalid": 0, "duplicate": False})

    def events(self) -> list[dict[str, Any]]:
        """Every stored line that is a JSON object (a line shipped as is may not be)."""
        out = []
        with self.lock:
            for line in self.lines:
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def request_count(self) -> int:
        with self.lock:
            return len(self.requests)


@pytest.fixture
def loopback_collector() -> Iterator[LoopbackCollector]:
    collector = LoopbackCollector()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm on, the client's delayed
        # ACK holds the body ~40 ms, which made every request take that long.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, answer = collector.handle(headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    collector.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield collector
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


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
