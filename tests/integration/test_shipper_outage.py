"""The collector away for 10 s mid-stream, and a collector that refuses batches with 400:
the shipper retries through the first and dead-letters the second, and keeps shipping."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _httpserver import LoopbackHTTPServer
from _polling import wait_for

from .shipperproc import assert_exactly_once, lines, stored_seqs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_collector_down_for_ten_seconds_mid_stream(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    active = logs / "audit.log"
    active.write_bytes(b"")
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.start()
    total, written = 24_000, 0
    down_at, down_for = 2.0, 10.0
    t0 = time.monotonic()
    was_down = False
    while written < total:
        with active.open("ab") as fh:
            fh.write(lines(range(written, written + 200)))
        written += 200
        elapsed = time.monotonic() - t0
        if not was_down and elapsed >= down_at:
            c.kill()  # SIGKILL: the batch in flight may be stored without an answer
            was_down = True
            killed_at = time.monotonic()
        collector_dead = c.process is not None and c.process.poll() is not None
        if was_down and collector_dead and time.monotonic() - killed_at >= down_for:
            assert s.lag(), "the outage must leave a backlog"
            c.start()
        time.sleep(0.1)
    if c.process is None or c.process.poll() is not None:
        time.sleep(max(0.0, down_for - (time.monotonic() - killed_at)))
        c.start()
    wait_for(lambda: s.lag() == 0, 60, "the shipper to catch up")
    s.stop()
    c.stop()
    assert "retry" in "".join(p.read_text() for p in s.logs)
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(total))


class RefusingProxy:
    """Forwards to the real collector, except that it answers 400 to the chosen requests."""

    def __init__(self, target: str, refuse: set[int]):
        self.target = target
        self.refuse = refuse
        self.count = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.count += 1
                    number = proxy.count
                if number in proxy.refuse:
                    status, answer = 400, b'{"error":"refused by the test proxy"}'
                else:
                    keep = {
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                    }
                    resp = httpx.post(proxy.target, content=body, headers=keep, timeout=30)
                    status, answer = resp.status_code, resp.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = LoopbackHTTPServer(Handler)
        self.url = f"http://127.0.0.1:{self.server.port}/events"

    def __enter__(self) -> RefusingProxy:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@pytest.fixture
def refusing_proxy(collector: Any) -> Iterator[tuple[Any, RefusingProxy]]:
    c = collector()
    with RefusingProxy(c.events_url, refuse={2, 5}) as proxy:
        yield c, proxy


def test_refused_batches_go_to_the_dead_letter_and_shipping_continues(
    tmp_path: Path, refusing_proxy: tuple[Any, RefusingProxy], shipper: Any, read_local_store: Any
) -> None:
    c, proxy = refusing_proxy
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "audit.log").write_bytes(lines(range(0, 8000)))
    s = shipper(proxy.url, [{"path": str(logs / "*.log")}], batch={"max_events": 1000, "linger": "50ms"})
    out = s.once(expect=1)  # lines in the dead letter: cron must hear of it
    assert "2000 lines refused by the collector" in out
    c.stop()
    stored = stored_seqs(read_local_store, c.store)
    dead = s.state_dir / "dead-letter"
    refused: list[int] = []
    for data in sorted(dead.glob("*.ndjson")):
        refused += [orjson.loads(x)["message"]["seq"] for x in data.read_bytes().splitlines()]
        meta = orjson.loads(data.with_suffix(".json").read_bytes())
        assert meta["status"] == 400 and "refused by the test proxy" in meta["response"]
    assert len(refused) == 2000
    for seq in refused:
        stored[seq] += 1
    assert_exactly_once(stored, range(8000))


def _open_paths(pid: int) -> set[str]:
    """The files a process holds open (``/proc/<pid>/fd``), deleted ones named with " (deleted)"."""
    paths = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else ():
        try:
            paths.add(os.readlink(fd))
        except OSError:
            continue  # closed meanwhile
    return paths


def test_a_file_born_and_deleted_during_a_long_backoff_is_shipped(
    tmp_path: Path, collector: Any, shipper: Any, read_local_store: Any
) -> None:
    """While a batch waits out a long backoff (the collector is down), a job log appears and is
    deleted again. The shipper must have opened it meanwhile (an open descriptor keeps a deleted
    file readable), so once the collector is back every one of its lines is stored. It used to
    discover files only between two sleeps of up to ``retry.max``: such a file was never opened."""
    c = collector()
    logs = tmp_path / "logs"
    logs.mkdir()
    main = logs / "audit.log"
    main.write_bytes(lines(range(0, 100)))
    s = shipper(c.events_url, [{"path": str(logs / "*.log")}])
    s.config["collector"]["retry"] = {"initial": "8s", "max": "8s"}
    s.start()
    wait_for(lambda: s.lag() == 0, 30, "the first lines shipped")
    c.kill()
    with main.open("ab") as fh:
        fh.write(lines(range(100, 200)))
    wait_for(lambda: "retry 1 of range" in "".join(p.read_text() for p in s.logs), 20, "a failed send")
    job = logs / "job-1.log"
    job.write_bytes(lines(range(200, 700)))
    assert s.process is not None
    # Well inside the 8 s backoff: the shipper opens the new file while it waits.
    wait_for(lambda: str(job) in _open_paths(s.process.pid), 4, "the shipper to open the job log")
    job.unlink()
    c.start()
    wait_for(lambda: s.lag() == 0, 60, "the shipper to catch up")
    s.stop()
    c.stop()
    assert_exactly_once(stored_seqs(read_local_store, c.store), range(700))
