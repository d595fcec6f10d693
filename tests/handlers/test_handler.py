"""EventServerHandler on its own, against the loopback collector of tests/conftest.py, so the
handler's decisions are checked over a real socket and requests can be counted. The real
collector is exercised by tests/integration/test_event_server_handler.py.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from logbridge.collector.local import free_port
from logbridge.handlers import EventServerHandler

pytestmark = pytest.mark.timeout(60)

# Short waits everywhere: a test waits on conditions, these only bound how long a retry sleeps.
FAST: dict[str, Any] = {"linger": "20ms", "backoff_initial": "20ms", "backoff_max": "100ms"}


@pytest.fixture
def handlers() -> Iterator[Callable[..., EventServerHandler]]:
    """``make(url, **options)`` → an EventServerHandler, closed at teardown if the test did not."""
    made: list[EventServerHandler] = []

    def make(url: Any = None, **options: Any) -> EventServerHandler:
        handler = EventServerHandler(url, **{**FAST, **options})
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.close(timeout=1)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)


def record(seq: int, topic: str = "generic", msg: Any = None) -> logging.LogRecord:
    """An audit record as `logbridge.audit.emit` makes it (logger ``dku.audit.<topic>``)."""
    return logging.makeLogRecord(
        {
            "name": f"dku.audit.{topic}",
            "msg": {"msgType": "x", "seq": seq} if msg is None else msg,
            "levelno": logging.INFO,
            "levelname": "INFO",
        }
    )


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["message"]["seq"] for event in events]


def no_answer_url() -> str:
    """A loopback URL nobody listens on: every connection is refused."""
    return f"http://127.0.0.1:{free_port()}/events"


# ---------------------------------------------------------------------------------- delivery


def test_records_arrive_in_order_with_the_protocol_headers(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler]
) -> None:
    handler = handlers(loopback_collector.url, token="s3cret", node="node-a")
    for seq in range(20):
        handler.handle(record(seq))
    assert handler.wait_delivered(5), handler.stats

    assert seqs(loopback_collector.events()) == list(range(20))
    first = loopback_collector.events()[0]
    assert first["logger"] == "dku.audit.generic" and first["severity"] == "INFO"
    assert first["message"] == {"msgType": "x", "seq": 0}
    offset = 0
    for request in loopback_collector.requests:
        headers = request.headers
        assert headers["authorization"] == "Bearer s3cret"
        assert headers["x-logbridge-node"] == "node-a"
        assert headers["content-encoding"] == "gzip"
        assert headers["x-logbridge-source"] == loopback_collector.requests[0].headers["x-logbridge-source"]
        size = sum(len(line) for line in request.lines)
        assert headers["x-logbridge-range"] == f"{offset}-{offset + size}"  # contiguous, from 0
        offset += size
    assert handler.stats.sent_events == 20 and handler.stats.retries == 0


def test_a_collector_that_comes_back_gets_everything_once_in_order(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler]
) -> None:
    loopback_collector.status = 503
    handler = handlers(loopback_collector.url)
    for seq in range(10):
        handler.handle(record(seq))
    assert not handler.wait_delivered(0.3)
    wait_until(lambda: handler.stats.retries >= 2, "two retries")
    loopback_collector.status = None
    for seq in range(10, 15):
        handler.handle(record(seq))
    assert handler.wait_delivered(5), handler.stats
    assert seqs(loopback_collector.events()) == list(range(15))


# ------------------------------------------------------------------------ several collectors


def test_a_dead_first_collector_the_records_go_to_the_next(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler], caplog: pytest.LogCaptureFixture
) -> None:
    dead = no_answer_url()
    with caplog.at_level(logging.INFO, logger="logbridge"):
        handler = handlers([dead, loopback_collector.url])
        assert handler.stats.collector == dead and handler.url == dead
        for seq in range(20):
            handler.handle(record(seq))
        assert handler.wait_delivered(5), handler.stats
    assert seqs(loopback_collector.events()) == list(range(20))
    stats = handler.stats
    assert (stats.switches, stats.collector, stats.retries) == (1, loopback_collector.url, 1)
    assert handler.url == loopback_collector.url
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"collector {dead}: ConnectError" in warnings[0], warnings
    assert f"switching to {loopback_collector.url}" in warnings[0]


def test_every_collector_down_is_one_warning_naming_each(
    loopback_collectors: Any, handlers: Callable[..., EventServerHandler], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = loopback_collectors(2)
    a.status, b.status = 503, 401
    with caplog.at_level(logging.WARNING, logger="logbridge"):
        handler = handlers(urls=[a.url, b.url])
        handler.handle(record(0))
        wait_until(lambda: handler.stats.retries >= 6, "three rounds of retries")
        a.status = None
        assert handler.wait_delivered(5), handler.stats
    (down,) = [r.getMessage() for r in caplog.records if "no collector available" in r.getMessage()]
    assert f"{a.url}: HTTP 503" in down and f"{b.url}: HTTP 401" in down
    assert seqs(a.events()) == [0] and handler.url == a.url


def test_the_first_collector_gets_the_records_again_after_failback(
    loopback_collectors: Any, handlers: Callable[..., EventServerHandler]
) -> None:
    a, b = loopback_collectors(2)
    a.status = 503
    handler = handlers(urls=f"{a.url}, {b.url}", failback="300ms")  # a comma-separated string too
    assert handler.urls == (a.url, b.url)
    handler.handle(record(0))
    assert handler.wait_delivered(5) and handler.url == b.url
    a.status = None
    seq = 1
    deadline = time.monotonic() + 10
    while not a.events():  # batches go to B until the failback interval is over
        assert time.monotonic() < deadline, "never went back to the first collector"
        handler.handle(record(seq))
        assert handler.wait_delivered(5)
        seq += 1
        time.sleep(0.05)
    assert handler.url == a.url and handler.stats.switches == 2
    assert sorted(seqs(a.events()) + seqs(b.events())) == list(range(seq)), "each record once"


def test_urls_from_dict_config(loopback_collectors: Any, restore_logging: None) -> None:
    import logging.config

    a, b = loopback_collectors(2)
    a.status = 503
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "events": {
                    "class": "logbridge.handlers.EventServerHandler",
                    "urls": [a.url, b.url],
                    "failback": "never",
                    "linger": "10ms",
                }
            },
            "loggers": {"dku.audit.dictconfig": {"handlers": ["events"], "level": "INFO"}},
        }
    )
    (handler,) = logging.getLogger("dku.audit.dictconfig").handlers
    assert isinstance(handler, EventServerHandler)
    assert handler.urls == (a.url, b.url) and handler.failback is None
    logging.getLogger("dku.audit.dictconfig").info({"msgType": "x", "seq": 0})
    assert handler.wait_delivered(5), handler.stats
    assert seqs(b.events()) == [0] and handler.url == b.url


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "http://a/events", "urls": ["http://b/events"]}, "not both"),
        ({}, "url: expected http"),
        ({"urls": []}, "urls: expected at least one"),
        ({"urls": ["http://a/events", "b:8765"]}, "urls: expected http.*'b:8765'"),
        ({"url": ["http://a/events", "http://a/events"]}, "listed twice"),
        ({"url": "http://a/events", "failback": "soon"}, "expected a duration such as 5m, or never"),
    ],
)
def test_bad_urls_are_one_clear_config_error(kwargs: dict[str, Any], message: str) -> None:
    from logbridge.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        EventServerHandler(**kwargs)


# ---------------------------------------------------------------------- spool across restarts


def test_the_spool_keeps_its_order_across_restarts(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler], tmp_path: Path
) -> None:
    """Each process left records behind while the collector was down; the next one sends
    them first, under the same source and contiguous ranges, before its own."""
    spool = tmp_path / "spool"
    loopback_collector.status = 503
    for generation in range(2):
        handler = handlers(loopback_collector.url, spool_dir=spool)
        for seq in range(generation * 10, generation * 10 + 10):
            handler.handle(record(seq))
        wait_until(lambda h=handler: h.stats.queued == 10, "10 records spooled")
        handler.close()
        assert handler.stats.unsent_at_close == (generation + 1) * 10
    assert loopback_collector.lines == []

    loopback_collector.status = None
    last = handlers(loopback_collector.url, spool_dir=spool)
    for seq in range(20, 30):
        last.handle(record(seq))
    assert last.wait_delivered(5), last.stats

    assert seqs(loopback_collector.events()) == list(range(30))
    sources = {r.headers["x-logbridge-source"] for r in loopback_collector.requests}
    assert len(sources) == 1, "one stream across the three processes"
    assert loopback_collector.high_water[sources.pop()] == sum(
        len(line) + 1 for line in loopback_collector.lines
    )


# ---------------------------------------------------------------------------- flush semantics


def test_flush_sends_at_once_and_batching_resumes_after_it(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler]
) -> None:
    # A linger far longer than the test: only a flush or a full batch (50) sends anything.
    handler = handlers(loopback_collector.url, linger="60s", batch_max_events=50)
    handler.handle(record(0))
    handler.flush()
    wait_until(lambda: len(loopback_collector.lines) == 1, "the flushed record")

    # One at a time, each spooled before the next: a sender that no longer lingers would
    # send each as it arrives.
    for seq in range(1, 51):
        handler.handle(record(seq))
        wait_until(lambda n=seq: handler.stats.queued == n + 1, f"record {seq} spooled")
    wait_until(lambda: len(loopback_collector.lines) == 51, "the 50 records after the flush")
    assert [len(r.lines) for r in loopback_collector.requests] == [1, 50], "the 50 records went as one batch"
    assert seqs(loopback_collector.events()) == list(range(51))


class SpoolerHold:
    """Holds the handler's spooler thread right after it takes the last record off the queue,
    i.e. with the record in hand, in neither the queue nor the spool.

    That state lasts a few bytecodes in real life; a profile hook (`threading.setprofile`, for
    the threads the handler starts) stops the thread there once, until `release`, so a test can
    look at the handler from outside in that state every time."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self._release = threading.Event()
        self._armed = True

    def hook(self, frame: Any, event: str, arg: Any) -> None:
        if (
            self._armed
            and event == "c_return"
            and getattr(arg, "__name__", None) == "popleft"
            and threading.current_thread().name == "logbridge-spooler"
            and not arg.__self__  # the queue is empty now: everything is in the spooler's hand
        ):
            self._armed = False
            self.holding.set()
            self._release.wait(10)

    def release(self) -> None:
        self._release.set()


def test_wait_delivered_is_false_while_the_spooler_holds_the_records(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler]
) -> None:
    hold = SpoolerHold()
    threading.setprofile(hold.hook)
    try:
        handler = handlers(loopback_collector.url)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]  # None removes the hook
    try:
        handler.handle(record(0))
        assert hold.holding.wait(5), "the spooler never took the record"
        assert not handler.wait_delivered(0.2), "reported delivered while still in the spooler's hand"
        assert loopback_collector.lines == []
    finally:
        hold.release()
    assert handler.wait_delivered(5), handler.stats
    assert seqs(loopback_collector.events()) == [0]


# ------------------------------------------------------------------------------------- bare


@pytest.mark.parametrize(
    "line",
    [
        "INFO a plain text line",
        "[1, 2]",
        '{"logger": 5, "message": {}}',
        '{"logger": "dku.audit.generic", "message": ' + '{"a": ' * 300 + "1" + "}" * 301,
    ],
    ids=["text", "not-an-object", "logger-not-a-string", "nested-deeper-than-orjson-writes"],
)
def test_bare_a_line_that_is_no_envelope_is_dead_lettered_and_sending_goes_on(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler], tmp_path: Path, line: str
) -> None:
    """``envelope="bare"`` takes the event out of each spooled envelope; what a text formatter
    wrote has none, today or on any retry."""
    handler = handlers(loopback_collector.url, envelope="bare", spool_dir=tmp_path / "spool", linger="60s")
    handler.handle(record(0))
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record(-1, msg=line))
    handler.setFormatter(None)  # back to the handler's own envelope
    for seq in range(1, 4):
        handler.handle(record(seq))
    assert handler.wait_delivered(5), handler.stats

    assert [event["seq"] for event in loopback_collector.events()] == [0, 1, 2, 3]
    assert handler.stats.dead_lettered == 1 and handler.stats.sent_events == 4
    (slot,) = (tmp_path / "spool").iterdir()
    (kept,) = (slot / "dead-letter").glob("*.ndjson")
    assert kept.read_text() == line + "\n"
    note = orjson.loads(kept.with_suffix(".json").read_bytes())
    assert "envelope" in note["reason"] and note["lines"] == 1


# -------------------------------------------------------------------------------------- fork

FORKING_SCRIPT = """
import json, logging, os, sys, threading
from logbridge.handlers import EventServerHandler

url, spool, reports = sys.argv[1:]

def record(seq):
    return logging.makeLogRecord(
        {"name": "dku.audit.generic", "msg": {"msgType": "x", "seq": seq}, "levelno": 20, "levelname": "INFO"}
    )

def state():
    threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("logbridge-"))
    return {"threads": threads, "slots": sorted(os.listdir(spool))}

handler = EventServerHandler(url, spool_dir=spool, linger="20ms")
handler.handle(record(0))
assert handler.wait_delivered(10)
for logs in (False, True):  # one child at a time: slots are taken in a known order
    pid = os.fork()
    if pid == 0:
        report = {"before": state()}
        if logs:
            handler.handle(record(100))
            report["delivered"] = handler.wait_delivered(10)
            report["after"] = state()
        handler.close()
        with open(os.path.join(reports, f"{logs}.json"), "w") as f:
            json.dump(report, f)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
handler.handle(record(1))
assert handler.wait_delivered(10)
handler.close()
"""


def test_a_forked_child_starts_its_threads_and_takes_a_spool_slot_only_once_it_logs(
    loopback_collector: Any, tmp_path: Path
) -> None:
    """gunicorn ``--preload`` or a multiprocessing pool: the handler is configured before the
    fork, and most children may never log an audit event."""
    spool, reports = tmp_path / "spool", tmp_path / "reports"
    reports.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", FORKING_SCRIPT, loopback_collector.url, str(spool), str(reports)],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()

    silent = orjson.loads((reports / "False.json").read_bytes())
    assert silent == {"before": {"threads": [], "slots": ["0"]}}, "a child that never logs starts nothing"
    logging_child = orjson.loads((reports / "True.json").read_bytes())
    assert logging_child["before"] == {"threads": [], "slots": ["0"]}
    assert logging_child["delivered"] is True
    assert logging_child["after"] == {
        "threads": ["logbridge-sender", "logbridge-spooler"],
        "slots": ["0", "1"],
    }
    by_source: dict[str, list[int]] = {}
    for request in loopback_collector.requests:
        by_source.setdefault(request.headers["x-logbridge-source"], []).extend(
            orjson.loads(line)["message"]["seq"] for line in request.lines
        )
    assert sorted(by_source.values()) == [[0, 1], [100]], "the child has a stream of its own"


FAILING_CHILD_SCRIPT = """
import json, logging, os, sys
from logbridge.handlers import EventServerHandler

url, spool, report = sys.argv[1:]
root = logging.getLogger()
root.setLevel(logging.INFO)
handler = EventServerHandler(url, spool_dir=spool, default_topic="app")
root.addHandler(handler)  # its own error about the failed start reaches it too
root.addHandler(logging.StreamHandler())
pid = os.fork()
if pid == 0:
    os.rename(spool, spool + "-parent")
    open(spool, "w").close()  # a file where the spool directory was: no slot can be taken
    logging.getLogger("app").info("first")
    logging.getLogger("app").info("second")
    with open(report, "w") as f:
        json.dump({"delivered": handler.wait_delivered(1), "repr": repr(handler)}, f)
    handler.close()
    os._exit(0)
_, status = os.waitpid(pid, 0)
raise SystemExit(status)
"""


def test_a_forked_child_that_cannot_start_says_so_once_and_drops_its_records(
    loopback_collector: Any, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FAILING_CHILD_SCRIPT,
            loopback_collector.url,
            str(tmp_path / "spool"),
            str(report),
        ],
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert orjson.loads(report.read_bytes()) == {
        "delivered": False,
        "repr": f"<EventServerHandler {loopback_collector.url} spool=not started (NOTSET)>",
    }
    assert done.stderr.decode().count("could not start in the forked process") == 1
    assert loopback_collector.requests == []


# ------------------------------------------------------------------ shutdown, collector down


def test_close_with_the_collector_down_keeps_the_spool_for_the_next_start(
    loopback_collector: Any,
    handlers: Callable[..., EventServerHandler],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = tmp_path / "spool"
    handler = handlers(no_answer_url(), spool_dir=spool, close_timeout="30s")
    for seq in range(10):
        handler.handle(record(seq))
    wait_until(lambda: handler.stats.queued == 10 and handler.stats.retries >= 1, "10 spooled, a retry")
    with caplog.at_level(logging.WARNING, logger="logbridge.handlers"):
        started = time.monotonic()
        handler.close()
        # The lines are safe on disk: nothing to gain from retrying until close_timeout.
        assert time.monotonic() - started < 5
    assert handler.stats.unsent_at_close == 10 and handler.stats.sent_events == 0
    assert "10 audit events not yet delivered" in caplog.text

    next_start = handlers(loopback_collector.url, spool_dir=spool)
    assert next_start.wait_delivered(5), next_start.stats
    assert seqs(loopback_collector.events()) == list(range(10))


def test_close_with_the_collector_refusing_and_no_spool_dir_gives_up_at_close_timeout(
    loopback_collector: Any, handlers: Callable[..., EventServerHandler], caplog: pytest.LogCaptureFixture
) -> None:
    loopback_collector.status = 503
    handler = handlers(loopback_collector.url, close_timeout="300ms")
    for seq in range(10):
        handler.handle(record(seq))
    wait_until(lambda: handler.stats.retries >= 1, "a retry")
    with caplog.at_level(logging.ERROR, logger="logbridge.handlers"):
        started = time.monotonic()
        handler.close()
        took = time.monotonic() - started
    assert 0.2 < took < 3, f"close took {took:.2f}s with close_timeout 300ms"
    assert handler.stats.unsent_at_close == 10
    assert "10 audit events could not be delivered" in caplog.text and "are lost" in caplog.text
    assert loopback_collector.lines == []


def test_close_with_a_collector_that_never_answers_leaves_the_sender_behind(
    handlers: Callable[..., EventServerHandler], caplog: pytest.LogCaptureFixture
) -> None:
    """Connections are accepted (by the kernel) and the request is sent; no answer comes."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/events"
        handler = handlers(url, timeout="30s", close_timeout="300ms")
        handler.handle(record(0))
        handler.flush()
        with caplog.at_level(logging.WARNING, logger="logbridge.handlers"):
            started = time.monotonic()
            handler.close()
            took = time.monotonic() - started
        assert took < 3, f"close took {took:.2f}s with close_timeout 300ms"
        assert "still sending" in caplog.text
    # The listening socket is gone, the connection reset: the sender left behind stops, and
    # does not try again, its close deadline being past.
    wait_until(lambda: handler.stats.unsent_at_close == 1, "the sender to stop")
    assert handler.stats.retries == 1
