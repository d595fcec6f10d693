"""CollectorClient with several collector URLs, over real sockets (loopback collectors of
tests/conftest.py; a dead collector is a port nobody listens on): the same batch moves to the
next collector at once, the backoff runs once every collector failed in a round, Retry-After
decides where the next round begins, final answers are final from any collector, a 413 split
keeps its ranges across a switch, and the first URL is tried again after ``failback``."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from logbridge.client import CollectorClient, CollectorTarget
from logbridge.client.failover import Collectors, parse_failback, shown
from logbridge.collector.local import free_port
from logbridge.errors import ConfigError

Make = Callable[[int], list[Any]]


class FakeTime:
    """A clock that moves only when the client sleeps (or a test moves it): waits are recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def _lines(n: int, first: int = 0) -> list[bytes]:
    """``n`` NDJSON lines of exactly 100 bytes each, numbered from ``first``."""
    out = []
    for seq in range(first, first + n):
        head = b'{"seq":%d,"pad":"' % seq
        out.append(head + b"x" * (100 - len(head) - 3) + b'"}\n')
    return out


def _pair(make: Make, **options: Any) -> tuple[CollectorClient, FakeTime, Any, Any]:
    a, b = make(2)
    client, fake = _client([a.url, b.url], **options)
    return client, fake, a, b


def _client(urls: list[str], **options: Any) -> tuple[CollectorClient, FakeTime]:
    fake = FakeTime()
    options = {"retry_initial": 0.1, "retry_max": 0.4, "compression": "none", **options}
    client = CollectorClient(urls, clock=fake.clock, sleep=fake.sleep, wait_slice=1e9, **options)
    return client, fake


def dead_url() -> str:
    """A loopback URL nobody listens on: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}/events"


# --------------------------------------------------------------------------------- failover


def test_a_dead_first_collector_the_same_batch_goes_to_the_next_at_once_and_stays_there(
    loopback_collector: Any,
) -> None:
    seen: list[tuple[str, str]] = []
    dead = dead_url()
    client, fake = _client([dead, loopback_collector.url], on_switch=lambda o, n: seen.append((o, n)))
    body = b"".join(_lines(3))
    assert client.send(body, source="s", start=0, end=300).kind == "stored"
    assert fake.waits == [], "no backoff while another collector is left to try"
    assert (client.url, client.switches, client.retries) == (loopback_collector.url, 1, 1)
    assert seen == [(dead, loopback_collector.url)]
    (request,) = loopback_collector.requests
    assert (request.headers["x-logbridge-source"], request.headers["x-logbridge-range"]) == ("s", "0-300")
    assert request.body == body
    # Sticky: the next batches go straight to the collector that works.
    assert client.send(b"".join(_lines(2, first=3)), source="s", start=300, end=500).kind == "stored"
    assert (client.retries, client.switches, loopback_collector.request_count()) == (1, 1, 2)
    client.close()


@pytest.mark.parametrize("status", [401, 403, 408, 425, 429, 500, 502, 503, 504])
def test_each_retryable_answer_moves_the_same_batch_on(
    loopback_collectors: Make, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    client, fake, a, b = _pair(loopback_collectors, token="s3cret")
    a.status = status
    body = b"".join(_lines(4))
    with caplog.at_level(logging.INFO, logger="logbridge.client"):
        result = client.send(body, source="node/x", start=4000, end=4400, topic="generic")
    assert result.kind == "stored" and fake.waits == [] and client.url == b.url
    (sent_a,), (sent_b,) = a.requests, b.requests
    assert sent_a.body == sent_b.body == body
    for name in ("x-logbridge-source", "x-logbridge-range", "x-audit-topic", "authorization"):
        assert sent_a.headers[name] == sent_b.headers[name], name
    # One line for the switch, naming the collector and what it said; never the token.
    (line,) = [r.getMessage() for r in caplog.records if "switching" in r.getMessage()]
    assert line.startswith(f"collector {a.url}: HTTP {status} ") and f"switching to {b.url}" in line
    assert "range 4000-4400 of node/x" in line
    assert "s3cret" not in caplog.text


def test_a_collector_that_does_not_answer_in_time_is_left_for_the_next(loopback_collector: Any) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/events"
        client, fake = _client([url, loopback_collector.url], timeout=0.3)
        assert client.send(b'{"m":1}\n', source="s", start=0, end=8).kind == "stored"
        assert "Timeout" in client.collectors.problems[0] and client.url == loopback_collector.url
        client.close()


def test_the_backoff_runs_once_every_collector_failed_in_a_round(loopback_collectors: Make) -> None:
    a, b, c = loopback_collectors(3)
    client, fake = _client([a.url, b.url, c.url])
    a.script.extend([(503, {}, b"")] * 3)
    b.script.extend([(502, {}, b"")] * 3)
    c.script.extend([(500, {}, b"")] * 2)
    assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    assert [url for url, _ in a.calls] == [a.url, b.url, c.url] * 2 + [a.url, b.url, c.url]
    assert len(fake.waits) == 2 and all(0 <= w <= 0.4 for w in fake.waits)
    assert {r for _, r in a.calls} == {"0-3"}
    assert client.url == c.url and client.all_failed is False


def test_retry_after_of_each_collector_decides_where_the_next_round_begins(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors)
    a.script.append((503, {"Retry-After": "1"}, b""))
    b.script.append((429, {"Retry-After": "5"}, b""))
    assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    # A asked for 1 s, B for 5 s: the round after waits 1 s and begins with A.
    assert fake.waits == [1.0] and [u for u, _ in a.calls] == [a.url, b.url, a.url]

    dead = dead_url()
    client2, fake2 = _client([a.url, dead, b.url], retry_max=0.4)
    a.script.append((503, {"Retry-After": "2"}, b""))
    b.script.append((503, {}, b""))
    a.calls.clear()
    # A: 2 s; the dead one and B: the backoff (at most 0.4 s): the next round begins after it,
    # with the dead one (round-robin order after B, the last tried, on a tie).
    assert client2.send(b"{}\n", source="t", start=0, end=3).kind == "stored"
    assert len(fake2.waits) == 1 and fake2.waits[0] <= 0.4
    assert [u for u, _ in a.calls] == [a.url, b.url, b.url]
    assert client2.url == b.url and client2.retries == 4 and a.script == []


def test_a_409_from_another_collector_is_honoured(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors)
    a.stop_serving()
    b.high_water["s"] = 150  # B stored this source up to 150 (an earlier batch, another run)
    result = client.send(b"".join(_lines(3)), source="s", start=100, end=400)
    assert (result.kind, result.high_water) == ("high_water", 150)
    assert fake.waits == [] and client.url == b.url


def test_other_answers_are_final_and_not_asked_elsewhere(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors)
    a.script.append((400, {}, b'{"error":"bad"}'))
    result = client.send(b"{}\n", source="s", start=0, end=3)
    assert (result.kind, result.status) == ("rejected", 400)
    assert b.request_count() == 0 and client.switches == 0


def test_413_halves_keep_their_ranges_across_a_switch(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors)
    lines = _lines(8)
    a.script.extend([(413, {}, b'{"error":"too large"}'), (503, {}, b"")])  # then A is left
    result = client.send(b"".join(lines), source="s", start=1000, end=1800)
    assert (result.kind, result.rejected) == ("stored", ())
    assert [r.headers["x-logbridge-range"] for r in a.requests] == ["1000-1800", "1000-1400"]
    assert [r.headers["x-logbridge-range"] for r in b.requests] == ["1000-1400", "1400-1800"]
    assert b.lines == [line.rstrip(b"\n") for line in lines] and b.high_water["s"] == 1800
    assert a.requests[1].body == b.requests[0].body == b"".join(lines[:4])


def test_every_collector_down_then_one_back(
    loopback_collectors: Make, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = loopback_collectors(2)
    failures: list[tuple[str, bool]] = []
    stop = threading.Event()

    def sleep(seconds: float) -> bool:
        if len(failures) >= 6 and b.server is None:
            b.serve_again()
        return stop.is_set()

    client = CollectorClient(
        [a.url, b.url],
        retry_initial=0.001,
        retry_max=0.002,
        retry_log_level=logging.DEBUG,  # as EventServerHandler: its own warning says it once
        sleep=sleep,
        on_retry=lambda: failures.append((client.url, client.all_failed)),
    )
    a.stop_serving()
    b.stop_serving()
    with caplog.at_level(logging.DEBUG, logger="logbridge.client"):
        assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    # on_retry sees the collector that failed, and whether the whole round did.
    # B is back during the third wait: the fourth round fails over from A to B, which stores it.
    assert failures == [(a.url, False), (b.url, True)] * 3 + [(a.url, False)]
    assert client.url == b.url and not client.all_failed
    messages = [r.getMessage() for r in caplog.records]
    assert sum("all 2 collectors failed" in m for m in messages) == 3
    assert any(f"{a.url}: ConnectError" in m for m in messages if "all 2 collectors failed" in m)
    warned = [m for m, r in zip(messages, caplog.records, strict=True) if r.levelno >= logging.WARNING]
    assert sum("switching" in m for m in warned) == 1, "one warning for the failover, not per round"
    client.close()


# --------------------------------------------------------------------------------- failback


def test_failback_to_the_first_collector_after_the_interval(loopback_collectors: Make) -> None:
    seen: list[tuple[str, str]] = []
    client, fake, a, b = _pair(loopback_collectors, failback=10.0, on_switch=lambda o, n: seen.append((o, n)))
    a.script.append((503, {}, b""))
    assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    assert client.url == b.url
    fake.now += 9.9
    assert client.send(b"{}\n", source="s", start=3, end=6).kind == "stored"
    assert client.url == b.url and a.request_count() == 1
    fake.now += 0.1
    assert client.send(b"{}\n", source="s", start=6, end=9).kind == "stored"
    assert client.url == a.url and [r.headers["x-logbridge-range"] for r in a.requests] == ["0-3", "6-9"]
    assert seen == [(a.url, b.url), (b.url, a.url)] and client.switches == 2
    assert fake.waits == []


def test_a_failed_failback_goes_straight_back_and_waits_another_interval(
    loopback_collectors: Make, caplog: pytest.LogCaptureFixture
) -> None:
    client, fake, a, b = _pair(loopback_collectors, failback=10.0)
    a.status = 503
    assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    fake.now += 10
    with caplog.at_level(logging.INFO, logger="logbridge.client"):
        assert client.send(b"{}\n", source="s", start=3, end=6).kind == "stored"
    assert fake.waits == [] and client.url == b.url and a.request_count() == 2
    assert any(f"trying the preferred collector {a.url} again" in r.getMessage() for r in caplog.records)
    assert any(
        f"collector {a.url}: still HTTP 503" in r.getMessage() and f"switching to {b.url}" in r.getMessage()
        for r in caplog.records
    )
    fake.now += 9
    assert client.send(b"{}\n", source="s", start=6, end=9).kind == "stored"
    assert a.request_count() == 2, "the next try of the first collector is a whole interval later"
    fake.now += 1
    a.status = None
    assert client.send(b"{}\n", source="s", start=9, end=12).kind == "stored"
    assert client.url == a.url and client.switches == 4


def test_failback_never_stays_on_the_collector_that_works(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors, failback=None)
    a.script.append((503, {}, b""))
    client.send(b"{}\n", source="s", start=0, end=3)
    fake.now += 1e9
    client.send(b"{}\n", source="s", start=3, end=6)
    assert client.url == b.url and a.request_count() == 1


def test_a_failure_of_the_second_collector_comes_back_to_the_first_at_once(loopback_collectors: Make) -> None:
    client, fake, a, b = _pair(loopback_collectors, failback=None)
    a.script.append((503, {}, b""))
    client.send(b"{}\n", source="s", start=0, end=3)
    b.status = 503
    assert client.send(b"{}\n", source="s", start=3, end=6).kind == "stored"
    assert client.url == a.url and fake.waits == []


# ----------------------------------------------------------------------------------- config


def test_config_url_or_urls() -> None:
    one = CollectorTarget.model_validate({"url": "http://a/events"})
    assert one.endpoints == ("http://a/events",) and one.failback == 300.0
    many = CollectorTarget.model_validate(
        {"urls": ["http://a/events", "https://b/events"], "failback": "30s"}
    )
    assert many.endpoints == ("http://a/events", "https://b/events") and many.failback == 30.0
    assert CollectorTarget.model_validate({"urls": ["http://a"], "failback": "never"}).failback is None
    client = CollectorClient.from_target(many, "node-a")
    assert client.urls == many.endpoints and client.collectors.failback == 30.0
    client.close()


def test_parse_failback_and_shown() -> None:
    assert parse_failback("5m") == 300.0 and parse_failback(None) is None and parse_failback("off") is None
    with pytest.raises(ValueError, match="never"):
        parse_failback("soon")
    assert shown("http://user:pw@host:1/events") == "http://host:1/events"
    assert shown("http://host:1/events") == "http://host:1/events"
    assert Collectors(["http://a", "http://b", "http://c"]).after(1) == [2, 0, 1]
    with pytest.raises(ValueError):
        Collectors([])


def test_a_password_in_a_url_is_not_logged(loopback_collector: Any, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    secret = f"http://user:hunter2@127.0.0.1:{port}/events"
    client, fake = _client([secret, loopback_collector.url])
    with caplog.at_level(logging.INFO, logger="logbridge.client"):
        assert client.send(b"{}\n", source="s", start=0, end=3).kind == "stored"
    assert "hunter2" not in caplog.text and f"127.0.0.1:{port}/events" in caplog.text


def test_a_bad_urls_list_is_a_config_error_naming_the_item() -> None:
    from logbridge.shipper.config import validate_dict

    def problems(collector: dict[str, Any]) -> list[str]:
        with pytest.raises(ConfigError) as info:
            validate_dict({"collector": collector, "inputs": [{"path": "/x"}]})
        return info.value.problems

    assert any(
        p.startswith("collector.urls[1]") and "http://" in p
        for p in problems({"urls": ["http://a", "ftp://b"]})
    )
    assert any("not both" in p for p in problems({"url": "http://a", "urls": ["http://b"]}))
    assert any("set url" in p for p in problems({"token_env": "X"}))
    assert any(p.startswith("collector.urls") for p in problems({"urls": []}))
    assert any("twice" in p for p in problems({"urls": ["http://a", "http://a"]}))
    assert any(p.startswith("collector.failback") for p in problems({"url": "http://a", "failback": "soon"}))
