"""A small HTTP collector on loopback for the shipper's unit tests.

It speaks the part of DESIGN.md §4 the shipper relies on (gzip bodies, ``X-Logbridge-Source`` /
``X-Logbridge-Range`` with 200-duplicate and 409-high-water answers) and can be told to answer
with other statuses, so the forwarder's decisions are checked over a real socket. The real
collector is exercised by tests/integration/test_shipper_*.py.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from logbridge.shipper.config import ShipperConfig, validate_dict


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes  # decompressed


@dataclass
class FakeCollector:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    high_water: dict[str, int] = field(default_factory=dict)
    # Each call pops the next scripted answer (status, headers, body); empty: normal behaviour.
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        """Every received line that is a JSON object (a line shipped as is may not be)."""
        out = []
        with self.lock:
            for line in self.lines:
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self.lock:
            self.requests.append(Request(headers, body))
            if self.script:
                return self.script.pop(0)
            source, rng = headers.get("x-logbridge-source"), headers.get("x-logbridge-range")
            if source and rng:
                start, end = (int(x) for x in rng.split("-"))
                high = self.high_water.get(source, 0)
                if end <= high:
                    return 200, {}, b'{"accepted":0,"invalid":0,"duplicate":true}'
                if start < high:
                    return 409, {}, orjson.dumps({"high_water": high})
                self.high_water[source] = end
            new = [line for line in body.split(b"\n") if line.strip()]
            self.lines.extend(new)
            return 200, {}, orjson.dumps({"accepted": len(new), "invalid": 0, "duplicate": False})


@pytest.fixture
def fake_collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm on, the client's delayed
        # ACK holds the body ~40 ms, which made every request take that long.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            status, headers, answer = fake.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/events"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def make_config(tmp_path: Path, fake_collector: FakeCollector) -> Callable[..., ShipperConfig]:
    """``make_config(inputs=[...], **keys)`` → a ShipperConfig pointed at the fake collector."""

    def make(**keys: Any) -> ShipperConfig:
        data: dict[str, Any] = {
            "node": "test-node",
            "collector": {"url": fake_collector.url, "retry": {"initial": "10ms", "max": "50ms"}},
            "inputs": [{"path": str(tmp_path / "logs" / "*.log")}],
            "state_dir": str(tmp_path / "state"),
            "batch": {"max_events": 100, "max_bytes": "64KiB", "linger": "20ms"},
            "partial_line_timeout": "200ms",
            "poll_interval": "20ms",
            "scan_interval": "100ms",
        }
        data.update(keys)
        return validate_dict(data)

    (tmp_path / "logs").mkdir()
    return make
