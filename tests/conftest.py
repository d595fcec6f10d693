"""Shared by every test folder: a small HTTP collector on loopback, `LoopbackCollector`.

It speaks the part of DESIGN.md §4 that senders rely on (gzip NDJSON bodies,
``X-Logbridge-Source``/``X-Logbridge-Range`` with 200-duplicate and 409-high-water answers, each
source's ranges stored once as the real collector does) and can be told how to answer, so the
client's, the shipper's and the handler's decisions are checked over a real socket and requests
can be counted. The real collector is exercised by tests/integration/.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest


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
