"""Who may open the operator page: a token, presented once, then a signed cookie.

A browser cannot easily send ``Authorization: Bearer``, so ``/ui?token=…`` checks the token (the
collector's `TokenAuth`: constant time, every token compared) and answers with a cookie and a
redirect to ``/ui``, which takes the token out of the address bar and the history. The cookie
holds no token: the token's *name*, an expiry, and an HMAC of both under a key made at start, so
a restart signs everyone out and nothing on disk can forge one. Scripts may send the bearer
header to ``/api/*`` instead. With no token configured at all, the page is open, as the API is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from ..auth import TokenAuth

COOKIE = "logbridge_ui"
SESSION_SECONDS = 12 * 3600


class UiAccess:
    def __init__(self, tokens: dict[str, str], *, secure_cookie: bool):
        self.auth = TokenAuth(tokens)
        self.secure_cookie = secure_cookie
        self._key = secrets.token_bytes(32)

    @property
    def open(self) -> bool:
        return not self.auth.enabled

    def check_token(self, token: str) -> tuple[str | None, str]:
        """(token name or None, failure reason) for a token typed in ``?token=``."""
        ok, name, reason = self.auth.check(b"Bearer " + token.encode("utf-8", "replace"))
        return (name if ok else None), reason

    def check_request(self, headers: dict[bytes, bytes]) -> tuple[bool, str]:
        """(allowed, failure reason) for a request: its bearer header, or else its cookie."""
        if self.open:
            return True, ""
        authorization = headers.get(b"authorization")
        if authorization:
            ok, _, reason = self.auth.check(authorization)
            return ok, reason
        value = _cookie(headers.get(b"cookie"))
        if value is None:
            return False, "missing-token"
        return (True, "") if self._valid(value) else (False, "bad-session")

    def set_cookie(self, name: str) -> bytes:
        """The ``Set-Cookie`` header value signing in the holder of token ``name``."""
        expires = int(time.time()) + SESSION_SECONDS
        value = f"{_b64(name.encode())}.{expires}.{self._sign(name, expires)}"
        attributes = f"; Path=/; Max-Age={SESSION_SECONDS}; HttpOnly; SameSite=Strict"
        if self.secure_cookie:
            attributes += "; Secure"
        return f"{COOKIE}={value}{attributes}".encode("ascii")

    def _sign(self, name: str, expires: int) -> str:
        return hmac.new(self._key, f"{name}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _valid(self, value: str) -> bool:
        parts = value.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 12:
            return False
        try:
            name = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        expires = int(parts[1])
        return expires > time.time() and hmac.compare_digest(parts[2], self._sign(name, expires))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _cookie(header: bytes | None) -> str | None:
    """Our cookie's value in a ``Cookie`` header, whatever else it holds (split by hand: the
    stdlib parser gives up on the whole header at another site's malformed cookie)."""
    if not header or len(header) > 8192:
        return None
    for part in header.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value.strip().strip('"')
    return None
