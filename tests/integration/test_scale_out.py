"""Several collectors on one NATS JetStream stream (issue 10's drills), as real processes.

Two ``logbridge collect`` processes with the DESIGN §6 ``nats`` destination share one real
nats-server; three real shippers tail their own files. The collectors are reached either through
nginx (Debian's, as the load balancer of the README's example) or through the shippers' own
``collector.urls`` failover. Midway, nats-server is paused (SIGSTOP) so that requests wait for
their publish acks, collector A is SIGKILLed while they wait, and nats-server resumes: the
shippers' retries of the same ranges reach collector B, and JetStream drops the messages A had
already published (same ``Nats-Msg-Id``). Every event is then in the stream exactly once.

(Writers draining the stream into the store are tested in tests/integration/test_consume*.py.)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import NatsServer

from logbridge.collector.local import free_port

from .collectorproc import Collector, collector_config
from .shipperproc import ShipperProc, assert_exactly_once, audit_line, shipper_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

pytest.importorskip("nats")

SHIPPERS = 3
LINES_PER_SHIPPER = 6_000
CHUNK = 500  # lines appended at a time, so that the kill lands mid-stream

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    access_log off;
    client_max_body_size 64m;
    upstream collectors {{
        server 127.0.0.1:{port_a} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{port_b} max_fails=1 fail_timeout=2s;
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://collectors;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # A collector that refused the connection or answered 502/503 before reading the
            # request: the next one takes it. A request already sent is not repeated by nginx
            # (POST): the sender's retry is, with the same source and range.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, run: Path, port: int, upstreams: tuple[int, int]):
        self.run = run
        self.port = port
        run.mkdir(parents=True, exist_ok=True)
        self.conf = run / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(run=run, port=port, port_a=upstreams[0], port_b=upstreams[1]))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [binary, "-p", str(self.run), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.run / "stderr.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {(self.run / 'stderr.log').read_text()}")
            assert time.monotonic() < deadline, "nginx did not listen within 10 s"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _collector(tmp_path: Path, name: str, server: NatsServer) -> Collector:
    home = tmp_path / name
    home.mkdir()
    config = collector_config(home, free_port())
    config["destinations"] = [{"name": "bus", "type": "nats", "servers": [server.url], "stream": "AUDIT"}]
    return Collector(home, config, env=dict(os.environ))


def _stream_seqs(server: NatsServer) -> Counter[int]:
    return Counter(
        orjson.loads(line)["clientEvent"]["seq"] for m in server.messages("AUDIT") for line in m.lines
    )


def _stream_events(server: NatsServer) -> int:
    """Events in the stream so far; -1 while the server cannot say (just resumed from SIGSTOP,
    JetStream may answer a read with a 400 for a moment)."""
    try:
        return sum(int(m.headers.get("Logbridge-Events", 0)) for m in server.messages("AUDIT"))
    except Exception as exc:  # nats-py raises its own classes, per status
        if type(exc).__module__.startswith("nats"):
            return -1
        raise


@pytest.mark.parametrize("balancing", ["nginx", "urls"])
def test_a_collector_killed_while_it_waits_for_publish_acks_loses_and_doubles_nothing(
    tmp_path: Path, nats_server: NatsServer, balancing: str
) -> None:
    if balancing == "nginx" and shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is not installed (.ci/run installs Debian's nginx-light)")
    a, b = _collector(tmp_path, "a", nats_server), _collector(tmp_path, "b", nats_server)
    a.start()
    b.start()
    nginx = None
    if balancing == "nginx":
        nginx = Nginx(tmp_path / "nginx", free_port(), (a.port, b.port))
        nginx.start()
        collector: dict[str, Any] = {"url": f"http://127.0.0.1:{nginx.port}/events"}
    else:
        collector = {"urls": [a.events_url, b.events_url]}
    shippers = []
    logs = []
    try:
        for n in range(SHIPPERS):
            home = tmp_path / f"shipper-{n}"
            (home / "logs").mkdir(parents=True)
            config = shipper_config(
                home, "http://unused.invalid/events", [{"path": str(home / "logs" / "*.log")}]
            )
            config["collector"] = {**collector, "retry": {"initial": "50ms", "max": "500ms"}}
            config["batch"] = {"max_events": 200, "max_bytes": "1MiB", "linger": "20ms"}
            shipper = ShipperProc(home, config)
            shipper.start()
            shippers.append(shipper)
            logs.append(home / "logs" / "audit.log")
        expected = range(SHIPPERS * LINES_PER_SHIPPER)

        def append(chunk: int) -> None:
            for n, path in enumerate(logs):
                base = n * LINES_PER_SHIPPER + chunk * CHUNK
                with path.open("ab") as f:
                    f.write(b"".join(audit_line(s) for s in range(base, base + CHUNK)))

        chunks = LINES_PER_SHIPPER // CHUNK
        for chunk in range(chunks // 2):
            append(chunk)
        # Midway: requests in flight wait for their acks (nats-server stopped), A dies meanwhile.
        _wait(lambda: _stream_events(nats_server) >= SHIPPERS * CHUNK, 60, "first events in the stream")
        nats_server.pause()
        append(chunks // 2)
        time.sleep(1.0)  # lets the shippers' requests reach the collectors' publish (not a correctness wait)
        a.kill()
        nats_server.resume()
        for chunk in range(chunks // 2 + 1, chunks):
            append(chunk)
        _wait(lambda: _stream_events(nats_server) >= len(expected), 120, "every event in the stream")
        # Anything still on its way (a retry of a range already published) would show as a duplicate.
        for shipper in shippers:
            shipper.stop()
        assert_exactly_once(_stream_seqs(nats_server), expected)
    finally:
        for shipper in shippers:
            shipper.stop()
        if nginx is not None:
            nginx.stop()
        for c in (a, b):
            if c.process is not None and c.process.poll() is None:
                c.stop()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
