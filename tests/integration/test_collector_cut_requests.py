"""Cut, malformed and slow requests to a real collector over raw sockets: DESIGN.md §4.

- A request whose body ends before its ``Content-Length`` or its last chunk (the sender died, the
  connection broke) is discarded whole: nothing stored, no high-water mark moved, so the sender's
  retry of the same range is new, not a duplicate.
- ``X-Logbridge-Range`` is ASCII digits ``start-end``, ``start <= end``, both below 2**63, or 400
  before anything is stored or claimed.
- A client that sends its header or its body too slowly is cut off (``limits.header_timeout``,
  ``limits.body_timeout``); a body without a length is a 411.

Every batch is sequence-numbered so the store can be counted exactly: each event once, none of a
refused or cut request.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SOURCE = "s1"
N_LINES = 7
SLOW_LIMITS = {"header_timeout": "1s", "body_timeout": "1s"}


def event(seq: int) -> bytes:
    """One log4j envelope; its stored line has ``clientEvent == {"msgType": "login", "seq": seq}``."""
    return orjson.dumps(
        {
            "severity": "INFO",
            "logger": "dku.audit.generic",
            "message": {"msgType": "login", "seq": seq},
            "timestamp": "2020-02-19T16:05:02.441+0100",
        }
    )


def ndjson(seqs: Iterable[int]) -> bytes:
    return b"".join(event(seq) + b"\n" for seq in seqs)


BODY = ndjson(range(N_LINES))
REFUSED = ndjson(range(100, 103))  # the body of a request that must leave no trace


def range_headers(rng: str | bytes, source: str = SOURCE) -> dict[str, Any]:
    return {
        "content-type": "application/x-ndjson",
        "x-logbridge-source": source,
        "x-logbridge-range": rng,
    }


def post_in_full(c: Any, rng: str) -> httpx.Response:
    """The sender's retry: the whole body, over httpx (``Content-Length``)."""
    return httpx.post(c.events_url, content=BODY, headers=range_headers(rng), timeout=10)


def all_lines(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [line for lines in files.values() for line in lines]


def stored_seqs(read_local_store: Callable[[Path], Any], root: Path) -> list[int]:
    return sorted(line["clientEvent"]["seq"] for line in all_lines(read_local_store(root)))


def dead_letter_lines(read_local_store: Callable[[Path], Any], c: Any) -> list[dict[str, Any]]:
    return all_lines(read_local_store(c.dead_letter)) if c.dead_letter.is_dir() else []


def assert_stored_exactly_once(c: Any, read_local_store: Callable[[Path], Any]) -> None:
    """After ``c.stop()``: the store holds BODY's events once each, the dead letter nothing."""
    assert stored_seqs(read_local_store, c.store) == list(range(N_LINES))
    assert dead_letter_lines(read_local_store, c) == []


def assert_error_advice(status: int, body: bytes, content_type: str | None, *mentions: str) -> None:
    """A 4xx answer is JSON ``{"error": ...}`` whose text names what to fix."""
    assert content_type is not None and content_type.startswith("application/json"), (status, content_type)
    payload = orjson.loads(body)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str), payload
    error = payload["error"].lower()
    for word in mentions:
        assert word.lower() in error, f"the {status} error should name {word!r}: {payload['error']!r}"


def events_requests_seen(c: Any) -> float:
    """``POST /events`` requests the collector has finished with, whatever their status."""
    text = httpx.get(c.base_url + "/metrics", timeout=5).text
    counts = re.findall(r'^logbridge_requests_total\{[^}]*path="/events"[^}]*\} (\S+)$', text, re.M)
    return sum(float(n) for n in counts)


# ---------------------------------------------------------------------------------- raw sockets


def connect(c: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", c.port), timeout=10)


def request_head(headers: dict[str, str | bytes], *, request_line: str = "POST /events HTTP/1.1") -> bytes:
    lines = [request_line.encode(), b"Host: 127.0.0.1"]
    for name, value in headers.items():
        lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server sends until it closes the connection (FIN or reset).

    Fails if the connection is still open after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server still holds the connection open after {timeout:.1f}s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"the server still holds the connection open after {timeout:.1f}s"
                + (f" (it sent {data[:200]!r})" if data else "")
            ) from None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one HTTP/1.x response (the body per Content-Length)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP response: {raw[:300]!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
    assert match, f"not an HTTP status line: {status_line!r}"
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return int(match.group(1)), headers, rest[:length]


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one response: head, then a Content-Length body (or up to close). Tolerates a reset
    after the response was sent (the server closing with unread bytes in its buffer)."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            if match and len(rest) >= int(match.group(1)):
                return parse_response(data)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no complete response after {timeout:.1f}s, got {data[:300]!r}")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"no complete response after {timeout:.1f}s, got {data[:300]!r}") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return parse_response(data)
        data += chunk


def assert_not_accepted(answer: bytes) -> None:
    """A connection the server gave up on: closed silently, or after a 4xx (408, 400...)."""
    if answer:
        status, _, _ = parse_response(answer)
        assert 400 <= status < 500, f"a cut or stalled request was answered {status}: {answer[:300]!r}"


# -------------------------------------------------------------------------------- cut requests

RANGE = f"0-{len(BODY)}"
CUT_HEADERS: dict[str, str | bytes] = {
    "Content-Type": "application/x-ndjson",
    "X-Logbridge-Source": SOURCE,
    "X-Logbridge-Range": RANGE,
}
HALF = len(BODY) // 2
WHOLE_LINES = ndjson(range(N_LINES - 2))  # ends on a line boundary, short of Content-Length
assert BODY[HALF - 1 : HALF] != b"\n", "the half-body cut must fall inside a line"


def _with_length(body_sent: bytes) -> bytes:
    return request_head({**CUT_HEADERS, "Content-Length": str(len(BODY))}) + body_sent


def _chunks_without_last() -> bytes:
    head = request_head({**CUT_HEADERS, "Transfer-Encoding": "chunked"})
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(line), line) for line in WHOLE_LINES.splitlines(keepends=True))
    return head + chunks  # no terminating b"0\r\n\r\n"


CUTS: dict[str, Callable[[], bytes]] = {
    "headers-then-close": lambda: _with_length(b""),
    "half-body": lambda: _with_length(BODY[:HALF]),
    "whole-lines-short-of-content-length": lambda: _with_length(WHOLE_LINES),
    "chunked-without-last-chunk": _chunks_without_last,
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_cut_request_is_discarded_whole_and_its_retry_is_new(
    cut: str, collector: Callable[..., Any], wait_for: Any, read_local_store: Any
) -> None:
    c = collector()
    with connect(c) as sock:
        sock.sendall(CUTS[cut]())
        # The sender is gone: the server sees the end of the stream mid-body. Half-closing (rather
        # than closing) lets the test see the server give up on the connection in turn.
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock, 10)
    assert_not_accepted(answer)
    # The server is done with the cut request before its retry arrives, so a mark it claimed
    # (the bug) would make the retry a duplicate.
    wait_for(lambda: events_requests_seen(c) >= 1, 10, "the collector to finish with the cut request")

    r = post_in_full(c, RANGE)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": N_LINES, "invalid": 0, "duplicate": False}, (
        "the retry of a cut request's range must be new: the cut request stored or claimed something"
    )
    c.stop()
    assert_stored_exactly_once(c, read_local_store)


# ---------------------------------------------------------------------------------------- ranges

# Checked in this order on one collector, one source each; the numbers past 63 bits come last, so
# that a collector they break cannot be blamed on the cases before them.
BAD_RANGES: dict[str, bytes] = {
    "start-after-end": b"5-3",
    "underscore": b"1_0-20",  # int() takes it
    "plus-sign": b"+1-5",  # int() takes it
    "no-start": b"-5",
    "hex": b"0x1-5",
    "empty": b"",
    "superscript-digits-utf8": "\u00b2-\u00b3".encode(),  # ²-³ sent as UTF-8 bytes
    "superscript-digits-latin1": "\u00b2-\u00b3".encode("latin-1"),  # str.isdigit() yes, int() no
    "end-2**63": b"0-9223372036854775808",
    "end-2**64": b"0-18446744073709551616",
}
REFUSED_BASE = 10_000  # seq numbers of refused bodies start here: none may reach the store


def test_malformed_ranges_are_400_before_anything_is_stored_or_claimed(
    collector: Callable[..., Any], read_local_store: Any
) -> None:
    c = collector()
    problems: list[str] = []
    owner: dict[int, str] = {}  # seq → the case that sent it
    expected: list[int] = []
    with httpx.Client(timeout=10) as client:
        for i, (name, rng) in enumerate(BAD_RANGES.items()):
            case = f"{name} ({rng!r})"
            source = f"{SOURCE}-{name}"
            refused_seqs = range(REFUSED_BASE + 100 * i, REFUSED_BASE + 100 * i + 3)
            good_seqs = range(100 * i, 100 * i + N_LINES)
            owner.update({seq: case for seq in [*refused_seqs, *good_seqs]})
            bad = client.post(c.events_url, content=ndjson(refused_seqs), headers=range_headers(rng, source))
            if bad.status_code != 400:
                problems.append(f"{case}: answered {bad.status_code} {bad.text[:200]!r}, not 400")
            else:
                try:
                    assert_error_advice(
                        400, bad.content, bad.headers.get("content-type"), "X-Logbridge-Range"
                    )
                except AssertionError as exc:
                    problems.append(f"{case}: {exc}")
            # The same source with a valid range: new, so the refused request claimed nothing.
            body = ndjson(good_seqs)
            ok = client.post(c.events_url, content=body, headers=range_headers(f"0-{len(body)}", source))
            wanted = {"accepted": N_LINES, "invalid": 0, "duplicate": False}
            if ok.status_code != 200 or ok.json() != wanted:
                problems.append(
                    f"{case}: then 0-{len(body)} on the same source answered {ok.status_code} "
                    f"{ok.text[:200]!r}, not 200 {wanted}"
                )
            else:
                expected.extend(good_seqs)
    try:
        c.stop()
    except AssertionError as exc:
        problems.append(f"unclean stop: {exc}")
    stored = stored_seqs(read_local_store, c.store)
    leaked = sorted({owner.get(seq, str(seq)) for seq in stored if seq >= REFUSED_BASE})
    if leaked:
        problems.append(f"refused requests reached the store: {leaked}")
    kept = [seq for seq in stored if seq < REFUSED_BASE]
    if kept != sorted(expected):
        problems.append(f"stored {kept}, expected each accepted event once: {sorted(expected)}")
    dead = dead_letter_lines(read_local_store, c)
    if dead:
        problems.append(f"the dead letter holds {len(dead)} lines, e.g. {dead[0]}")
    assert not problems, "\n".join(problems)


def test_range_up_to_2_63_minus_1_is_valid(collector: Callable[..., Any], read_local_store: Any) -> None:
    c = collector()
    top = f"0-{2**63 - 1}"
    r = post_in_full(c, top)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": N_LINES, "invalid": 0, "duplicate": False}
    again = post_in_full(c, top)
    assert again.status_code == 200, again.text
    assert again.json() == {"accepted": 0, "invalid": 0, "duplicate": True}
    c.stop()
    assert_stored_exactly_once(c, read_local_store)


# ------------------------------------------------------------------------- slow and odd clients


def test_half_sent_header_is_cut_off_after_header_timeout(collector: Callable[..., Any]) -> None:
    c = collector(limits=SLOW_LIMITS)
    started = time.monotonic()
    with connect(c) as sock:
        sock.sendall(b"POST /events HTTP/1.1\r\nHost: x\r\n")  # ...and never the rest
        answer = read_until_closed(sock, 5)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, before header_timeout (1s)"
    assert_not_accepted(answer)
    assert c.process is not None and c.process.poll() is None, "the collector died"


def test_stalled_body_is_cut_off_after_body_timeout_and_nothing_is_kept(
    collector: Callable[..., Any], wait_for: Any, read_local_store: Any
) -> None:
    c = collector(limits=SLOW_LIMITS)
    with connect(c) as sock:
        sock.sendall(_with_length(BODY[:100]))  # ...then the client stalls, the connection open
        sent = time.monotonic()
        answer = read_until_closed(sock, 5)
        elapsed = time.monotonic() - sent
    assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, before body_timeout (1s)"
    assert_not_accepted(answer)
    wait_for(lambda: events_requests_seen(c) >= 1, 10, "the collector to finish with the stalled request")

    r = post_in_full(c, RANGE)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": N_LINES, "invalid": 0, "duplicate": False}
    c.stop()
    assert_stored_exactly_once(c, read_local_store)


def test_http10_body_without_content_length_is_411(
    collector: Callable[..., Any], read_local_store: Any
) -> None:
    c = collector()
    head = request_head(
        {"Content-Type": "application/x-ndjson", "X-Logbridge-Source": SOURCE, "X-Logbridge-Range": RANGE},
        request_line="POST /events HTTP/1.0",
    )
    with connect(c) as sock:
        sock.sendall(head + REFUSED)
        sock.shutdown(socket.SHUT_WR)  # an HTTP/1.0 body "ends at the close"
        status, headers, body = read_response(sock, 10)
    assert status == 411, body
    assert_error_advice(status, body, headers.get("content-type"), "Content-Length")

    r = post_in_full(c, RANGE)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": N_LINES, "invalid": 0, "duplicate": False}
    c.stop()
    assert_stored_exactly_once(c, read_local_store)


def test_http11_post_without_content_length_or_chunked_is_411(
    collector: Callable[..., Any], read_local_store: Any
) -> None:
    c = collector()
    with connect(c) as sock:
        sock.sendall(request_head(CUT_HEADERS))  # neither Content-Length nor Transfer-Encoding
        status, headers, body = read_response(sock, 10)
    assert status == 411, body
    assert_error_advice(status, body, headers.get("content-type"), "Content-Length")

    r = post_in_full(c, RANGE)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": N_LINES, "invalid": 0, "duplicate": False}
    c.stop()
    assert_stored_exactly_once(c, read_local_store)
