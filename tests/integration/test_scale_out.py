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

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import NatsServer

from logbridge.collector.local import free_port

from .collectorproc import nats_collector
from .nginxproc import Nginx, require_nginx
from .shipperproc import ShipperProc, assert_exactly_once, audit_line, shipper_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

pytest.importorskip("nats")

SHIPPERS = 3
LINES_PER_SHIPPER = 6_000
CHUNK = 500  # lines appended at a time, so that the kill lands mid-stream


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
    if balancing == "nginx":
        require_nginx()
    a, b = nats_collector(tmp_path / "a", nats_server.url), nats_collector(tmp_path / "b", nats_server.url)
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
