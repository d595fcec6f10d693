"""TLS: the collector serves HTTPS and, with ``client_ca``, requires client certificates."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from logbridge.collector.local import free_port

trustme = pytest.importorskip("trustme")

LINE = b'{"msgType":"login","topic":"generic"}'


@pytest.fixture
def tls_collector(tmp_path: Path) -> Iterator[tuple[str, Any, Any]]:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("node-a.logbridge.test")
    cert, key, ca_pem = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_pem))
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "state_dir": str(tmp_path / "state"),
        "dead_letter": f"file://{tmp_path / 'dead'}",
        "destinations": [{"name": "store", "url": f"file://{tmp_path / 'store'}"}],
        "tls": {"cert": str(cert), "key": str(key), "client_ca": str(ca_pem)},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    log_path = tmp_path / "collector.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "logbridge", "collect", "--config", str(tmp_path / "c.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    client_cert.configure_cert(ctx)
    base = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(base + "/healthz", verify=ctx).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield base, ca, client_cert
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_https_with_client_certificates(tls_collector: tuple[str, Any, Any]) -> None:
    base, ca, client_cert = tls_collector
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    client_cert.configure_cert(ctx)
    r = httpx.post(base + "/events", content=LINE, verify=ctx)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    no_cert = ssl.create_default_context()
    ca.configure_trust(no_cert)
    with pytest.raises(httpx.TransportError):
        httpx.post(base + "/events", content=LINE, verify=no_cert)
