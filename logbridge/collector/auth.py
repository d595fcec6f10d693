"""Bearer-token authentication: every configured token is compared, in constant time."""

from __future__ import annotations

import hmac


class TokenAuth:
    def __init__(self, tokens: dict[str, str]):
        # Bytes once, so each request only compares.
        self._tokens = [(name, secret.encode()) for name, secret in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: bytes | None) -> tuple[bool, str | None, str]:
        """(ok, token name, failure reason). The presented token is never returned or logged."""
        if not self._tokens:
            return True, None, ""
        if not authorization:
            return False, None, "missing-token"
        scheme, _, presented = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return False, None, "not-a-bearer-token"
        presented = presented.strip()
        matched = None
        # No early exit: the time taken does not say which token (or how much of one) matched.
        for name, secret in self._tokens:
            if hmac.compare_digest(presented, secret):
                matched = name
        if matched is None:
            return False, None, "bad-token"
        return True, matched, ""
