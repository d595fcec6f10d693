"""Wiring: config → Collector → ASGI app → uvicorn (httptools + uvloop)."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any

import structlog

from ..errors import ConfigError
from .app import CollectorApp
from .auth import TokenAuth
from .config import CollectorServerConfig, load
from .core import Collector
from .preflight import check_local_folder, check_publishers, check_setup
from .protocol import bounded_protocol
from .service import CollectorService
from .statelock import StateLock

log = structlog.get_logger("logbridge.collector")


def build_app(config: CollectorServerConfig) -> CollectorApp:
    collector = Collector(config)
    app = CollectorApp(CollectorService(collector), TokenAuth(config.resolved_tokens()))
    if config.ui.enabled:
        from .ui.wiring import operator_ui

        app.ui = operator_ui(config, collector, app)
    return app


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(config_path: str | os.PathLike[str]) -> None:
    """Check, lock, bind, then recover and serve — in that order.

    The state dir is locked before anything in it is touched and the port is bound before
    start-up recovery runs, so a second collector on the same config exits 2 (naming the lock
    holder or the port) without having published or compacted anything of the first one's."""
    import uvicorn

    source = str(Path(config_path))
    # The writer thread and the ingest pool share the GIL with the event loop: a request waits for
    # it at each hand-over, up to the switch interval, while a big batch is parsed. 0.5 ms instead
    # of 5 keeps that wait short; the cost is a few more switches, only while threads contend.
    sys.setswitchinterval(0.0005)
    config = load(config_path)
    state_dir = config.resolved_state_dir()
    check_local_folder(state_dir, "state_dir", source)
    address = f"{config.listen.host}:{config.listen.port}"
    lock = StateLock(state_dir)
    lock.acquire(owner=address)
    sock = _bind(config.listen.host, config.listen.port, source)
    check_setup(config, source)
    check_publishers(config, source)
    app = build_app(config)
    limits = config.limits
    tls = config.tls
    ssl_kwargs: dict[str, Any] = {}
    if tls is not None:
        import ssl

        ssl_kwargs = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key}
        if tls.client_ca:
            ssl_kwargs |= {"ssl_ca_certs": tls.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    log.info(
        "collector starting",
        config=source,
        host=config.listen.host,
        port=sock.getsockname()[1],
        state_dir=str(state_dir),
        durability=config.durability,
        destinations=[d.name for d in config.destinations],
    )
    server_config = uvicorn.Config(
        app,
        loop=_loop(),
        http=bounded_protocol(
            header_timeout=limits.header_timeout,
            body_timeout=limits.body_timeout,
            max_header_bytes=limits.max_header_bytes,
            metrics=app.metrics,
        ),
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        **ssl_kwargs,
    )
    try:
        uvicorn.Server(server_config).run(sockets=[sock])
    finally:
        sock.close()
        lock.release()


def _bind(host: str, port: int, source: str) -> socket.socket:
    """The listening socket, bound now (before recovery); a clear `ConfigError` if it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{source}: listen.host: cannot resolve {host!r}: {exc}", source=source) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = (
            "another process listens there (another collector?); stop it or change listen.port"
            if exc.errno == errno.EADDRINUSE
            else "check listen.host and listen.port"
        )
        raise ConfigError(
            f"{source}: cannot listen on {host}:{port}: {exc.strerror.lower() if exc.strerror else exc}; {hint}",
            source=source,
        ) from None
    sock.set_inheritable(True)
    return sock
