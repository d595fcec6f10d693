"""``logbridge collect`` with a ``nats`` destination, as a real process against a real nats-server.

- The DESIGN §6 destination, as written, takes events through a nats-server restart: while
  NATS is away ``POST /events`` and ``/healthz`` answer 503, then events are taken again, and
  the stream holds every event exactly once.
- Credentials (token, user + password) and TLS reach the server.
- What cannot work is refused at start in one line, exit 2: an unreachable server, refused
  credentials, JetStream off, a stream whose settings conflict, TLS that does not verify.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import NatsServer

from logbridge.collector.local import free_port

from .collectorproc import Collector, collector_config, refusal_lines, run_refused_start, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

pytest.importorskip("nats")

SOURCE = "nats-test/node-1/audit.log"
BATCH_LINES = 100


def event_stream(batches: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Log4j envelopes numbered by ``seq`` over a few topics and hours; each batch's byte range."""
    lines = []
    for seq in range(batches * BATCH_LINES):
        topic = ("generic", "authfail", "apinode-query")[seq % 3]
        message: dict[str, Any] = {"msgType": "m", "seq": seq}
        if topic == "apinode-query":
            message["routingKey"] = f"svc-{seq % 2}"
        stamp = f"2020-02-19T{10 + seq % 2}:05:02.441+0100"
        lines.append(
            orjson.dumps(
                {"severity": "INFO", "logger": f"dku.audit.{topic}", "message": message, "timestamp": stamp}
            )
            + b"\n"
        )
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    ranges = [(offsets[i], offsets[i + BATCH_LINES]) for i in range(0, len(lines), BATCH_LINES)]
    return b"".join(lines), ranges


def post_range(client: httpx.Client, url: str, stream: bytes, rng: tuple[int, int]) -> httpx.Response:
    return client.post(
        url,
        content=stream[rng[0] : rng[1]],
        headers={
            "Content-Type": "application/x-ndjson",
            "X-Logbridge-Source": SOURCE,
            "X-Logbridge-Range": f"{rng[0]}-{rng[1]}",
        },
    )


def stream_seqs(server: NatsServer, stream: str = "AUDIT") -> Counter[int]:
    return Counter(
        orjson.loads(line)["clientEvent"]["seq"] for m in server.messages(stream) for line in m.lines
    )


def design_destination(server: NatsServer, **more: Any) -> dict[str, Any]:
    """The scale-out destination of DESIGN §6, as written (its server on this test's port)."""
    return {"name": "bus", "type": "nats", "servers": [server.url], "stream": "AUDIT", **more}


class Sender(threading.Thread):
    """Posts every batch in order, retrying each on 503 or a broken connection until a 200, as
    the shipper does; keeps every status it got."""

    def __init__(self, url: str, stream: bytes, ranges: list[tuple[int, int]]):
        super().__init__(name="nats-test-sender")
        self.url, self.stream, self.ranges = url, stream, ranges
        self.acknowledged = 0
        self.statuses: Counter[int] = Counter()
        self.reasons: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=30.0) as client:
                for rng in self.ranges:
                    while not self.stop.is_set():
                        try:
                            r = post_range(client, self.url, self.stream, rng)
                        except httpx.TransportError:
                            self.statuses[-1] += 1
                            self.stop.wait(0.05)
                            continue
                        self.statuses[r.status_code] += 1
                        if r.status_code == 200:
                            assert r.json()["accepted"] == BATCH_LINES, r.text
                            self.acknowledged += 1
                            break
                        assert r.status_code == 503, (r.status_code, r.text)
                        assert r.headers.get("retry-after"), "a 503 without Retry-After"
                        self.reasons.append(r.json()["error"])
                        self.stop.wait(0.05)
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_the_design_destination_takes_events_through_a_nats_restart_and_loses_none(
    collector: Callable[..., Collector], nats_server: NatsServer, wait_for: Any
) -> None:
    c = collector(destinations=[design_destination(nats_server)])
    stream, ranges = event_stream(60)
    sender = Sender(c.events_url, stream, ranges)
    sender.start()
    try:
        wait_for(lambda: sender.acknowledged >= 20 or sender.error, 30, "20 batches acknowledged")
        nats_server.stop()
        health = wait_for(
            lambda: (r := httpx.get(f"{c.base_url}/healthz", timeout=5)).status_code == 503 and r,
            15,
            "/healthz to answer 503 with NATS away",
        )
        assert "NATS unreachable" in health.json()["reason"], health.text
        wait_for(lambda: sender.statuses[503] >= 3 or sender.error, 15, "POSTs answered 503 with NATS away")
        during = sender.acknowledged

        nats_server.start()
        wait_for(
            lambda: httpx.get(f"{c.base_url}/healthz", timeout=5).status_code == 200, 30, "healthz 200 again"
        )
        wait_for(lambda: not sender.is_alive(), 60, "every batch acknowledged")
    finally:
        sender.stop.set()
        sender.join(timeout=30)
    assert sender.error is None, sender.error
    assert sender.acknowledged == len(ranges) and during < len(ranges)
    assert any("NATS unreachable" in reason for reason in sender.reasons), sender.reasons[:3]

    seen = stream_seqs(nats_server)
    missing = [s for s in range(len(ranges) * BATCH_LINES) if seen[s] == 0]
    doubled = {s: n for s, n in seen.items() if n > 1}
    assert not missing and not doubled, f"missing {missing[:10]}, doubled {list(doubled.items())[:10]}"

    metrics = httpx.get(f"{c.base_url}/metrics", timeout=5).text
    assert 'logbridge_publish_failures_total{destination="bus",reason="unreachable"}' in metrics
    assert 'logbridge_messages_published_total{destination="bus"}' in metrics
    c.stop()
    assert "Traceback" not in "\n".join(p.read_text() for p in c.logs)


# ---------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("kind", ["token", "user+password"])
def test_credentials_reach_the_server(
    collector: Callable[..., Collector], start_nats: Any, kind: str
) -> None:
    secret = "s3cret-not-in-any-log"
    if kind == "token":
        server = start_nats("--auth", secret, connect_options={"token": secret})
        keys = {"token_env": "LB_NATS_TOKEN"}
        env = {"LB_NATS_TOKEN": secret}
    else:
        server = start_nats(
            "--user", "collector", "--pass", secret, connect_options={"user": "collector", "password": secret}
        )
        keys = {"user": "collector", "password_env": "LB_NATS_PASSWORD"}
        env = {"LB_NATS_PASSWORD": secret}
    c = collector(destinations=[design_destination(server, **keys)], env=env)
    stream, ranges = event_stream(1)
    with httpx.Client(timeout=10) as client:
        r = post_range(client, c.events_url, stream, ranges[0])
    assert r.status_code == 200, r.text
    assert sum(stream_seqs(server).values()) == BATCH_LINES
    c.stop()
    assert secret not in "\n".join(p.read_text() for p in c.logs)


def test_tls_with_the_configured_ca(
    collector: Callable[..., Collector], start_nats: Any, tmp_path: Path
) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "nats.pem", tmp_path / "nats.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    client_tls = ssl.create_default_context(cafile=str(ca_pem))
    server = start_nats(
        "--tls", "--tlscert", str(cert_pem), "--tlskey", str(key_pem), connect_options={"tls": client_tls}
    )
    c = collector(
        destinations=[
            design_destination(server, servers=[f"tls://127.0.0.1:{server.port}"], tls={"ca": str(ca_pem)})
        ]
    )
    stream, ranges = event_stream(1)
    with httpx.Client(timeout=10) as client:
        assert post_range(client, c.events_url, stream, ranges[0]).status_code == 200
    assert sum(stream_seqs(server).values()) == BATCH_LINES


# ------------------------------------------------------------------------- refused starts


def _unreachable(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    port = free_port()
    dest = {"name": "bus", "type": "nats", "servers": [f"nats://127.0.0.1:{port}"]}
    return dest, {}, [f"cannot reach NATS at nats://127.0.0.1:{port}", "Connection refused"]


def _bad_token(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    server = start_nats("--auth", "the-right-token", connect_options={"token": "the-right-token"})
    dest = design_destination(server, token_env="LB_NATS_TOKEN")
    return dest, {"LB_NATS_TOKEN": "a-wrong-token"}, ["refused the credentials", "LB_NATS_TOKEN (token_env)"]


def _no_credentials(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    server = start_nats("--auth", "the-right-token", connect_options={"token": "the-right-token"})
    return design_destination(server), {}, ["refused the credentials", "set creds_file, token_env, or user"]


def _jetstream_off(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    server = start_nats(jetstream=False)
    return design_destination(server), {}, ["JetStream does not answer", "-js"]


def _conflicting_stream(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """A stream of that name made by someone else: discard old (it would drop unconsumed events
    when full), memory storage."""
    from nats.js.api import DiscardPolicy, StorageType, StreamConfig

    server = start_nats()
    config = StreamConfig(
        name="AUDIT", subjects=["audit.>"], discard=DiscardPolicy.OLD, storage=StorageType.MEMORY
    )
    server.run(lambda nc: nc.jetstream().add_stream(config), quiet=False)
    return (
        design_destination(server),
        {},
        ["stream 'AUDIT' exists with settings that conflict", "discard old", "storage memory"],
    )


def _other_subjects(start_nats: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    from nats.js.api import StreamConfig

    server = start_nats()
    server.run(
        lambda nc: nc.jetstream().add_stream(StreamConfig(name="AUDIT", subjects=["other.>"])), quiet=False
    )
    return design_destination(server), {}, ["its subjects ['other.>'] do not take 'audit.>'"]


def _tls_unverified(start_nats: Any, tmp_path: Path) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "nats.pem", tmp_path / "nats.key", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    server = start_nats(
        "--tls",
        "--tlscert",
        str(cert_pem),
        "--tlskey",
        str(key_pem),
        connect_options={"tls": ssl.create_default_context(cafile=str(ca_pem))},
    )
    # tls: {} trusts the system's CAs only, which never signed this test CA.
    dest = design_destination(server, servers=[f"tls://127.0.0.1:{server.port}"], tls={})
    return dest, {}, ["TLS with the NATS server", "CERTIFICATE_VERIFY_FAILED"]


REFUSED = {
    "unreachable": _unreachable,
    "bad-token": _bad_token,
    "no-credentials": _no_credentials,
    "jetstream-off": _jetstream_off,
    "conflicting-stream": _conflicting_stream,
    "stream-with-other-subjects": _other_subjects,
}


@pytest.mark.parametrize("case", [*REFUSED, "tls-unverified"])
def test_a_nats_destination_that_cannot_work_is_one_line_and_exit_2(
    tmp_path: Path, start_nats: Any, case: str
) -> None:
    if case == "tls-unverified":
        dest, env, expected = _tls_unverified(start_nats, tmp_path)
    else:
        dest, env, expected = REFUSED[case](start_nats)
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    config_path = write_config(home / "collector.yaml", collector_config(home, port, destinations=[dest]))

    returncode, stderr = run_refused_start(config_path, port, env={**os.environ, **env})

    assert returncode == 2, f"exit code {returncode}, expected 2; stderr:\n{stderr}"
    lines, problems = refusal_lines(stderr, case)
    assert not problems, "\n".join([*problems, stderr])
    (line,) = lines
    assert str(config_path) in line and "destinations[0] (bus)" in line, line
    for part in expected:
        assert part in line, f"{part!r} not in {line!r}"
    for secret in env.values():
        assert secret not in stderr
    # Nothing was served, nothing staged for a destination that never started.
    assert not (home / "state" / "staging" / "bus").exists()
