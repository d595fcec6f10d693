"""HTTP for the operator page: ``/ui`` (the page and its files) and ``/api/stats``, ``/api/recent``.

The page's files are read once from the package at start; only their names are served, so no
path reaches the disk. Every answer forbids caching and framing, and the page's policy allows
scripts and styles from this collector only (no inline code, nothing from another site).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson

from ..app import _send as send_body  # one way to answer, the API's
from .access import UiAccess
from .api import UiApi

Send = Callable[[dict[str, Any]], Awaitable[None]]
AuditFailure = Callable[[str, str, "str | None", str], None]

STATIC = {
    "index.html": b"text/html; charset=utf-8",
    "app.js": b"text/javascript; charset=utf-8",
    "style.css": b"text/css; charset=utf-8",
    "favicon.svg": b"image/svg+xml",
}
MAX_QUERY_BYTES = 4096
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]
_SIGN_IN = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>logbridge - sign in</title>
<link rel="icon" href="ui/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="ui/style.css"></head>
<body><main class="signin"><h1>logbridge operator page</h1>
<p>This collector needs a token to show its page. Open <code>/ui?token=YOUR_TOKEN</code> once:
the collector checks it and keeps you signed in with a cookie for 12 hours (or until it restarts).</p>
<form method="get" action="ui"><label>Token <input type="password" name="token" autocomplete="off"></label>
<button type="submit">Sign in</button></form></main></body></html>
"""


class OperatorUi:
    """An ASGI handler for the paths under ``/ui`` and ``/api/`` (`CollectorApp` hands them over)."""

    def __init__(self, api: UiApi, access: UiAccess, audit_failure: AuditFailure):
        self.api = api
        self.access = access
        self.audit_failure = audit_failure
        folder = resources.files(__package__).joinpath("static")
        self.files = {name: folder.joinpath(name).read_bytes() for name in STATIC}

    @staticmethod
    def handles(path: str) -> bool:
        return path == "/ui" or path.startswith("/ui/") or path.startswith("/api/")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        path = scope["path"]
        if scope["method"] != "GET":
            await _json(send, 405, {"error": "the operator page is read-only: use GET"}, [(b"allow", b"GET")])
            return
        if path.startswith("/ui/"):
            name = path[len("/ui/") :]
            if name in STATIC and name != "index.html":  # the page's files hold no data: no token
                await _send(send, 200, self.files[name], STATIC[name])
            elif name == "":
                await _send(send, 308, b"", b"text/plain", [(b"location", b"../ui")])
            else:
                await _json(send, 404, {"error": f"no such file {path}; the page is at /ui"})
            return
        raw_query = scope.get("query_string", b"")
        if len(raw_query) > MAX_QUERY_BYTES:
            await _json(send, 414, {"error": f"query string over {MAX_QUERY_BYTES} bytes"})
            return
        query = parse_qs(raw_query.decode("latin-1"), keep_blank_values=True)
        headers = dict(scope["headers"])
        client = scope.get("client")
        address = client[0] if client else "unknown"
        if path == "/ui" and "token" in query:
            await self._sign_in(send, query["token"][0], address, headers)
            return
        allowed, reason = self.access.check_request(headers)
        if not allowed:
            self.audit_failure(reason, address, None, path)
            if path == "/ui":
                await _send(send, 401, _SIGN_IN, STATIC["index.html"])
            else:
                await _json(
                    send,
                    401,
                    {"error": "sign in at /ui?token=… first, or send Authorization: Bearer <token>"},
                    [(b"www-authenticate", b'Bearer realm="logbridge"')],
                )
            return
        if path == "/ui":
            await _send(send, 200, self.files["index.html"], STATIC["index.html"])
        elif path == "/api/stats":
            await _json(send, 200, self.api.stats_payload())
        elif path == "/api/recent":
            try:
                payload = self.api.recent_payload(query)
            except ValueError as exc:
                await _json(send, 400, {"error": str(exc)})
                return
            await _json(send, 200, payload)
        else:
            await _json(send, 404, {"error": f"no such path {path}; GET /ui, /api/stats, /api/recent"})

    async def _sign_in(self, send: Send, token: str, address: str, headers: dict[bytes, bytes]) -> None:
        if self.access.open:
            await _send(send, 303, b"", b"text/plain", [(b"location", b"ui")])
            return
        name, reason = self.access.check_token(token)
        if name is None:
            self.audit_failure(reason or "bad-token", address, None, "/ui")
            await _send(send, 401, _SIGN_IN, STATIC["index.html"])
            return
        # "ui", relative: the page's own address without the query (the token leaves the URL bar).
        await _send(
            send,
            303,
            b"",
            b"text/plain",
            [(b"location", b"ui"), (b"set-cookie", self.access.set_cookie(name))],
        )


async def _json(
    send: Send, status: int, payload: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send(send, status, orjson.dumps(payload), b"application/json", extra)


async def _send(
    send: Send, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_body(send, status, body, content_type, [*_SECURITY_HEADERS, *(extra or [])])
