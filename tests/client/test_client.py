"""CollectorClient over real sockets (the loopback collector of tests/conftest.py): what each
answer means, 413 splits, Retry-After, 409 resumes, bearer tokens, gzip, and TLS with a
private CA and a client certificate."""

from __future__ import annotations

import datetime as dt
import gzip
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _httpserver import LoopbackHTTPServer

from logbridge.client import CollectorClient, CollectorTarget, Stopped
from logbridge.errors import ConfigError
from logbridge.retry import retry_after


def _client(url: str, **keys: Any) -> CollectorClient:
    """A client as the shipper builds it, from its ``collector:`` config."""
    target = CollectorTarget.model_validate({"url": url, "retry": {"initial": "10ms", "max": "20ms"}, **keys})
    return CollectorClient.from_target(target, "node-a", stop=threading.Event())


class FakeTime:
    """A clock that moves only when the client sleeps: backoffs are recorded, not waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def _timed(url: str, **options: Any) -> tuple[CollectorClient, FakeTime]:
    fake = FakeTime()
    options = {"retry_initial": 0.1, "retry_max": 0.4, **options}
    client = CollectorClient(url, clock=fake.clock, sleep=fake.sleep, wait_slice=1e9, **options)
    return client, fake


def _lines(n: int, size: int = 100, first: int = 0) -> list[bytes]:
    """``n`` NDJSON lines of exactly ``size`` bytes each, numbered from ``first``."""
    out = []
    for seq in range(first, first + n):
        head = b'{"seq":%d,"pad":"' % seq
        out.append(head + b"x" * (size - len(head) - 3) + b'"}\n')
    return out


def _stored_ranges(collector: Any) -> list[tuple[int, int]]:
    """The ranges of the requests that the loopback collector stored (answered with accepted > 0)."""
    out = []
    seen: dict[str, int] = {}
    for request in collector.requests:
        start, end = (int(x) for x in request.headers["x-logbridge-range"].split("-"))
        source = request.headers["x-logbridge-source"]
        if start >= seen.get(source, 0) and len(request.body) <= (collector.max_body_bytes or 1 << 60):
            out.append((start, end))
            seen[source] = end
    return out


# ------------------------------------------------------------------------------ status classes


def test_any_2xx_is_stored_and_a_stored_range_is_a_duplicate(loopback_collector: Any) -> None:
    client = _client(loopback_collector.url)
    body = b'{"msgType":"a"}\n'
    assert client.send(body, source="s", start=0, end=16).kind == "stored"
    assert client.send(body, source="s", start=0, end=16).kind == "duplicate"
    loopback_collector.script.append((204, {}, b""))
    assert client.send(body, source="s", start=16, end=32).kind == "stored"
    assert client.retries == 0
    client.close()


def test_409_says_where_to_resume(loopback_collector: Any) -> None:
    client = _client(loopback_collector.url)
    assert client.send(b"{}\n" * 5, source="s", start=0, end=15).kind == "stored"
    result = client.send(b"{}\n" * 5, source="s", start=9, end=24)
    assert (result.kind, result.high_water, result.rejected) == ("high_water", 15, ())
    # A 409 without a usable mark is a collector that cannot be understood: no loop, a dead letter.
    loopback_collector.script.append((409, {}, b'{"high_water":"soon"}'))
    result = client.send(b"{}\n", source="s", start=15, end=18)
    assert (result.kind, result.status) == ("rejected", 409)
    client.close()


@pytest.mark.parametrize("status", [401, 403, 408, 425, 429, 500, 502, 503, 504])
def test_these_statuses_are_retried_with_the_same_body_and_range(
    loopback_collector: Any, status: int
) -> None:
    client, fake = _timed(loopback_collector.url)
    loopback_collector.script.extend([(status, {}, b"no")] * 2)
    body = b"".join(_lines(3))
    result = client.send(body, source="s", start=100, end=400)
    assert result.kind == "stored" and client.retries == 2 and len(fake.waits) == 2
    assert {(r.headers["x-logbridge-range"], r.body) for r in loopback_collector.requests} == {
        ("100-400", body)
    }
    assert client.last_problem.startswith(f"HTTP {status}")


@pytest.mark.parametrize("status", [400, 404, 405, 411, 415, 422])
def test_other_4xx_are_rejected_at_once_for_the_dead_letter(loopback_collector: Any, status: int) -> None:
    client, fake = _timed(loopback_collector.url)
    loopback_collector.script.append((status, {}, b'{"error":"no"}'))
    body = b"".join(_lines(3))
    result = client.send(body, source="s", start=100, end=400)
    assert (result.kind, result.status, result.response) == ("rejected", status, '{"error":"no"}')
    (piece,) = result.rejected
    assert (piece.body, piece.start, piece.end, piece.lines, piece.status) == (body, 100, 400, 3, status)
    assert piece.reason == f'HTTP {status}: {{"error":"no"}}'
    assert loopback_collector.request_count() == 1 and fake.waits == [] and client.retries == 0


def test_network_errors_are_retried_until_told_to_stop() -> None:
    with socket.socket() as probe:  # a port nobody listens on: every connection is refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/events"
    fake = FakeTime()
    client = CollectorClient(
        url, clock=fake.clock, wait_slice=1e9, sleep=lambda s: fake.sleep(s) or len(fake.waits) > 3
    )
    with pytest.raises(Stopped):
        client.send(b"{}\n", source="s", start=0, end=3)
    assert client.retries == 4 and isinstance(client.last_error, httpx.ConnectError)


# ------------------------------------------------------------------------------------ waiting


def test_retry_after_is_honoured_and_capped(loopback_collector: Any) -> None:
    client, fake = _timed(loopback_collector.url, retry_max=0.4)
    loopback_collector.script.extend(
        [(503, {"Retry-After": "2"}, b""), (429, {"Retry-After": "86400"}, b""), (503, {}, b"")]
    )
    assert client.send(b"{}\n").kind == "stored"
    assert fake.waits[:2] == [2.0, 10.0]  # a day is a typo: at most 10 x retry_max (at least 10 s)
    assert 0 <= fake.waits[2] <= 0.4  # no Retry-After: the backoff of a third attempt


def test_backoff_is_capped_exponential_with_full_jitter(loopback_collector: Any) -> None:
    client, fake = _timed(loopback_collector.url, retry_initial=0.1, retry_max=0.4)
    loopback_collector.script.extend([(503, {}, b"")] * 200)
    assert client.send(b"{}\n").kind == "stored"
    caps = [min(0.4, 0.1 * 2**i) for i in range(200)]
    assert all(0 <= wait <= cap for wait, cap in zip(fake.waits, caps, strict=True))
    late = fake.waits[10:]
    assert min(late) < 0.1 and max(late) > 0.3, "the whole window [0, cap] is used"


def test_on_wait_is_called_while_a_backoff_runs(loopback_collector: Any) -> None:
    called: list[float] = []
    fake = FakeTime()
    client = CollectorClient(
        loopback_collector.url,
        clock=fake.clock,
        sleep=fake.sleep,
        wait_slice=0.25,
        on_wait=lambda: called.append(fake.now),
    )
    loopback_collector.script.append((503, {"Retry-After": "1"}, b""))
    assert client.send(b"{}\n").kind == "stored"
    assert fake.waits == [0.25, 0.25, 0.25, 0.25] and called == [0.25, 0.5, 0.75]


# ------------------------------------------------------------------------------- 413: splitting


def test_413_splits_the_batch_into_halves_with_their_own_ranges(loopback_collector: Any) -> None:
    loopback_collector.max_body_bytes = 250  # two lines of 100 bytes fit, three do not
    client = _client(loopback_collector.url, compression="none")
    lines = _lines(8)
    result = client.send(b"".join(lines), source="s", start=1000, end=1800)
    assert (result.kind, result.rejected) == ("stored", ())
    assert loopback_collector.lines == [line.rstrip(b"\n") for line in lines], "each line once, in order"
    assert [r.headers["x-logbridge-range"] for r in loopback_collector.requests] == [
        "1000-1800",  # 413
        "1000-1400",  # 413
        "1000-1200",
        "1200-1400",
        "1400-1800",  # 413
        "1400-1600",
        "1600-1800",
    ]
    assert loopback_collector.high_water["s"] == 1800


def test_413_on_a_single_line_rejects_only_that_line(loopback_collector: Any) -> None:
    loopback_collector.max_body_bytes = 500
    client = _client(loopback_collector.url, compression="none")
    lines = _lines(2) + _lines(1, size=900, first=2) + _lines(3, first=3)
    result = client.send(b"".join(lines), source="s", start=0, end=1400)
    assert result.kind == "stored"
    (piece,) = result.rejected
    assert (piece.body, piece.start, piece.end, piece.lines, piece.status) == (lines[2], 200, 1100, 1, 413)
    # The collector takes the lines after the gap: its mark moves past the refused line.
    assert [orjson.loads(line)["seq"] for line in loopback_collector.lines] == [0, 1, 3, 4, 5]
    assert loopback_collector.high_water["s"] == 1400


def test_413_split_uses_line_ends_when_the_body_is_rewritten(loopback_collector: Any) -> None:
    """A text input's body is not the file's bytes: each half's range comes from ``line_ends``."""
    loopback_collector.max_body_bytes = 250
    client = _client(loopback_collector.url, compression="none")
    body = b"".join(_lines(4))
    result = client.send(body, source="s", start=0, end=50, line_ends=[10, 20, 35, 50])
    assert result.kind == "stored"
    ranges = [r.headers["x-logbridge-range"] for r in loopback_collector.requests]
    assert ranges == ["0-50", "0-20", "20-50"]


def test_413_halves_already_stored_are_duplicates_and_a_409_ends_the_split(loopback_collector: Any) -> None:
    loopback_collector.max_body_bytes = 250
    client = _client(loopback_collector.url, compression="none")
    body = b"".join(_lines(4))
    loopback_collector.high_water["s"] = 400  # stored by an earlier run whose answer was lost
    assert client.send(body, source="s", start=0, end=400).kind == "duplicate"
    assert loopback_collector.lines == []

    loopback_collector.requests.clear()
    loopback_collector.high_water["s"] = 500  # a sender that crashed with a longer batch in flight
    result = client.send(b"".join(_lines(4)), source="s", start=450, end=850)
    assert (result.kind, result.high_water) == ("high_water", 500)
    assert [r.headers["x-logbridge-range"] for r in loopback_collector.requests] == ["450-850", "450-650"]


def test_413_without_ranges_splits_too(loopback_collector: Any) -> None:
    loopback_collector.max_body_bytes = 250
    client = _client(loopback_collector.url)
    assert client.send(b"".join(_lines(4))).kind == "stored"
    assert len(loopback_collector.lines) == 4
    assert all("x-logbridge-range" not in r.headers for r in loopback_collector.requests)


def test_a_bad_tls_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load tls.ca"):
        _client("https://127.0.0.1:1/events", tls={"ca": str(tmp_path / "missing.pem")})


def test_headers_gzip_and_token(
    loopback_collector: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LB_TOKEN", "s3cret")
    fwd = _client(loopback_collector.url, token_env="LB_TOKEN")
    fwd.send(b'{"m":1}\n', source="node-a/x", start=5, end=13, topic="generic", routing_key="svc")
    headers = loopback_collector.requests[-1].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-logbridge-source"] == "node-a/x" and headers["x-logbridge-range"] == "5-13"
    assert headers["x-audit-topic"] == "generic" and headers["x-audit-routing-key"] == "svc"
    assert headers["x-logbridge-node"] == "node-a" and headers["content-encoding"] == "gzip"
    assert loopback_collector.requests[-1].body == b'{"m":1}\n'
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    plain = _client(loopback_collector.url, token_file=str(token_file), compression="none")
    plain.send(b'{"m":2}\n', source="s", start=0, end=8)
    assert loopback_collector.requests[-1].headers["authorization"] == "Bearer from-file"
    assert "content-encoding" not in loopback_collector.requests[-1].headers


def test_stop_interrupts_retries(loopback_collector: Any) -> None:
    fwd = _client(loopback_collector.url)
    loopback_collector.script.extend([(503, {}, b"")] * 100)
    threading.Timer(0.2, fwd.stop.set).start()
    with pytest.raises(Stopped):
        fwd.send(b"{}\n", source="s", start=0, end=3)


def test_retry_after_forms() -> None:
    assert retry_after("3") == 3.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


# -------------------------------------------------------------------------------------- TLS


def _certs(tmp_path: Path) -> dict[str, Path]:
    """A private CA, a server certificate for 127.0.0.1, and a client certificate."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> Any:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out: dict[str, Path] = {"ca": tmp_path / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    import ipaddress

    for who, serial in (("server", 2), ("client", 3)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(who))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if who == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        out[f"{who}_cert"] = tmp_path / f"{who}.pem"
        out[f"{who}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{who}_key"] = tmp_path / f"{who}.key"
        out[f"{who}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return out


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path], list[str]]]:
    certs = _certs(tmp_path)
    peers: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            gzip.decompress(body)
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            peers.append(dict(x[0] for x in peer["subject"])["commonName"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = LoopbackHTTPServer(Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"]))
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.start()
    yield f"https://127.0.0.1:{server.port}/events", certs, peers
    server.stop()


def test_tls_with_private_ca_and_client_certificate(tls_server: Any) -> None:
    url, certs, peers = tls_server
    fwd = _client(
        url, tls={"ca": str(certs["ca"]), "cert": str(certs["client_cert"]), "key": str(certs["client_key"])}
    )
    assert fwd.send(b'{"m":1}\n', source="s", start=0, end=8).kind == "stored"
    assert peers == ["client"]
    fwd.close()


def test_tls_refuses_an_unknown_ca(tls_server: Any) -> None:
    url, certs, peers = tls_server
    fwd = _client(url, tls={"cert": str(certs["client_cert"]), "key": str(certs["client_key"])})
    threading.Timer(0.5, fwd.stop.set).start()
    with pytest.raises(Stopped):  # certificate errors are retried (fix the config), never skipped
        fwd.send(b"{}\n", source="s", start=0, end=3)
    assert fwd.retries >= 1 and peers == []
