"""Who may open the operator page (`UiAccess`): a token once, then a signed cookie."""

from __future__ import annotations

import time

import pytest

from logbridge.collector.ui import access as access_mod
from logbridge.collector.ui.access import UiAccess

TOKENS = {"node-a": "secret-a", "ops": "secret-ops"}


def cookie_header(set_cookie: bytes) -> dict[bytes, bytes]:
    return {b"cookie": set_cookie.split(b";")[0]}


def test_a_token_signs_in_its_name_and_the_cookie_holds_no_token() -> None:
    access = UiAccess(TOKENS, secure_cookie=False)
    assert access.check_token("secret-ops") == ("ops", "")
    assert access.check_token("secret-x")[0] is None
    header = access.set_cookie("ops")
    assert b"secret" not in header and b"Secure" not in header
    assert access.check_request(cookie_header(header)) == (True, "")
    assert b"; Secure" in UiAccess(TOKENS, secure_cookie=True).set_cookie("ops")


def test_a_cookie_expires_and_dies_with_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    access = UiAccess(TOKENS, secure_cookie=False)
    header = cookie_header(access.set_cookie("ops"))
    # another process (a restart) has another key
    assert UiAccess(TOKENS, secure_cookie=False).check_request(header) == (False, "bad-session")
    later = time.time() + access_mod.SESSION_SECONDS + 1
    monkeypatch.setattr(access_mod.time, "time", lambda: later)
    assert access.check_request(header) == (False, "bad-session")


@pytest.mark.parametrize(
    "cookie",
    [
        b"logbridge_ui=",
        b"logbridge_ui=a.b.c",
        b"logbridge_ui=%%%.1.x",
        b"logbridge_ui=" + b"9" * 9000,
        b"other=1",
    ],
)
def test_anything_else_is_refused(cookie: bytes) -> None:
    allowed, reason = UiAccess(TOKENS, secure_cookie=False).check_request({b"cookie": cookie})
    assert not allowed and reason in ("bad-session", "missing-token")


def test_a_bearer_header_works_and_no_tokens_means_open() -> None:
    access = UiAccess(TOKENS, secure_cookie=False)
    assert access.check_request({b"authorization": b"Bearer secret-a"}) == (True, "")
    assert access.check_request({b"authorization": b"Bearer nope"}) == (False, "bad-token")
    assert access.check_request({}) == (False, "missing-token")
    assert UiAccess({}, secure_cookie=False).check_request({}) == (True, "")
