"""The audit API: structlog → ``dku.audit.<topic>`` records carrying mdc and callTime."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import queue
import threading
import time
from collections.abc import Iterator
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import orjson
import pytest

import logbridge
from logbridge import audit, context
from logbridge.log4j.jsonaudit import JSONAuditFormatter


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[ListHandler]:
    """Every record reaching ``dku.audit`` (not propagated further), then the config restored."""
    parent = logging.getLogger("dku.audit")
    handler = ListHandler()
    saved = (parent.level, parent.propagate)
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    parent.propagate = False
    yield handler
    parent.removeHandler(handler)
    parent.setLevel(saved[0])
    parent.propagate = saved[1]
    context.clear_mdc()


def test_emit_writes_the_event_through_the_topic_logger(captured: ListHandler) -> None:
    audit.emit("generic", "dataset-read-data", authUser="admin", projectKey="P1")
    (record,) = captured.records
    assert record.name == "dku.audit.generic"
    assert record.levelno == logging.INFO
    assert record.msg == {"msgType": "dataset-read-data", "authUser": "admin", "projectKey": "P1"}
    assert list(record.msg)[0] == "msgType"
    assert record.getMessage()  # plain formatters still work


def test_routing_key_becomes_the_event_routing_key(captured: ListHandler) -> None:
    audit.emit("apinode-query", "prediction-query", routing_key="churn-service", rows=3)
    assert captured.records[0].msg == {
        "msgType": "prediction-query",
        "rows": 3,
        "routingKey": "churn-service",
    }


def test_fields_may_be_called_anything(captured: ListHandler) -> None:
    audit.emit("generic", "x", event="e", topic="t", msg_type="m", routing_key=None, level=3)
    assert captured.records[0].msg == {
        "msgType": "x",
        "event": "e",
        "topic": "t",
        "msg_type": "m",
        "level": 3,
    }


def test_context_bound_with_contextvars_is_the_mdc(captured: ListHandler) -> None:
    context.bind_mdc(user="admin", apiCall="/api/a")
    audit.emit("generic", "login")
    context.clear_mdc()
    audit.emit("generic", "logout")
    assert captured.records[0].mdc == {"user": "admin", "apiCall": "/api/a"}
    assert captured.records[1].mdc == {}
    assert "user" not in captured.records[0].msg


def test_call_time_inside_a_request_only(captured: ListHandler) -> None:
    audit.emit("generic", "before")
    with audit.request("/api/projects/get-summary", user="admin") as req:
        time.sleep(0.02)
        audit.emit("generic", "during")
    audit.emit("generic", "after")
    before, during, after = captured.records
    assert not hasattr(before, "callTime") and not hasattr(after, "callTime")
    assert 20 <= during.callTime <= req.elapsed_ms
    assert during.mdc == {"apiCall": "/api/projects/get-summary", "user": "admin"}
    assert after.mdc == {}


def test_nested_requests_restore_the_outer_one(captured: ListHandler) -> None:
    with audit.request("/outer", user="a"):
        with audit.request("/inner", user="b"):
            audit.emit("generic", "inner")
        audit.emit("generic", "outer")
    assert [r.mdc for r in captured.records] == [
        {"apiCall": "/inner", "user": "b"},
        {"apiCall": "/outer", "user": "a"},
    ]


def test_request_as_a_decorator_sync_and_async(captured: ListHandler) -> None:
    @audit.request("/api/sync", user="s")
    def handler(n: int) -> int:
        audit.emit("generic", "sync")
        return n + 1

    @audit.request("/api/async", user="a")
    async def async_handler() -> str:
        await asyncio.sleep(0)
        audit.emit("generic", "async")
        return "ok"

    assert handler(1) == 2
    assert asyncio.run(async_handler()) == "ok"
    assert [r.mdc["apiCall"] for r in captured.records] == ["/api/sync", "/api/async"]
    assert all(isinstance(r.callTime, int) for r in captured.records)


def test_each_thread_has_its_own_request(captured: ListHandler) -> None:
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        with audit.request(f"/api/{i}", user=f"u{i}"):
            barrier.wait(timeout=5)
            audit.emit("generic", "t", i=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert sorted((r.msg["i"], r.mdc["user"]) for r in captured.records) == [(i, f"u{i}") for i in range(4)]


def test_bound_logger_fields_come_after_msg_type(captured: ListHandler) -> None:
    audit.get_logger("generic").bind(node="node-a").emit("x", a=1)
    assert list(captured.records[0].msg.items()) == [("msgType", "x"), ("node", "node-a"), ("a", 1)]


def test_levels_disabled_loggers_and_propagation_are_respected(captured: ListHandler) -> None:
    topic = logging.getLogger("dku.audit.quiet")
    topic.setLevel(logging.WARNING)
    try:
        audit.emit("quiet", "dropped-by-level")
    finally:
        topic.setLevel(logging.NOTSET)
    topic.disabled = True
    try:
        audit.emit("quiet", "dropped-disabled")
    finally:
        topic.disabled = False
    audit.emit("quiet", "kept")
    assert [r.msg["msgType"] for r in captured.records] == ["kept"]


@pytest.mark.parametrize("topic", ["", "  ", " generic", "a\nb", None])
def test_a_blank_or_odd_topic_is_refused(topic: Any) -> None:
    with pytest.raises(ValueError, match="audit topic"):
        audit.emit(topic, "x")


def test_the_mdc_survives_a_hand_over_to_another_thread(tmp_path: Path, restore_logging: None) -> None:
    """AsyncAppender-style: the record is formatted on a listener thread, not the caller's."""

    class KeepRecord(logging.handlers.QueueHandler):
        def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
            return record

    path = tmp_path / "audit.log"
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(JSONAuditFormatter(line_end=""))
    q: queue.Queue[Any] = queue.Queue()
    listener = logging.handlers.QueueListener(q, file_handler)
    logger = logging.getLogger("dku.audit.handover")
    logger.addHandler(KeepRecord(q))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    listener.start()
    try:
        with audit.request("/api/x", user="admin"):
            audit.emit("handover", "login")
    finally:
        listener.stop()
        logger.handlers.clear()
        file_handler.close()
    line = orjson.loads(path.read_bytes())
    assert line["mdc"] == {"apiCall": "/api/x", "user": "admin"}
    assert isinstance(line["callTime"], int)


def test_end_to_end_to_a_rolling_json_audit_file(tmp_path: Path, restore_logging: None) -> None:
    path = tmp_path / "generic.log"
    handler = RotatingFileHandler(path, maxBytes=100 * 1024 * 1024, backupCount=20)
    handler.setFormatter(JSONAuditFormatter(line_end=""))
    logger = logging.getLogger("dku.audit.rolling")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with audit.request("/api/projects/get-summary", user="admin"):
            for i in range(100):
                audit.emit("rolling", "project-get-summary", projectKey=f"P{i}")
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [line["message"]["projectKey"] for line in lines] == [f"P{i}" for i in range(100)]
    assert {line["logger"] for line in lines} == {"dku.audit.rolling"}
    assert all(
        list(line) == ["severity", "logger", "message", "mdc", "callTime", "timestamp"] for line in lines
    )


def test_through_the_log4j_translation_of_a_dss_audit_config(tmp_path: Path, restore_logging: None) -> None:
    """``logbridge.configure`` on DSS's audit appender: RollingFileAppender + JSONAuditLayout."""
    props = tmp_path / "log4j.properties"
    props.write_text(
        "log4j.rootLogger=INFO, null\n"
        "log4j.appender.null=org.apache.log4j.varia.NullAppender\n"
        "log4j.logger.dku.audit.translated=INFO, translated\n"
        "log4j.additivity.dku.audit.translated=false\n"
        "log4j.appender.translated=org.apache.log4j.RollingFileAppender\n"
        "log4j.appender.translated.File=${audit.dir}/translated.log\n"
        "log4j.appender.translated.MaxFileSize=100MB\n"
        "log4j.appender.translated.MaxBackupIndex=20\n"
        "log4j.appender.translated.layout=com.dataiku.dip.logging.JSONAuditLayout\n"
    )
    logbridge.configure(props, **{"audit.dir": str(tmp_path / "audit")})
    with audit.request("/api/x", user="admin"):
        audit.emit("translated", "login", authUser="admin")
        audit.emit("translated", "logout", authUser="admin")
    for handler in logging.getLogger("dku.audit.translated").handlers:
        handler.flush()
    lines = (tmp_path / "audit" / "translated.log").read_bytes().splitlines()
    assert [orjson.loads(line)["message"]["msgType"] for line in lines] == ["login", "logout"]
    assert orjson.loads(lines[0])["mdc"] == {"apiCall": "/api/x", "user": "admin"}
