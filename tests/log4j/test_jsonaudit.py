"""JSONAuditFormatter: DSS's JSONAuditLayout lines (the log4j file envelope of DESIGN.md §2.1)."""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge import audit, context, envelope
from logbridge.log4j import jsonaudit
from logbridge.log4j.jsonaudit import JSONAuditFormatter, log4j_timestamp

# 2020-02-19T15:05:02.441Z, the example of DESIGN.md §2.1 (16:05:02.441+0100 in Paris).
EXAMPLE_CREATED = 1582124702.441


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``tz("Europe/Paris")`` switches the process's local time zone for the test."""

    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()
        jsonaudit._last_second = (-1, "", "")  # the per-second cache belongs to the old zone

    yield use
    monkeypatch.undo()
    time.tzset()
    jsonaudit._last_second = (-1, "", "")


def make_record(
    msg: Any, *, name: str = "dku.audit.generic", level: int = logging.INFO, **attrs: Any
) -> logging.LogRecord:
    record = logging.LogRecord(name, level, "(test)", 0, msg, (), None)
    record.created = EXAMPLE_CREATED
    record.msecs = 441.0
    for key, value in attrs.items():
        setattr(record, key, value)
    return record


def test_the_design_example_byte_for_byte(tz: Any) -> None:
    tz("Europe/Paris")
    record = make_record(
        {"msgType": "project-get-summary", "authUser": "admin"},
        mdc={"apiCall": "/api/projects/get-summary", "user": "admin"},
        callTime=9,
    )
    line = JSONAuditFormatter().format(record)
    assert line == (
        '{"severity":"INFO","logger":"dku.audit.generic",'
        '"message":{"msgType":"project-get-summary","authUser":"admin"},'
        '"mdc":{"apiCall":"/api/projects/get-summary","user":"admin"},"callTime":9,'
        '"timestamp":"2020-02-19T16:05:02.441+0100"}\n'
    )


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("UTC", "2020-02-19T15:05:02.441+0000"),
        ("Europe/Paris", "2020-02-19T16:05:02.441+0100"),
        ("America/New_York", "2020-02-19T10:05:02.441-0500"),
        ("Asia/Kolkata", "2020-02-19T20:35:02.441+0530"),
    ],
)
def test_timestamp_is_local_time_with_millis_and_numeric_offset(tz: Any, zone: str, expected: str) -> None:
    tz(zone)
    assert log4j_timestamp(EXAMPLE_CREATED, 441.0) == expected


def test_timestamp_follows_daylight_saving(tz: Any) -> None:
    tz("Europe/Paris")
    summer = datetime.fromisoformat("2020-07-01T12:00:00.007+00:00").timestamp()
    assert log4j_timestamp(summer) == "2020-07-01T14:00:00.007+0200"


@settings(max_examples=200, deadline=None)
@given(millis=st.integers(min_value=0, max_value=4_102_444_800_000))
def test_timestamp_agrees_with_datetime(millis: int) -> None:
    stamp = log4j_timestamp(millis / 1000)
    local = datetime.fromtimestamp(millis // 1000).astimezone()
    assert stamp == local.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis % 1000:03d}" + local.strftime("%z")


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (5, "TRACE"),
        (logging.DEBUG, "DEBUG"),
        (logging.INFO, "INFO"),
        (logging.WARNING, "WARN"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "FATAL"),
    ],
)
def test_severity_uses_log4j_level_names(level: int, severity: str) -> None:
    line = orjson.loads(JSONAuditFormatter().format(make_record({"msgType": "x"}, level=level)))
    assert line["severity"] == severity


def test_mdc_comes_from_the_record_when_it_has_one_else_from_the_context() -> None:
    fmt = JSONAuditFormatter()
    with context.mdc(user="from-context"):
        own = orjson.loads(fmt.format(make_record({"msgType": "x"}, mdc={"user": "from-record"})))
        ambient = orjson.loads(fmt.format(make_record({"msgType": "x"})))
    assert own["mdc"] == {"user": "from-record"}
    assert ambient["mdc"] == {"user": "from-context"}
    assert orjson.loads(fmt.format(make_record({"msgType": "x"})))["mdc"] == {}


def test_call_time_only_when_known() -> None:
    fmt = JSONAuditFormatter()
    assert "callTime" not in orjson.loads(fmt.format(make_record({"msgType": "x"})))
    assert orjson.loads(fmt.format(make_record({"msgType": "x"}, callTime=42)))["callTime"] == 42
    with audit.request("/api/x"):
        inside = orjson.loads(fmt.format(make_record({"msgType": "x"})))
    assert isinstance(inside["callTime"], int) and inside["callTime"] >= 0


def test_key_order_is_dss_order() -> None:
    line = orjson.loads(JSONAuditFormatter().format(make_record({"msgType": "x"}, mdc={}, callTime=1)))
    assert list(line) == ["severity", "logger", "message", "mdc", "callTime", "timestamp"]


def test_a_string_message_stays_a_string() -> None:
    record = make_record("user %s logged in", args=None)
    record.args = ("admin",)
    line = orjson.loads(JSONAuditFormatter().format(record))
    assert line["message"] == "user admin logged in"


def test_exception_goes_to_the_envelope_and_the_event_is_untouched() -> None:
    event = {"msgType": "job-failed"}
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = make_record(event, level=logging.ERROR, exc_info=sys.exc_info())
    line = orjson.loads(JSONAuditFormatter().format(record))
    assert line["message"] == {"msgType": "job-failed"}
    assert "RuntimeError: boom" in line["exception"]
    assert event == {"msgType": "job-failed"}


def test_the_line_end_is_the_layouts_as_in_log4j() -> None:
    assert JSONAuditFormatter().format(make_record({"msgType": "x"})).endswith("}\n")
    assert JSONAuditFormatter(line_end="").format(make_record({"msgType": "x"})).endswith("}")
    assert JSONAuditFormatter(line_end="\r\n").format(make_record({"msgType": "x"})).endswith("}\r\n")


def test_plugs_into_dict_config_and_the_collector_reads_its_lines(
    tmp_path: Path, restore_logging: None
) -> None:
    path = tmp_path / "audit.log"
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"audit": {"()": "logbridge.log4j.jsonaudit.JSONAuditFormatter", "line_end": ""}},
            "handlers": {
                "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "audit"}
            },
            "loggers": {
                "dku.audit.test-jsonaudit": {"handlers": ["file"], "level": "INFO", "propagate": False}
            },
        }
    )
    with audit.request("/api/x", user="admin"):
        audit.emit("test-jsonaudit", "login", routing_key="svc", authUser="admin")
    (line,) = path.read_bytes().splitlines()
    unwrapped = envelope.unwrap(envelope.parse_line(line))
    assert unwrapped.topic == "test-jsonaudit"
    assert unwrapped.routing_key == "svc"
    assert unwrapped.event == {"msgType": "login", "authUser": "admin", "routingKey": "svc"}
    assert unwrapped.envelope is not None
    assert unwrapped.envelope["mdc"] == {"apiCall": "/api/x", "user": "admin"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(fields=st.dictionaries(st.text(), json_values, max_size=8), msg_type=st.text(min_size=1))
def test_any_event_round_trips_through_the_line(fields: dict[str, Any], msg_type: str) -> None:
    event = {"msgType": msg_type, **fields}
    line = JSONAuditFormatter().format(make_record(event))
    assert line.endswith("}\n") and line.count("\n") == 1
    parsed = orjson.loads(line)
    assert parsed["message"] == event
    assert envelope.unwrap(parsed).event == event
