"""The forwarder over real sockets: what each answer means, bearer tokens, gzip, and TLS with a
private CA and a client certificate."""

from __future__ import annotations

import datetime as dt
import gzip
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from logbridge.retry import retry_after
from logbridge.shipper.config import CollectorConfig
from logbridge.shipper.forward import Forwarder, Stopped


def _forwarder(url: str, **keys: Any) -> Forwarder:
    cfg = CollectorConfig.model_validate({"url": url, "retry": {"initial": "10ms", "max": "20ms"}, **keys})
    return Forwarder(cfg, "node-a", threading.Event())


def test_answers(fake_collector: Any) -> None:
    fwd = _forwarder(fake_collector.url)
    body = b'{"msgType":"a"}\n'
    assert fwd.send(body, source="s", start=0, end=16).kind == "stored"
    assert fwd.send(body, source="s", start=0, end=16).kind == "duplicate"
    result = fwd.send(body, source="s", start=8, end=30)
    assert (result.kind, result.high_water) == ("high_water", 16)
    fake_collector.script.append((413, {}, b'{"error":"too large"}'))
    result = fwd.send(body, source="s", start=16, end=32)
    assert (result.kind, result.status, result.response) == ("rejected", 413, '{"error":"too large"}')
    fake_collector.script.extend([(503, {"Retry-After": "0"}, b""), (401, {}, b""), (204, {}, b"")])
    assert fwd.send(body, source="s", start=16, end=32).kind == "stored"  # any 2xx
    assert fwd.retries == 2
    fwd.close()


def test_headers_gzip_and_token(fake_collector: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LB_TOKEN", "s3cret")
    fwd = _forwarder(fake_collector.url, token_env="LB_TOKEN")
    fwd.send(b'{"m":1}\n', source="node-a/x", start=5, end=13, topic="generic", routing_key="svc")
    headers = fake_collector.requests[-1].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-logbridge-source"] == "node-a/x" and headers["x-logbridge-range"] == "5-13"
    assert headers["x-audit-topic"] == "generic" and headers["x-audit-routing-key"] == "svc"
    assert headers["x-logbridge-node"] == "node-a" and headers["content-encoding"] == "gzip"
    assert fake_collector.requests[-1].body == b'{"m":1}\n'
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    plain = _forwarder(fake_collector.url, token_file=str(token_file), compression="none")
    plain.send(b'{"m":2}\n', source="s", start=0, end=8)
    assert fake_collector.requests[-1].headers["authorization"] == "Bearer from-file"
    assert "content-encoding" not in fake_collector.requests[-1].headers


def test_stop_interrupts_retries(fake_collector: Any) -> None:
    fwd = _forwarder(fake_collector.url)
    fake_collector.script.extend([(503, {}, b"")] * 100)
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

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"]))
    ctx.load_cert_chain(certs["server_cert"], certs["server_key"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/events", certs, peers
    server.shutdown()
    server.server_close()


def test_tls_with_private_ca_and_client_certificate(tls_server: Any) -> None:
    url, certs, peers = tls_server
    fwd = _forwarder(
        url, tls={"ca": str(certs["ca"]), "cert": str(certs["client_cert"]), "key": str(certs["client_key"])}
    )
    assert fwd.send(b'{"m":1}\n', source="s", start=0, end=8).kind == "stored"
    assert peers == ["client"]
    fwd.close()


def test_tls_refuses_an_unknown_ca(tls_server: Any) -> None:
    url, certs, peers = tls_server
    fwd = _forwarder(url, tls={"cert": str(certs["client_cert"]), "key": str(certs["client_key"])})
    threading.Timer(0.5, fwd.stop.set).start()
    with pytest.raises(Stopped):  # certificate errors are retried (fix the config), never skipped
        fwd.send(b"{}\n", source="s", start=0, end=3)
    assert fwd.retries >= 1 and peers == []
