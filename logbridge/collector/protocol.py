"""uvicorn's httptools protocol with the read bounds a server on a network needs.

uvicorn only times out idle keep-alive connections: a client that opens a connection and sends
nothing, half a request header, or part of a body and then stalls holds its connection (and the
buffered bytes) for ever. This protocol closes it:

- ``header_timeout``: from the connection (or the first byte of a request) to the end of its
  headers, in total; a slow trickle of header bytes does not reset it. The client gets a 408.
- ``body_timeout``: the longest silence between two pieces of a body; the request is then cut,
  and the app discards it whole (a cut body is never stored).
- ``max_header_bytes``: request line and headers together; past it, a 400 and the connection
  closes (the parser refuses the request).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .metrics import Metrics

log = structlog.get_logger("logbridge.collector")

_TIMEOUT_BODY = b'{"error":"request headers took too long; send the whole request at once"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class HeadersTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into a parser error, uvicorn into a 400."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Set the class attributes with `bounded_protocol`; uvicorn builds one per connection."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    metrics: Metrics | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    # The timer: one at a time, for the phase the connection is in.

    def _arm(self, delay: float, phase: str) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(delay, self._read_timed_out, phase)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self, phase: str) -> None:
        self._read_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.metrics is not None:
            self.metrics.read_timeouts.labels(phase).inc()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.warning("closing a connection that sent too slowly", phase=phase, client=client)
        if phase == "header" and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    # asyncio.Protocol and parser callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "header")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._read_timer is None:  # a keep-alive connection's next request
            self._arm(self.header_timeout, "header")

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout, "body")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_timeout, "body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes:
            raise HeadersTooLarge(f"request headers over {self.max_header_bytes} bytes")


def bounded_protocol(
    *, header_timeout: float, body_timeout: float, max_header_bytes: int, metrics: Metrics
) -> type[BoundedHttpToolsProtocol]:
    """A protocol class carrying this collector's bounds and metrics."""
    return type(
        "CollectorHttpProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_header_bytes": max_header_bytes,
            "metrics": metrics,
        },
    )
