"""Wiring: config → Collector → ASGI app → uvicorn (httptools + uvloop)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog

from .app import CollectorApp
from .auth import TokenAuth
from .config import CollectorConfig, load
from .core import Collector

log = structlog.get_logger("logbridge.collector")


def build_app(config: CollectorConfig) -> CollectorApp:
    return CollectorApp(Collector(config), TokenAuth(config.resolved_tokens()))


def _loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(config_path: str | os.PathLike[str]) -> None:
    import uvicorn

    config = load(config_path)
    app = build_app(config)
    tls = config.tls
    ssl_kwargs: dict[str, Any] = {}
    if tls is not None:
        import ssl

        ssl_kwargs = {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key}
        if tls.client_ca:
            ssl_kwargs |= {"ssl_ca_certs": tls.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    log.info(
        "collector starting",
        config=str(Path(config_path)),
        host=config.listen.host,
        port=config.listen.port,
        state_dir=str(app.collector.state_dir),
        durability=config.durability,
        destinations=[d.name for d in config.destinations],
    )
    server_config = uvicorn.Config(
        app,
        host=config.listen.host,
        port=config.listen.port,
        loop=_loop(),
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        **ssl_kwargs,
    )
    uvicorn.Server(server_config).run()
