"""The shipper's loop over real files and a real socket (the small collector of conftest.py).

Each test writes sequence-numbered log4j envelopes and checks that the collector received every
sequence number exactly once, whatever happened to the files in between.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from _polling import wait_for

from logbridge.shipper.checkpoint import CheckpointStore
from logbridge.shipper.engine import Shipper, StateDirBusy
from logbridge.shipper.tail import OVERSIZED_MSG_TYPE, text_events

from .seqlines import assert_exactly_once, line, seqs, write

pytestmark = pytest.mark.timeout(60)


@contextmanager
def running(cfg: Any) -> Iterator[Shipper]:
    shipper = Shipper(cfg)
    thread = threading.Thread(target=shipper.run, daemon=True)
    thread.start()
    try:
        yield shipper
    finally:
        shipper.stop.set()
        shipper.wake.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "shipper did not stop"


def test_once_ships_the_backlog_exactly_once_and_resumes(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    write(logs / "a.log", range(0, 700))
    write(logs / "b.log", range(700, 1000))
    cfg = make_config()
    totals = Shipper(cfg).run(once=True)
    assert totals.lines == 1000
    assert_exactly_once(loopback_collector, 1000)
    sent = len(loopback_collector.requests)
    Shipper(cfg).run(once=True)  # nothing new: nothing sent
    assert len(loopback_collector.requests) == sent
    write(logs / "a.log", range(1000, 1200))
    Shipper(cfg).run(once=True)
    assert_exactly_once(loopback_collector, 1200)
    # Every request names a source and a contiguous byte range of it.
    by_source: dict[str, list[tuple[int, int]]] = {}
    for r in loopback_collector.requests:
        start, end = (int(x) for x in r.headers["x-logbridge-range"].split("-"))
        by_source.setdefault(r.headers["x-logbridge-source"], []).append((start, end))
    assert len(by_source) == 2
    for ranges in by_source.values():
        assert ranges[0][0] == 0
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))


def test_batches_respect_events_and_bytes(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    write(tmp_path / "logs" / "a.log", range(1000))
    Shipper(make_config(batch={"max_events": 100, "max_bytes": "8KiB", "linger": "10ms"})).run(once=True)
    for r in loopback_collector.requests:
        assert r.body.count(b"\n") <= 100
        assert len(r.body) <= 8 * 1024
        assert r.headers["content-encoding"] == "gzip"
    assert_exactly_once(loopback_collector, 1000)


def test_rename_rotation_is_followed_and_backups_not_reshipped(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "audit.log*")}])
    active = logs / "audit.log"
    write(active, range(0, 200))
    with running(cfg):
        wait_for(lambda: len(seqs(loopback_collector)) == 200, what="first 200 lines")
        n = 200
        for rotation in range(5):
            with open(active, "ab") as app:  # the application keeps its descriptor
                for backup in range(rotation, 0, -1):
                    os.rename(logs / f"audit.log.{backup}", logs / f"audit.log.{backup + 1}")
                os.rename(active, logs / "audit.log.1")
                app.write(b"".join(line(s) for s in range(n, n + 50)))  # lands in the renamed file
            n += 50
            write(active, range(n, n + 100))
            n += 100
        wait_for(lambda: len(seqs(loopback_collector)) >= n, what=f"{n} lines")
        time.sleep(0.3)  # a rescan or two: backups must not be shipped again
    assert_exactly_once(loopback_collector, n)


def test_copytruncate_ships_the_unread_part_from_the_copy(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    active = logs / "app.log"
    write(active, range(0, 300))
    Shipper(cfg).run(once=True)
    assert_exactly_once(loopback_collector, 300)
    # While the shipper is down: more lines, then logrotate's copytruncate, then new lines.
    write(active, range(300, 400))
    (logs / "app.log.1").write_bytes(active.read_bytes())
    with open(active, "r+b") as fh:
        fh.truncate(0)
    write(active, range(400, 450))
    Shipper(cfg).run(once=True)
    assert_exactly_once(loopback_collector, 450)


def test_copytruncate_while_running(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    active = logs / "app.log"
    write(active, range(0, 100))
    with running(cfg):
        wait_for(lambda: len(seqs(loopback_collector)) == 100, what="first lines")
        # The collector stalls; meanwhile lines are written, copied, and the file truncated.
        loopback_collector.script.extend([(503, {"Retry-After": "0"}, b"busy")] * 5)
        write(active, range(100, 400))
        time.sleep(0.05)
        (logs / "app.log.1").write_bytes(active.read_bytes())
        with open(active, "r+b") as fh:
            fh.truncate(0)
        write(active, range(400, 500))
        wait_for(lambda: len(seqs(loopback_collector)) >= 500, what="500 lines")
        time.sleep(0.3)
    assert_exactly_once(loopback_collector, 500)


def test_replaced_file_on_the_same_inode_is_not_resumed_at_a_stale_offset(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config()
    write(logs / "a.log", range(0, 500))
    Shipper(cfg).run(once=True)
    store = CheckpointStore(cfg.state_dir)
    [entry] = store.load().values()
    assert entry.offset == (logs / "a.log").stat().st_size
    # Same path, same inode, different bytes (what inode reuse looks like): rewrite in place.
    with open(logs / "a.log", "r+b") as fh:
        fh.truncate(0)
        fh.write(b"".join(line(s) for s in range(500, 2000)))
    assert (logs / "a.log").stat().st_ino == entry.ino
    Shipper(cfg).run(once=True)
    assert_exactly_once(loopback_collector, 2000)


def test_inode_reuse_after_delete(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    logs = tmp_path / "logs"
    cfg = make_config()
    write(logs / "a.log", range(0, 800))
    Shipper(cfg).run(once=True)
    old = (logs / "a.log").stat().st_ino
    os.unlink(logs / "a.log")
    write(logs / "b.log", range(800, 850))  # the file system may hand out the same inode
    Shipper(cfg).run(once=True)
    assert_exactly_once(loopback_collector, 850)
    if (logs / "b.log").stat().st_ino != old:
        pytest.skip("the file system did not reuse the inode (the in-place test covers validation)")


def test_partial_last_line_waits_for_its_newline(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 10))
    last = line(10)
    with open(active, "ab") as fh:
        fh.write(last[:30])
    with running(make_config(partial_line_timeout="100ms")):
        wait_for(lambda: len(seqs(loopback_collector)) == 10, what="10 complete lines")
        time.sleep(0.4)  # past the timeout, but the file is live: the half line is held
        assert len(loopback_collector.lines) == 10
        with open(active, "ab") as fh:
            fh.write(last[30:])
        wait_for(lambda: len(seqs(loopback_collector)) == 11, what="the completed line")
    assert_exactly_once(loopback_collector, 11)


def test_partial_last_line_is_shipped_as_is_at_close(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 10))
    with open(active, "ab") as fh:
        fh.write(b'{"half": "a line that never got its newline"')
    Shipper(make_config()).run(once=True)
    assert loopback_collector.lines[-1] == b'{"half": "a line that never got its newline"'
    assert_exactly_once(loopback_collector, 10)


def test_oversized_line_becomes_a_dead_letter_marker(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 50))
    big = line(50, pad=200_000)
    with open(active, "ab") as fh:
        fh.write(big)
    write(active, range(51, 100))
    totals = Shipper(make_config(max_line_bytes="100KiB")).run(once=True)
    assert totals.oversized == 1
    markers = [e for e in loopback_collector.events() if e.get("msgType") == OVERSIZED_MSG_TYPE]
    assert len(markers) == 1
    assert markers[0]["bytes"] == len(big) - 1 and "topic" not in markers[0]
    marker_request = next(r for r in loopback_collector.requests if OVERSIZED_MSG_TYPE.encode() in r.body)
    assert "x-audit-topic" not in marker_request.headers  # so the collector dead-letters it
    got = seqs(loopback_collector)
    assert set(got) == set(range(100)) - {50} and max(got.values()) == 1


def test_long_line_below_the_limit_is_shipped_alone(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 5))
    with open(active, "ab") as fh:
        fh.write(line(5, pad=300_000))  # longer than a batch window, shorter than max_line_bytes
    write(active, range(6, 10))
    Shipper(make_config()).run(once=True)
    assert_exactly_once(loopback_collector, 10)


def test_refused_batch_goes_to_the_dead_letter_and_shipping_continues(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    write(tmp_path / "logs" / "a.log", range(0, 300))
    loopback_collector.script.append((400, {}, b'{"error":"no"}'))
    cfg = make_config()
    totals = Shipper(cfg).run(once=True)
    assert totals.dead_lettered_lines == 100
    [data_file] = totals.dead_letter_files
    dead = [orjson.loads(x)["message"]["seq"] for x in Path(data_file).read_bytes().splitlines()]
    meta = orjson.loads(Path(data_file).with_suffix(".json").read_bytes())
    assert meta["status"] == 400 and meta["response"] == '{"error":"no"}' and meta["lines"] == 100
    assert sorted(dead + list(seqs(loopback_collector))) == list(range(300))


def test_retries_5xx_429_and_network_errors(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    write(tmp_path / "logs" / "a.log", range(0, 150))
    loopback_collector.script.extend(
        [(503, {"Retry-After": "0"}, b""), (429, {}, b""), (500, {}, b""), (401, {}, b"")]
    )
    cfg = make_config()
    shipper = Shipper(cfg)
    shipper.run(once=True)
    assert shipper.forwarder.retries == 4
    assert_exactly_once(loopback_collector, 150)


def test_collector_unreachable_then_back(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write(tmp_path / "logs" / "a.log", range(0, 50))
    cfg = make_config(
        collector={"url": f"http://127.0.0.1:{port}/events", "retry": {"initial": "10ms", "max": "20ms"}}
    )
    shipper = Shipper(cfg)
    thread = threading.Thread(target=shipper.run, kwargs={"once": True}, daemon=True)
    thread.start()
    wait_for(lambda: shipper.forwarder.retries >= 3, what="retries")
    shipper.stop.set()
    thread.join(timeout=10)
    assert CheckpointStore(cfg.state_dir).load().popitem()[1].offset == 0  # nothing acknowledged


def test_restart_resends_the_in_flight_range_with_the_same_boundaries(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 30))  # a short batch: its end depends on what was there
    loopback_collector.script.extend([(503, {"Retry-After": "0"}, b"")] * 1000)
    cfg = make_config()
    shipper = Shipper(cfg)
    thread = threading.Thread(target=shipper.run, kwargs={"once": True}, daemon=True)
    thread.start()
    wait_for(lambda: len(loopback_collector.requests) >= 2, what="a retried request")
    shipper.stop.set()
    thread.join(timeout=10)
    first_range = loopback_collector.requests[0].headers["x-logbridge-range"]
    [entry] = CheckpointStore(cfg.state_dir).load().values()
    assert entry.offset == 0 and f"0-{entry.inflight}" == first_range
    loopback_collector.script.clear()
    write(active, range(30, 60))  # more data: without the checkpoint the cut would differ
    loopback_collector.requests.clear()
    Shipper(cfg).run(once=True)
    assert loopback_collector.requests[0].headers["x-logbridge-range"] == first_range
    assert_exactly_once(loopback_collector, 60)


def test_lost_checkpoint_and_new_batch_sizes_store_nothing_twice(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    write(tmp_path / "logs" / "a.log", range(0, 1000))
    Shipper(make_config()).run(once=True)
    os.unlink(tmp_path / "state" / "checkpoints.json")
    # Different cuts: the collector answers duplicates and 409s, and the shipper follows them.
    Shipper(make_config(batch={"max_events": 70, "max_bytes": "64KiB", "linger": "10ms"})).run(once=True)
    assert_exactly_once(loopback_collector, 1000)


def test_text_inputs_ship_bare_events_with_topic_and_routing_key(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    (tmp_path / "logs" / "app.txt").write_bytes(b"first line\r\n\nsecond \xff line\n")
    cfg = make_config(
        inputs=[
            {
                "path": str(tmp_path / "logs" / "*.txt"),
                "format": "text",
                "topic": "generic",
                "routing_key": "svc",
            }
        ]
    )
    Shipper(cfg).run(once=True)
    assert loopback_collector.events() == [{"message": "first line"}, {"message": "second \ufffd line"}]
    headers = loopback_collector.requests[0].headers
    assert headers["x-audit-topic"] == "generic" and headers["x-audit-routing-key"] == "svc"


def test_a_413_splits_the_batch_and_only_a_line_too_large_is_dead_lettered(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    """Through the client's split: each half goes under its own sub-range of the file, so the
    collector's mark ends at the file's end; a text input's halves get theirs from line ends."""
    loopback_collector.max_body_bytes = 1000
    log4j = tmp_path / "logs" / "a.log"
    write(log4j, range(0, 20))
    write(log4j, range(20, 21), pad=2000)  # alone still over the limit
    write(log4j, range(21, 40))
    text = tmp_path / "logs" / "b.txt"
    text.write_bytes(b"".join(b"text line %d\n\n" % n for n in range(200)))
    cfg = make_config(
        inputs=[
            {"path": str(tmp_path / "logs" / "*.log")},
            {"path": str(tmp_path / "logs" / "*.txt"), "format": "text", "topic": "generic"},
        ]
    )
    totals = Shipper(cfg).run(once=True)
    assert totals.dead_lettered_lines == 1
    assert sorted(seqs(loopback_collector)) == [n for n in range(40) if n != 20]
    texts = [e["message"] for e in loopback_collector.events() if isinstance(e.get("message"), str)]
    assert texts == [f"text line {n}" for n in range(200)]
    assert sorted(loopback_collector.high_water.values()) == sorted(
        [log4j.stat().st_size, text.stat().st_size]
    )
    data = text.read_bytes()
    text_requests = [r for r in loopback_collector.requests if r.headers.get("x-audit-topic") == "generic"]
    assert len(text_requests) > 4, "the text batches were split"
    for request in text_requests:  # each half's range holds exactly the lines of its body
        start, end = (int(x) for x in request.headers["x-logbridge-range"].split("-"))
        assert text_events(data[start:end], start)[0] == request.body


def test_read_from_end_skips_what_was_there_at_first_start(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 100))
    cfg = make_config(inputs=[{"path": str(tmp_path / "logs" / "*.log"), "read_from": "end"}])
    Shipper(cfg).run(once=True)
    assert loopback_collector.lines == []
    write(active, range(100, 150))
    Shipper(cfg).run(once=True)
    assert set(seqs(loopback_collector)) == set(range(100, 150))


def test_symlink_and_target_are_one_file(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    real = tmp_path / "real.log"
    write(real, range(0, 100))
    os.symlink(real, tmp_path / "logs" / "link.log")
    os.symlink(real, tmp_path / "logs" / "other.log")
    Shipper(make_config()).run(once=True)
    assert_exactly_once(loopback_collector, 100)


def test_file_deleted_while_open_is_read_to_the_end(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 20))
    with running(make_config()) as shipper:
        wait_for(lambda: len(seqs(loopback_collector)) == 20, what="20 lines")
        loopback_collector.script.extend([(503, {"Retry-After": "0"}, b"")] * 3)
        write(active, range(20, 400))
        wait_for(lambda: len(loopback_collector.requests) >= 3, what="the stall")
        os.unlink(active)
        wait_for(lambda: len(seqs(loopback_collector)) == 400, what="the deleted file's lines")
        wait_for(lambda: not shipper.tails, what="the file closed")
    assert_exactly_once(loopback_collector, 400)


def test_two_shippers_cannot_share_a_state_dir(make_config: Any) -> None:
    cfg = make_config()
    first = Shipper(cfg)
    try:
        with pytest.raises(StateDirBusy, match="state_dir"):
            Shipper(cfg)
    finally:
        first.close()


def test_metrics_count_what_was_shipped_and_refused(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    from prometheus_client import generate_latest

    write(tmp_path / "logs" / "a.log", range(0, 250))
    loopback_collector.script.extend([(503, {"Retry-After": "0"}, b""), (400, {}, b"")])
    shipper = Shipper(make_config())
    shipper.run(once=True)
    text = generate_latest(shipper.metrics.registry).decode()
    assert "logbridge_shipper_lines_total 250.0" in text  # dead-lettered lines are acknowledged too
    assert "logbridge_shipper_dead_lettered_lines_total 100.0" in text
    assert "logbridge_shipper_retries_total 1.0" in text
    assert "logbridge_shipper_lost_bytes_total 0.0" in text


def test_collector_urls_fail_over_and_the_metrics_say_where_batches_go(
    tmp_path: Path, make_config: Any, loopback_collectors: Any
) -> None:
    """The first collector answers 503 to the first batch: that batch and every later one go
    to the second, exactly once; the metrics name the current collector and count the switch."""
    from prometheus_client import generate_latest

    a, b = loopback_collectors(2)
    a.script.append((503, {}, b""))
    write(tmp_path / "logs" / "a.log", range(0, 250))
    cfg = make_config(collector={"urls": [a.url, b.url], "retry": {"initial": "10ms", "max": "20ms"}})
    shipper = Shipper(cfg)
    shipper.run(once=True)
    assert_exactly_once(b, 250)
    assert a.lines == [] and a.request_count() == 1
    assert b.requests[0].headers["x-logbridge-range"] == a.requests[0].headers["x-logbridge-range"]
    text = generate_latest(shipper.metrics.registry).decode()
    assert f'logbridge_shipper_collector{{url="{a.url}"}} 0.0' in text
    assert f'logbridge_shipper_collector{{url="{b.url}"}} 1.0' in text
    assert "logbridge_shipper_collector_switches_total 1.0" in text
    assert f'logbridge_shipper_collector_failures_total{{url="{a.url}"}} 1.0' in text
    assert "logbridge_shipper_retries_total 1.0" in text


def ship_one_batch_then_stop(cfg: Any, loopback_collector: Any) -> int:
    """Run until the collector has taken the first batch and refuses the next, stop, and return
    the bytes left unread (the checkpoint knows the file's size beyond its offset)."""
    loopback_collector.script.extend([(200, {}, b"{}")] + [(503, {"Retry-After": "0"}, b"")] * 1000)
    shipper = Shipper(cfg)
    thread = threading.Thread(target=shipper.run, kwargs={"once": True}, daemon=True)
    thread.start()
    wait_for(lambda: len(loopback_collector.requests) >= 3, what="the first batch and a stall")
    shipper.stop.set()
    thread.join(timeout=10)
    loopback_collector.script.clear()
    [entry] = CheckpointStore(cfg.state_dir).load().values()
    assert 0 < entry.offset < entry.size
    return entry.size - entry.offset


def lost_reports(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    """Log lines at WARNING or above that name ``path`` and say bytes were lost."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and str(path) in r.getMessage() and "lost" in r.getMessage()
    ]


def test_bytes_deleted_before_they_were_read_are_counted_as_lost(
    tmp_path: Path, make_config: Any, loopback_collector: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from prometheus_client import generate_latest

    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 300))
    cfg = make_config()
    unread = ship_one_batch_then_stop(cfg, loopback_collector)
    os.unlink(active)  # while the shipper is down
    again = Shipper(cfg)
    totals = again.run(once=True)
    assert totals.lost_bytes == unread
    assert [f"{unread} bytes" in m for m in lost_reports(caplog, active)] == [True]
    text = generate_latest(again.metrics.registry).decode()
    assert f"logbridge_shipper_lost_bytes_total {float(unread)}" in text
    assert "logbridge_shipper_lost_files_total 1.0" in text


@pytest.mark.parametrize("rewritten", [True, False], ids=["rewritten", "left-empty"])
def test_unread_bytes_of_a_file_truncated_while_the_shipper_was_down_are_counted_as_lost(
    tmp_path: Path,
    make_config: Any,
    loopback_collector: Any,
    caplog: pytest.LogCaptureFixture,
    rewritten: bool,
) -> None:
    # copytruncate while the shipper is down, with a copy the globs do not match: the bytes
    # between the checkpoint and the old end are gone.
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 300))
    cfg = make_config()
    unread = ship_one_batch_then_stop(cfg, loopback_collector)
    os.truncate(active, 0)
    if rewritten:
        write(active, range(1000, 1010))
    totals = Shipper(cfg).run(once=True)
    assert totals.lost_bytes == unread
    assert [f"{unread} bytes" in m for m in lost_reports(caplog, active)] == [True]
    if rewritten:
        assert set(range(1000, 1010)) <= set(seqs(loopback_collector))
    # Counted once: a second run finds nothing more to report.
    caplog.clear()
    assert Shipper(cfg).run(once=True).lost_bytes == 0
    assert not lost_reports(caplog, active)


def test_a_file_empty_at_start_is_shipped_as_soon_as_it_has_a_line(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    active.write_bytes(b"")
    with running(make_config(scan_interval="60s")):  # no periodic rescan to fall back on
        time.sleep(0.2)
        write(active, range(0, 10))
        started = time.monotonic()
        wait_for(lambda: len(seqs(loopback_collector)) == 10, timeout=5, what="the first lines")
        assert time.monotonic() - started < 1.0
        write(active, range(10, 20))
        wait_for(lambda: len(seqs(loopback_collector)) == 20, timeout=5, what="more lines")
    assert_exactly_once(loopback_collector, 20)


def test_stale_checkpoint_entries_expire(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    logs = tmp_path / "logs"
    write(logs / "old.log", range(0, 10))
    write(logs / "new.log", range(10, 20))
    cfg = make_config(checkpoint_ttl="1h")
    Shipper(cfg).run(once=True)
    store = CheckpointStore(cfg.state_dir)
    entries = store.load()
    for entry in entries.values():
        if entry.path.endswith("old.log"):
            entry.seen -= 7200  # last seen two hours ago
    store.save(entries)
    os.unlink(logs / "old.log")
    Shipper(cfg).run(once=True)
    assert [e.path for e in store.load().values()] == [str(logs / "new.log")]


def test_once_does_not_wait_for_empty_files(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    (tmp_path / "logs" / "empty.log").write_bytes(b"")
    write(tmp_path / "logs" / "a.log", range(0, 10))
    started = time.monotonic()
    Shipper(make_config(partial_line_timeout="30s")).run(once=True)
    assert time.monotonic() - started < 5
    assert_exactly_once(loopback_collector, 10)


def test_once_ships_a_lone_unfinished_first_line_after_the_timeout(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    (tmp_path / "logs" / "a.log").write_bytes(b'{"never": "finished"')
    started = time.monotonic()
    Shipper(make_config(partial_line_timeout="300ms")).run(once=True)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert loopback_collector.lines == [b'{"never": "finished"']


def test_files_created_and_deleted_during_an_outage_are_not_lost(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    write(logs / "a.log", range(0, 10))
    with running(
        make_config(collector={"url": loopback_collector.url, "retry": {"initial": "100ms", "max": "100ms"}})
    ):
        wait_for(lambda: len(seqs(loopback_collector)) == 10, what="first lines")
        loopback_collector.script.extend([(503, {}, b"")] * 30)  # ~3 s of outage
        write(logs / "a.log", range(10, 20))
        wait_for(lambda: len(loopback_collector.requests) >= 15, what="the outage")
        write(logs / "b.log", range(20, 30))
        time.sleep(0.4)  # a scan between two retries opens it
        os.unlink(logs / "b.log")
        wait_for(lambda: len(seqs(loopback_collector)) == 30, what="all lines after the outage")
    assert_exactly_once(loopback_collector, 30)


def test_an_in_flight_marker_is_resent_as_a_marker(tmp_path: Path, make_config: Any) -> None:
    from logbridge.shipper.checkpoint import Entry
    from logbridge.shipper.tail import Tail

    path = tmp_path / "logs" / "a.log"
    path.write_bytes(b"y" * 5000)  # a long last line without newline, shipped at close before
    cfg = make_config(max_line_bytes="1KiB")
    fd = os.open(path, os.O_RDONLY)
    try:
        entry = Entry("s", str(path), 0, 0, 10, "h", offset=0, inflight=5000)
        batch = Tail(fd, str(path), entry, cfg.inputs[0], 0.0).next_batch(cfg, 0.0, closing=False)
    finally:
        os.close(fd)
    assert batch is not None and batch.kind == "oversized" and (batch.start, batch.end) == (0, 5000)
    assert orjson.loads(batch.body)["bytes"] == 5000


# ------------------------------------------------------------ files that share their first line

HEADER = b"=== service log started ===\n"


def text_lines(seqs: range) -> bytes:
    return b"".join(b"line %d\n" % s for s in seqs)


def text_seqs(fake: Any) -> Counter[int]:
    return Counter(
        int(e["message"].split()[1]) for e in fake.events() if e.get("message", "").startswith("line ")
    )


def test_same_first_line_rename_rotation(tmp_path: Path, make_config: Any, loopback_collector: Any) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*"), "format": "text", "topic": "generic"}])
    (logs / "app.log").write_bytes(HEADER + text_lines(range(0, 100)))
    with running(cfg):
        wait_for(lambda: len(text_seqs(loopback_collector)) == 100, what="first file")
        os.rename(logs / "app.log", logs / "app.log.1")
        (logs / "app.log").write_bytes(HEADER)  # the new file has only its header at first
        time.sleep(0.3)
        with open(logs / "app.log", "ab") as fh:
            fh.write(text_lines(range(100, 200)))
        wait_for(lambda: len(text_seqs(loopback_collector)) == 200, what="the new file's lines")
    got = text_seqs(loopback_collector)
    assert set(got) == set(range(200)) and max(got.values()) == 1


def test_same_first_line_rewritten_in_place_is_not_resumed(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "*.log"), "format": "text", "topic": "generic"}])
    (logs / "a.log").write_bytes(HEADER + text_lines(range(0, 100)))
    Shipper(cfg).run(once=True)
    with open(logs / "a.log", "r+b") as fh:  # same inode, same first line, other content
        fh.truncate(0)
        fh.write(HEADER + text_lines(range(100, 400)))
    Shipper(cfg).run(once=True)
    got = text_seqs(loopback_collector)
    assert set(got) == set(range(400)) and max(got.values()) == 1


def test_same_first_line_after_the_old_file_is_gone(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "*.log"), "format": "text", "topic": "generic"}])
    (logs / "a.log").write_bytes(HEADER + text_lines(range(0, 100)))
    Shipper(cfg).run(once=True)
    os.unlink(logs / "a.log")
    (logs / "b.log").write_bytes(HEADER + text_lines(range(100, 400)))  # not a copy of a.log
    Shipper(cfg).run(once=True)
    got = text_seqs(loopback_collector)
    assert set(got) == set(range(400)) and max(got.values()) == 1


def test_file_cut_shorter_than_its_checkpoint_becomes_a_new_source(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    active = tmp_path / "logs" / "a.log"
    write(active, range(0, 300))
    cfg = make_config()
    Shipper(cfg).run(once=True)
    keep = len(b"".join(line(s) for s in range(0, 100)))
    os.truncate(active, keep)  # keeps the first 100 lines (and the checked prefix)
    write(active, range(300, 350))
    Shipper(cfg).run(once=True)
    got = seqs(loopback_collector)
    assert set(range(300, 350)) <= set(got)  # the new lines, not taken for stored ranges
    assert len(CheckpointStore(cfg.state_dir).load()) == 2


def test_reused_inode_with_the_same_size_is_still_read(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    logs = tmp_path / "logs"
    write(logs / "a.log", range(100, 200))
    cfg = make_config()
    Shipper(cfg).run(once=True)
    store = CheckpointStore(cfg.state_dir)
    [entry] = store.load().values()
    os.unlink(logs / "a.log")
    write(logs / "b.log", range(200, 300))  # same line lengths: the same size
    st = (logs / "b.log").stat()
    assert st.st_size == entry.size
    # What the checkpoint looks like when b.log got a.log's inode: same key, same size.
    entry.dev, entry.ino = st.st_dev, st.st_ino
    store.save({entry.source: entry})
    Shipper(cfg).run(once=True)
    got = seqs(loopback_collector)
    assert set(got) == set(range(100, 300)) and max(got.values()) == 1


# ------------------------------------------------ copytruncate and rotation racing the shipper


def test_copytruncate_while_a_batch_is_out_keeps_the_copy_recognised(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    """copytruncate (and the writer's next lines) between a batch's read and its ack: the entry's
    check is taken from the bytes that were shipped, not from the emptied and refilled file, so
    the copy is still recognised: it finishes the file and is not shipped again."""
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    active = logs / "app.log"
    write(active, range(0, 300))  # three batches of 100 lines
    handle = loopback_collector.handle
    rotated = threading.Event()

    def rotate_then_answer(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        if not rotated.is_set():  # the first batch is out: its ack waits for this
            rotated.set()
            shutil.copyfile(active, logs / "app.log.1")
            os.truncate(active, 0)
            write(active, range(300, 350))
        return handle(headers, body)

    loopback_collector.handle = rotate_then_answer
    with running(cfg):
        wait_for(lambda: len(seqs(loopback_collector)) >= 350, what="every line")
        time.sleep(0.4)  # scans: the copy must not be shipped again
    assert_exactly_once(loopback_collector, 350)


@pytest.mark.parametrize("original", ["open", "closed"])
def test_a_copy_seen_half_written_is_not_shipped_as_a_new_file(
    tmp_path: Path, make_config: Any, loopback_collector: Any, original: str
) -> None:
    """A scan while ``cp`` is still writing the copy: shorter than the entry's check, so it cannot
    match it, but every byte equals the tailed file's: a copy in progress, not a new file. With
    the original closed (inactive, read to its end) when ``cp`` starts, it is opened for the
    comparison."""
    logs = tmp_path / "logs"
    keys = {"close_inactive": "300ms"} if original == "closed" else {}
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}], **keys)
    active = logs / "app.log"
    write(active, range(0, 100))
    with running(cfg) as shipper:
        wait_for(lambda: len(seqs(loopback_collector)) == 100, what="first lines")
        if original == "closed":
            wait_for(lambda: not shipper.tails, what="the original closed as inactive")
        data = active.read_bytes()
        with open(logs / "app.log.1", "wb") as copy:
            copy.write(data[: len(data) // 2])
            copy.flush()
            time.sleep(0.4)  # scans see the copy half written
            copy.write(data[len(data) // 2 :])
        os.truncate(active, 0)
        write(active, range(100, 150))
        wait_for(lambda: len(seqs(loopback_collector)) >= 150, what="the new lines")
        time.sleep(0.4)
    assert_exactly_once(loopback_collector, 150)


def test_a_file_rewritten_between_its_check_and_the_read_is_not_shipped_under_the_old_source(
    tmp_path: Path, make_config: Any, loopback_collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """copytruncate and new lines (more than the old file had) right before a batch is read:
    the read gets the new file's bytes at the old file's offsets. They are checked after the
    read and not sent; the old file is finished from its copy, the new one shipped from 0."""
    from logbridge.shipper.tail import Tail

    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    active = logs / "app.log"
    write(active, range(0, 100))
    next_batch = Tail.next_batch
    armed = threading.Event()

    def rotate_then_read(self: Tail, cfg: Any, now: float, *, closing: bool) -> Any:
        if armed.is_set() and self.size > self.entry.offset:
            armed.clear()
            shutil.copyfile(active, logs / "app.log.1")
            os.truncate(active, 0)
            write(active, range(250, 550))
        return next_batch(self, cfg, now, closing=closing)

    monkeypatch.setattr(Tail, "next_batch", rotate_then_read)
    with running(cfg):
        wait_for(lambda: len(seqs(loopback_collector)) == 100, what="first lines")
        armed.set()
        write(active, range(100, 250))  # a full batch to send at once (no linger)
        wait_for(lambda: len(seqs(loopback_collector)) >= 550, what="every line")
        time.sleep(0.4)
    assert not armed.is_set()
    assert_exactly_once(loopback_collector, 550)


def test_a_file_born_and_deleted_during_a_round_of_batches_is_read(
    tmp_path: Path, make_config: Any, loopback_collector: Any
) -> None:
    """A round sends one batch per file; behind on many files (a slow collector, a rotation
    storm), it lasts longer than a backup lives. Scans run between its batches, so a file
    created and deleted during one round is opened, and read to the end, all the same."""
    logs = tmp_path / "logs"
    for n in range(5):
        write(logs / f"{n}.log", range(n * 300, n * 300 + 300))  # three batches each
    handle = loopback_collector.handle
    calls = 0

    def slow(headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        nonlocal calls
        calls += 1
        if calls <= 5:  # the first round: one batch of each file
            time.sleep(0.15)
        if calls == 2:
            write(logs / "new.log", range(1500, 1520))
        elif calls == 5:
            os.unlink(logs / "new.log")
        return handle(headers, body)

    loopback_collector.handle = slow
    with running(make_config()):
        wait_for(lambda: len(seqs(loopback_collector)) >= 1520, what="every line")
    assert_exactly_once(loopback_collector, 1520)


def test_a_file_renamed_between_the_scans_stat_and_its_open_is_not_reported_lost(
    tmp_path: Path, make_config: Any, loopback_collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate shifts backups one rename at a time, so a path the scan has just stat'd can be
    missing when it is opened, while its file lives on under the next name. That is not a loss:
    the next scan finds the file (it was reported lost, 8 bytes, in the rotation storm)."""
    logs = tmp_path / "logs"
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    backup = logs / "app.log.1"
    write(backup, range(0, 50))
    real_open = os.open
    renamed = threading.Event()

    def open_after_a_rename(path: Any, flags: int, *args: Any) -> int:
        if str(path) == str(backup) and not renamed.is_set():
            renamed.set()
            os.rename(backup, logs / "app.log.2")  # between the scan's stat and this open
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_after_a_rename)
    with running(cfg) as shipper:
        wait_for(lambda: len(seqs(loopback_collector)) >= 50, what="every line")
        time.sleep(0.3)  # scans after the rename: nothing is reported lost
    assert renamed.is_set()
    assert shipper.totals.lost_bytes == 0 and shipper.totals.lost_files == 0
    assert_exactly_once(loopback_collector, 50)
