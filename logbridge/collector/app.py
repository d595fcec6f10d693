"""The collector's HTTP face: a plain ASGI app (no framework on the hot path).

``POST /events`` · ``GET /healthz`` · ``GET /metrics`` — DESIGN.md §4.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import BodyCut, BodyError, BodyTooLarge, StorageUnavailable
from .auth import TokenAuth
from .ingest import RequestContext
from .service import CollectorService

if TYPE_CHECKING:
    from .ui import OperatorUi

log = structlog.get_logger("logbridge.collector")

Scope = dict[str, Any]
RETRY_AFTER = b"5"
_AUTHFAIL_EVENTS_PER_SECOND = 50


class CollectorApp:
    def __init__(self, service: CollectorService, auth: TokenAuth, *, maintain_interval: float = 0.5):
        self.service = service
        self.ui: OperatorUi | None = None  # the operator page (``ui: true``): its paths, else 404
        self.metrics = service.metrics
        self.auth = auth
        self.limits = service.limits
        self.maintain_interval = maintain_interval
        self._maintainer: asyncio.Task[None] | None = None
        self._authfail_window = (0, 0)  # (second, events written in it)

    # ------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            method = scope["method"]
            if path == "/events":
                if method != "POST":
                    await _respond(send, 405, {"error": "use POST"}, extra=[(b"allow", b"POST")])
                    return
                started = time.perf_counter()
                status = await self.post_events(scope, receive, send)
                self.metrics.latency.observe(time.perf_counter() - started)
                self.metrics.requests.labels("/events", str(status)).inc()
            elif path == "/healthz":
                problem = self.service.storage_problem()
                if problem:
                    await _respond(send, 503, {"status": "degraded", "reason": problem})
                else:
                    await _respond(send, 200, {"status": "ok"})
            elif path == "/metrics":
                payload = generate_latest(self.metrics.registry)
                await _send(send, 200, payload, CONTENT_TYPE_LATEST.encode())
            elif self.ui is not None and self.ui.handles(path):
                await self.ui(scope, receive, send)
            else:
                await _respond(
                    send, 404, {"error": f"no such path {path}; POST /events, GET /healthz, /metrics"}
                )
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.service.start()
                except Exception as exc:  # a start-up failure must stop the server, loudly
                    log.error("collector failed to start", error=str(exc))
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._maintainer = asyncio.create_task(self._maintain_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._maintainer is not None:
                    self._maintainer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._maintainer
                await self.service.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _maintain_loop(self) -> None:
        while True:
            await asyncio.sleep(self.maintain_interval)
            try:
                await self.service.maintain()
            except Exception as exc:  # keep rolling whatever one round hit
                log.error("maintenance round failed", error=f"{type(exc).__name__}: {exc}")

    # ----------------------------------------------------------------------- POST /events

    async def post_events(self, scope: Scope, receive: Any, send: Any) -> int:
        headers = dict(scope["headers"])
        client = scope.get("client")
        orig_address = client[0] if client else "unknown"
        node = _text(headers.get(b"x-logbridge-node"))

        ok, token_name, reason = self.auth.check(headers.get(b"authorization"))
        if not ok:
            self.metrics.auth_failures.inc()
            self._audit_auth_failure(reason, orig_address, node)
            await _respond(
                send,
                401,
                {"error": "missing or invalid bearer token"},
                extra=[(b"www-authenticate", b'Bearer realm="logbridge"')],
            )
            return 401

        limit = self.limits.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is None and b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            # No length and not chunked: HTTP/1.1 says there is no body, HTTP/1.0 reads until close.
            # Either way the collector could not tell a whole body from a cut one.
            await _respond(
                send, 411, {"error": "send a Content-Length header or use Transfer-Encoding: chunked"}
            )
            return 411
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _respond(
                send, 413, {"error": f"body of {int(declared)} bytes is over the limit of {limit}"}
            )
            return 413
        try:
            raw = await _read_body(receive, limit)
        except BodyCut:
            # The sender died or the connection broke before the end of the body: nothing of it
            # is stored and no mark moves, so the sender's retry of this range is new, not a
            # duplicate. Nobody is left to answer.
            self.metrics.cut_requests.inc()
            log.warning(
                "request body cut short, discarded",
                orig_address=orig_address,
                node=node,
                source=_text(headers.get(b"x-logbridge-source")),
                range=_text(headers.get(b"x-logbridge-range")),
            )
            return 499
        if raw is None:
            await _respond(send, 413, {"error": f"body is over the limit of {limit} bytes"})
            return 413
        self.metrics.bytes_in.inc(len(raw))

        try:
            source, range_start, range_end = parse_range_headers(
                _text(headers.get(b"x-logbridge-source")), headers.get(b"x-logbridge-range")
            )
            ctx = RequestContext(
                orig_address=orig_address,
                node=node,
                header_topic=_text(headers.get(b"x-audit-topic")),
                header_routing_key=_text(headers.get(b"x-audit-routing-key")),
                token_name=token_name,
                source=source,
                range_start=range_start,
                range_end=range_end,
            )
            result = await self.service.ingest(
                raw, _text(headers.get(b"content-encoding")), _text(headers.get(b"content-type")), ctx
            )
        except BodyTooLarge as exc:
            await _respond(send, 413, {"error": str(exc)})
            return 413
        except BodyError as exc:
            await _respond(send, exc.status, {"error": str(exc)})
            return exc.status
        except StorageUnavailable as exc:
            log.error("storage unavailable", error=str(exc))
            await _respond(send, 503, {"error": str(exc)}, extra=[(b"retry-after", RETRY_AFTER)])
            return 503
        if result.high_water is not None:
            await _respond(
                send,
                409,
                {
                    "error": "range overlaps what is stored; resume from high_water",
                    "high_water": result.high_water,
                },
            )
            return 409
        answer: dict[str, Any] = {
            "accepted": result.accepted,
            "invalid": result.invalid,
            "duplicate": result.duplicate,
        }
        if result.reasons:
            answer["reasons"] = result.reasons
        await _respond(send, 200, answer)
        return 200

    def _audit_auth_failure(
        self, reason: str, orig_address: str, node: str | None, path: str = "/events"
    ) -> None:
        """The collector audits its own authentication failures (topic ``authfail``)."""
        second = int(time.time())
        window_second, count = self._authfail_window
        count = count + 1 if window_second == second else 1
        self._authfail_window = (second, count)
        if count > _AUTHFAIL_EVENTS_PER_SECOND:
            return  # counted in logbridge_auth_failures; a flood must not fill the store
        event: dict[str, Any] = {
            "msgType": "collector-auth-failure",
            "reason": reason,
            "origAddress": orig_address,
            "path": path,
        }
        if node:
            event["node"] = node
        log.warning("authentication failed", reason=reason, orig_address=orig_address, node=node, path=path)
        ctx = RequestContext(orig_address=orig_address, node=node, header_topic="authfail")
        self.service.audit(event, ctx)


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("latin-1").strip() or None


_MAX_OFFSET = 2**63 - 1
_MAX_OFFSET_DIGITS = len(str(_MAX_OFFSET))


def parse_range_headers(
    source: str | None, raw_range: bytes | None
) -> tuple[str | None, int | None, int | None]:
    """``X-Logbridge-Source`` + ``X-Logbridge-Range`` → (source, start, end), or all None.

    Strict on purpose (DESIGN §4): ASCII digits only (``str.isdigit`` takes ``²``, ``int`` takes
    ``1_0`` and ``+1``), ``start <= end``, both within 63 bits — checked before anything is
    stored or claimed, so nothing after the claim can fail on a number. Raises `BodyError`."""
    if source is None and raw_range is None:
        return None, None, None
    if source is None or raw_range is None:
        raise BodyError("X-Logbridge-Source and X-Logbridge-Range go together: send both or neither")
    start_text, sep, end_text = raw_range.strip().partition(b"-")
    if not sep or not _is_offset(start_text) or not _is_offset(end_text):
        raise BodyError(
            "X-Logbridge-Range must be 'start-end': two byte offsets in ASCII digits below 2^63, "
            f"got {raw_range.decode('latin-1')!r}"
        )
    start, end = int(start_text), int(end_text)
    if start > end:
        raise BodyError(f"X-Logbridge-Range start {start} is after its end {end}; send 'start-end'")
    return source, start, end


def _is_offset(text: bytes) -> bool:
    return (
        0 < len(text) <= _MAX_OFFSET_DIGITS
        and all(0x30 <= c <= 0x39 for c in text)
        and int(text) <= _MAX_OFFSET
    )


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` (the rest is not buffered).

    Raises `BodyCut` when the connection ends first: the server only says ``more_body: False``
    once the body reached its ``Content-Length`` or its last chunk, so a disconnect before that
    is a body cut short — never a body to ingest."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyCut()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Any, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, orjson.dumps(payload), b"application/json", extra)


async def _send(
    send: Any,
    status: int,
    payload: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
