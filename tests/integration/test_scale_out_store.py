"""Issue 10's headline: shippers → nginx → 2 collectors → NATS JetStream → 2 writers → the store,
every event in the *store* exactly once, counted by its number after reading every stored file.

- 300k events from 3 real shippers through nginx to two collectors with a ``nats`` destination,
  drained by two ``logbridge consume`` writers, with collector A SIGKILLed mid-stream (the
  shippers' retries of the same ranges go through nginx to B, JetStream drops what A had
  published: same ``Nats-Msg-Id``) and restarted, and writer 1 SIGKILLed mid-stream and
  restarted (its claims and journal keep the other writer from doubling its messages).
  ``LOGBRIDGE_SCALE_OUT_EVENTS`` shrinks it for local repeat loops; CI runs 300k.
- A full stream: a small ``max_bytes`` fills while no writer runs; the collectors answer 503
  (counted in their metrics), the shippers keep retrying; writers start, store and purge what
  they stored; every event ends in the store exactly once.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import NatsServer

from logbridge.collector.local import free_port

from .collectorproc import Collector, nats_collector
from .nginxproc import Nginx, require_nginx
from .shipperproc import ShipperProc, assert_exactly_once, audit_line, shipper_config
from .writerproc import Writer, consumer_drained, seqs_in, writer_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

pytest.importorskip("nats")

SHIPPERS = 3
TOTAL = int(os.environ.get("LOGBRIDGE_SCALE_OUT_EVENTS", "300000")) // SHIPPERS * SHIPPERS


class Rig:
    """The processes of one test, each stopped (or killed) at the end whatever happened."""

    def __init__(self, tmp_path: Path, server: NatsServer):
        self.tmp_path = tmp_path
        self.server = server
        self.collectors: list[Collector] = []
        self.writers: list[Writer] = []
        self.shippers: list[ShipperProc] = []
        self.nginx: Nginx | None = None
        self.store = tmp_path / "store"

    def collectors_up(self, *names: str, **destination: Any) -> list[Collector]:
        """Collectors started one after the other: the first creates the stream."""
        made = [nats_collector(self.tmp_path / name, self.server.url, **destination) for name in names]
        self.collectors.extend(made)
        for c in made:
            c.start()
        return made

    def writers_up(self, *names: str) -> list[Writer]:
        made = [
            Writer(self.tmp_path / name, writer_config(self.tmp_path / name, self.server.url, self.store))
            for name in names
        ]
        self.writers.extend(made)
        for w in made:
            w.start()
        return made

    def shippers_up(self, collectors: list[dict[str, Any]]) -> list[Path]:
        """Shipper ``n`` tailing its own ``audit.log`` and sending to ``collectors[n]``, started
        together (a Python start-up takes seconds on a loaded box); their log files."""
        logs = []
        for n, collector in enumerate(collectors):
            home = self.tmp_path / f"shipper-{n}"
            (home / "logs").mkdir(parents=True)
            config = shipper_config(
                home, "http://unused.invalid/events", [{"path": str(home / "logs" / "*.log")}]
            )
            config["collector"] = {**collector, "retry": {"initial": "50ms", "max": "500ms"}}
            config["batch"] = {"max_events": 2000, "max_bytes": "1MiB", "linger": "20ms"}
            self.shippers.append(ShipperProc(home, config))
            logs.append(home / "logs" / "audit.log")
        with ThreadPoolExecutor(len(self.shippers)) as pool:
            list(pool.map(ShipperProc.start, self.shippers))
        return logs

    def acked(self) -> int:
        """The writers' consumer's ack floor (stream sequence): how far the store has come."""

        async def floor(nc: Any) -> int:
            info = await nc.jetstream(timeout=5.0).consumer_info("AUDIT", "writers")
            return int(info.ack_floor.stream_seq) if info.ack_floor else 0

        return int(self.server.run(floor) or 0)

    def finish(self, wait_for: Callable[..., Any], timeout: float) -> Counter[int]:
        """Every shipper caught up, the consumer drained, then clean stops (a writer publishes
        what it staged on SIGTERM): the store's events by number."""
        for shipper in self.shippers:
            shipper.wait_caught_up(timeout)
        wait_for(
            lambda: consumer_drained(self.server, *self.writers), timeout, "the writers to drain the stream"
        )
        for process in (*self.shippers, *self.writers):
            process.stop()
        return Counter(seqs_in(self.store))

    def close(self) -> None:
        for shipper in self.shippers:
            if shipper.process is not None and shipper.process.poll() is None:
                shipper.kill()
        for w in self.writers:
            if w.running:
                w.kill()
        if self.nginx is not None:
            self.nginx.stop()
        for c in self.collectors:
            if c.process is not None and c.process.poll() is None:
                c.kill()


@pytest.fixture
def rig(tmp_path: Path, nats_server: NatsServer) -> Iterator[Rig]:
    r = Rig(tmp_path, nats_server)
    yield r
    r.close()


def append(path: Path, seqs: range) -> None:
    with path.open("ab") as f:
        f.write(b"".join(audit_line(s, pad=20) for s in seqs))


def test_300k_events_through_nginx_two_collectors_and_two_writers_are_stored_exactly_once(
    rig: Rig, wait_for: Any
) -> None:
    require_nginx()
    a, b = rig.collectors_up("a", "b")
    rig.nginx = Nginx(rig.tmp_path / "nginx", free_port(), (a.port, b.port))
    rig.nginx.start()
    w1, _ = rig.writers_up("w1", "w2")
    per = TOTAL // SHIPPERS
    logs = rig.shippers_up([{"url": f"http://127.0.0.1:{rig.nginx.port}/events"}] * SHIPPERS)
    fifths = [range(k * per // 5, (k + 1) * per // 5) for k in range(5)]

    def write(part: int) -> None:
        for n, path in enumerate(logs):
            append(path, range(n * per + fifths[part].start, n * per + fifths[part].stop))

    write(0)
    write(1)
    # Collector A dies with requests in flight (the writers have stored some already); nginx
    # answers those 502 and the shippers send the same ranges again, through B.
    wait_for(lambda: rig.acked() > 0, 60, "the first messages stored")
    a.kill()
    write(2)
    # Writer 1 dies mid-stream, holding claims and staged lines; it comes back and settles them.
    floor = rig.acked()
    wait_for(lambda: rig.acked() > floor, 60, "the writers to go on without collector A")
    assert w1.running, w1.log_tail()
    w1.kill()
    write(3)
    w1.start()
    write(4)
    a.start()  # back behind nginx (its fail_timeout is 2 s) for the rest of the stream
    counts = rig.finish(wait_for, 120)
    assert_exactly_once(counts, range(TOTAL))


def _full_answers(collector: Collector) -> float:
    """Requests the collector refused because the stream was full (its metrics)."""
    try:
        text = httpx.get(f"{collector.base_url}/metrics", timeout=5.0).text
    except httpx.TransportError:
        return 0.0
    found = re.findall(r'^logbridge_publish_failures_total\{[^}]*reason="full"[^}]*\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def test_a_full_stream_answers_503_until_the_writers_drain_it_and_nothing_is_lost(
    rig: Rig, nats_server: NatsServer, wait_for: Any
) -> None:
    # ~2.8 MB of stored lines through a 1 MiB stream: it fills about three times, and each 503
    # holds a shipper back for the collector's Retry-After (5 s).
    total = 8_000
    a, b = rig.collectors_up("a", "b", max_bytes="1MiB")
    logs = rig.shippers_up([{"urls": [a.events_url, b.events_url]}, {"urls": [b.events_url, a.events_url]}])
    per = total // len(logs)
    for n, path in enumerate(logs):
        append(path, range(n * per, (n + 1) * per))
    # No writer yet: the stream fills (discard new) and the collectors refuse with 503.
    wait_for(lambda: _full_answers(a) + _full_answers(b) >= 2, 60, "the collectors to answer 'full'")
    info = nats_server.stream_info("AUDIT")
    assert info.state.bytes > 1024 * 1024 * 0.8, "the stream should be (nearly) full"
    assert all(s.lag() for s in rig.shippers), "the shippers should be holding back events"
    started = time.monotonic()
    rig.writers_up("w1", "w2")
    counts = rig.finish(wait_for, 120)
    assert_exactly_once(counts, range(total))
    # The writers removed what they stored: the stream has room again.
    assert nats_server.stream_info("AUDIT").state.bytes < 1024 * 1024 // 2
    assert time.monotonic() - started < 120
