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

from ..errors import HeadersTooLarge as HeadersTooLarge  # defined in the one tree; raised here
from .metrics import Metrics

log = structlog.get_logger("logbridge.collector")

_TIMEOUT_BODY = b'{"error":"request headers took too long; send the whole request at once"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Set the class attributes with `bounded_protocol`; uvicorn builds one per connection."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 64 * 1024
    metrics: Metrics | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One timer per connection, rarely moved: callbacks only push the deadline (a float),
        # and the timer, when it fires early, re-arms itself for what is left. Re-arming a timer
        # on every request and every body chunk cost a few percent of a small request.
        self._read_timer: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "header", "body", or None (no request being read)
        self._deadline = 0.0
        self._header_bytes = 0

    def _expect(self, phase: str | None, timeout: float = 0.0) -> None:
        self._phase = phase
        if phase is None:
            return
        self._deadline = self.loop.time() + timeout
        timer = self._read_timer
        if timer is not None and timer.when() > self._deadline:  # set for a longer phase: too late
            timer.cancel()
            timer = None
        if timer is None:
            self._read_timer = self.loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._read_timer = None
        if self._phase is None or self.transport is None or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:
            self._read_timer = self.loop.call_at(self._deadline, self._check_deadline)
            return
        phase = self._phase
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
        self._expect("header", self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = None
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._phase is None:  # a keep-alive connection's next request (not the first)
            self._expect("header", self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._expect("body", self.body_timeout)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._deadline = self.loop.time() + self.body_timeout

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._expect(None)

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
