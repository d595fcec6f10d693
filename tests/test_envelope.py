"""The four envelopes in, the stored line out (DESIGN.md §2)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge import envelope
from logbridge.errors import EnvelopeError

LOG4J = {
    "severity": "INFO",
    "logger": "dku.audit.generic",
    "message": {"msgType": "login", "authUser": "admin"},
    "mdc": {"apiCall": "/api/projects/get-summary", "user": "admin"},
    "callTime": 9,
    "timestamp": "2020-02-19T16:05:02.441+0100",
}


def store(obj: dict, **kw: str) -> dict:
    u = envelope.unwrap(obj, **kw)
    return orjson.loads(envelope.stored_line(u, "10.0.0.7", "2020-03-17T19:15:30.609+0100"))


def test_log4j_file_envelope() -> None:
    line = store(LOG4J)
    assert list(line)[:3] == ["clientEvent", "origAddress", "serverTimestamp"]
    assert line["clientEvent"] == LOG4J["message"]
    assert line["topic"] == "generic"
    assert line["envelope"] == {k: v for k, v in LOG4J.items() if k != "message"}
    assert envelope.restore(line) == LOG4J


def test_event_server_envelope_keeps_original_fields() -> None:
    es = {
        "clientEvent": {"msgType": "logout", "topic": "generic"},
        "origAddress": "127.0.0.1",
        "serverTimestamp": "2020-03-17T19:15:30.609+0100",
    }
    line = store(es)
    assert line["origAddress"] == "127.0.0.1"
    assert line["serverTimestamp"] == "2020-03-17T19:15:30.609+0100"
    assert line["clientEvent"] == es["clientEvent"]
    # a chain of collectors keeps topic, routing key, node and envelope as the first one stored them
    first = orjson.loads(envelope.stored_line(envelope.unwrap(es), "10.0.0.7", "t", node="design-1"))
    assert first["node"] == "design-1"
    again = orjson.loads(envelope.stored_line(envelope.unwrap(first), "10.9.9.9", "t2", node="relay"))
    assert again == first


def test_log4j2_json_layout_with_message_string() -> None:
    obj = {
        "loggerName": "dku.audit.apinode-query",
        "level": "INFO",
        "thread": "main",
        "instant": {"epochSecond": 1584468930, "nanoOfSecond": 609000000},
        "contextMap": {"user": "bob"},
        "message": '{"msgType":"prediction-query","routingKey":"churn-svc"}',
    }
    u = envelope.unwrap(obj)
    assert u.topic == "apinode-query" and u.routing_key == "churn-svc"
    assert u.event == {"msgType": "prediction-query", "routingKey": "churn-svc"}
    assert envelope.event_epoch(u.event_time) == pytest.approx(1584468930.609)
    line = orjson.loads(envelope.stored_line(u, "a", "b"))
    assert orjson.loads(envelope.restore(line)["message"]) == orjson.loads(obj["message"])  # type: ignore[arg-type]


def test_topic_precedence_and_dead_letter_without_topic() -> None:
    assert envelope.unwrap({"msgType": "x", "topic": "own"}, header_topic="hdr").topic == "own"
    assert envelope.unwrap({"msgType": "x"}, header_topic="hdr", default_topic="d").topic == "hdr"
    assert envelope.unwrap({"msgType": "x"}, default_topic="d").topic == "d"
    with pytest.raises(EnvelopeError) as info:
        envelope.unwrap({"msgType": "x", "topic": "   "})
    assert info.value.reason == "no-topic"


def test_routing_key_precedence() -> None:
    assert (
        envelope.unwrap(
            {"msgType": "x", "routingKey": "ev"}, header_topic="t", header_routing_key="hdr"
        ).routing_key
        == "ev"
    )
    assert envelope.unwrap({"msgType": "x"}, header_topic="t", header_routing_key="hdr").routing_key == "hdr"
    assert envelope.unwrap({"msgType": "x"}, header_topic="t").routing_key is None


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2020-02-19T16:05:02.441+0100", 1582124702.441),
        ("2020-02-19T15:05:02.441Z", 1582124702.441),
        ("2020-02-19T20:35:02+05:30", 1582124702.0),
        ("2020-02-19 15:05:02", 1582124702.0),
    ],
)
def test_iso_times(text: str, epoch: float) -> None:
    assert envelope.parse_iso(text) == pytest.approx(epoch)


@pytest.mark.parametrize("bad", ["yesterday", "2020-13-45T99:00:00Z", "2020-02-19T16:05:02.441+9900", ""])
def test_bad_times_are_none(bad: str) -> None:
    assert envelope.event_epoch(bad) is None


def test_depth_limit() -> None:
    deep = b'{"a":' * 70 + b"1" + b"}" * 70
    with pytest.raises(EnvelopeError) as info:
        envelope.parse_line(deep, max_depth=64)
    assert info.value.reason == "too-deep"
    ok = b'{"a":' * 10 + b"1" + b"}" * 10
    assert envelope.parse_line(ok, max_depth=64)


def test_invalid_utf8_has_its_own_reason() -> None:
    with pytest.raises(EnvelopeError) as info:
        envelope.parse_line(b'{"msgType":"\xff\xfe"}')
    assert info.value.reason == "invalid-utf8"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200) | json_values.map(orjson.dumps))
@settings(max_examples=300)
def test_any_input_raises_only_envelope_errors(raw: bytes) -> None:
    try:
        obj = envelope.parse_line(raw)
        u = envelope.unwrap(obj, default_topic="generic")
        envelope.stored_line(u, "127.0.0.1", "2020-01-01T00:00:00.000+0000")
        envelope.event_epoch(u.event_time)
    except EnvelopeError:
        pass


events = st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=5).map(
    lambda d: {**d, "msgType": "m"}
)


@given(
    events,
    st.sampled_from(["generic", "authfail", "apinode-query"]),
    st.dictionaries(st.sampled_from(["mdc", "callTime", "severity", "timestamp"]), json_values, max_size=4),
    st.booleans(),
)
@settings(max_examples=200)
def test_log4j_wrap_unwrap_round_trips(event: dict, topic: str, extra: dict, as_string: bool) -> None:
    incoming = {
        **extra,
        "logger": f"dku.audit.{topic}",
        "message": orjson.dumps(event).decode() if as_string else event,
    }
    line = orjson.loads(envelope.stored_line(envelope.unwrap(incoming), "h", "t"))
    assert line["topic"] == topic
    restored = envelope.restore(line)
    if as_string:
        assert orjson.loads(restored.pop("message")) == orjson.loads(incoming.pop("message"))
    assert restored == incoming


@given(events)
def test_bare_event_round_trips(event: dict) -> None:
    line = orjson.loads(envelope.stored_line(envelope.unwrap(event, header_topic="generic"), "h", "t"))
    assert envelope.restore(line) == event
