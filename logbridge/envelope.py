"""The four audit envelopes of DESIGN.md §2, read in; the stored line, written out.

Incoming (any of them, mixed freely in one batch):

1. log4j 1.x file envelope: ``{"severity","logger":"dku.audit.<topic>","message":{event},"mdc","callTime","timestamp"}``
2. Event Server envelope / stored line: ``{"clientEvent":{event},"origAddress","serverTimestamp"[,"topic","routingKey","envelope"]}``
3. log4j 2 JsonLayout: ``{"loggerName","level","instant"|"timeMillis","thread","contextMap","message"}``,
   ``message`` often a JSON *string*
4. bare event: ``{"msgType": ...}``

Outgoing, the stored line: the Event Server envelope with ``topic``, ``routingKey`` and
``envelope`` (every other field the incoming envelope carried) added, so that `restore`
gives back the incoming envelope. The hot path is `unwrap` + `stored_line`: both avoid
building anything per event that the stored line does not need.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .errors import EnvelopeError

Event = dict[str, Any]

AUDIT_LOGGER_PREFIX = "dku.audit."

# Keys of the Event Server envelope that the stored line owns.
_STORED_KEYS = frozenset(
    {"clientEvent", "origAddress", "serverTimestamp", "topic", "routingKey", "node", "envelope"}
)

# Markers kept in ``envelope`` so that `restore` can undo what `unwrap` normalised.
MESSAGE_WAS_STRING = "messageWasString"  # log4j 2 / log4j 1 message was a JSON *string*
MESSAGE_WAS_WRAPPED = "messageWasWrapped"  # message was not an object: event is {"message": value}


@dataclass(slots=True)
class Unwrapped:
    """One incoming line, unwrapped: the event and everything around it."""

    event: Event
    topic: str
    routing_key: str | None
    event_time: Any  # the raw time value, or None (then the receive time applies)
    envelope: dict[str, Any] | None  # every other field of the incoming envelope
    orig_address: str | None = None  # only for an already-wrapped (chained) event
    server_timestamp: str | None = None
    node: str | None = None  # the first collector's X-Logbridge-Node, for a chained event


# ---------------------------------------------------------------------------------------- parsing


def parse_line(raw: bytes, max_depth: int = 64) -> dict[str, Any]:
    """One JSON object from one line; `EnvelopeError` with a stable reason otherwise."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = str(exc)
        if "utf-8" in msg.lower() or "surrogate" in msg.lower():
            raise EnvelopeError("invalid-utf8", msg) from None
        if "recursion" in msg.lower():
            raise EnvelopeError("too-deep", f"nested deeper than {max_depth}") from None
        raise EnvelopeError("invalid-json", msg) from None
    if not isinstance(obj, dict):
        raise EnvelopeError("not-an-object", f"expected a JSON object, got {type(obj).__name__}")
    # Counting brackets is C-speed and bounds the depth from above: only lines that could be
    # too deep pay for the walk.
    if raw.count(b"{") + raw.count(b"[") > max_depth and json_depth(obj) > max_depth:
        raise EnvelopeError("too-deep", f"nested deeper than {max_depth}")
    return obj


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``{}`` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            depth += 1
            stack.extend((v, depth) for v in item.values())
        elif isinstance(item, list):
            depth += 1
            stack.extend((v, depth) for v in item)
        if depth > deepest:
            deepest = depth
    return deepest


# --------------------------------------------------------------------------------------- unwrap


def _clean(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def _topic_from_logger(name: Any) -> str | None:
    if isinstance(name, str) and name.startswith(AUDIT_LOGGER_PREFIX):
        return _clean(name[len(AUDIT_LOGGER_PREFIX) :])
    return None


def _message_event(message: Any, envelope: dict[str, Any]) -> Event:
    """The event inside a log4j message; a JSON string is parsed, anything else wrapped."""
    if isinstance(message, dict):
        return message
    if isinstance(message, str) and message[:1] == "{":
        try:
            parsed = orjson.loads(message)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            envelope[MESSAGE_WAS_STRING] = True
            return parsed
    envelope[MESSAGE_WAS_WRAPPED] = True
    return {"message": message}


def unwrap(
    obj: dict[str, Any],
    *,
    header_topic: str | None = None,
    header_routing_key: str | None = None,
    default_topic: str | None = None,
) -> Unwrapped:
    """Find the event, topic, routing key and time in any of the four envelopes.

    Raises `EnvelopeError` ``no-topic`` when no rule of DESIGN.md §2 gives a topic.
    """
    envelope: dict[str, Any] | None
    orig_address = server_timestamp = node = None
    client_event = obj.get("clientEvent")
    if isinstance(client_event, dict):
        # Already wrapped (a collector chain): keep the original fields as they are.
        event = client_event
        orig_address = obj.get("origAddress")
        server_timestamp = obj.get("serverTimestamp")
        node = _clean(obj.get("node"))
        envelope = obj.get("envelope") if isinstance(obj.get("envelope"), dict) else None
        others = {k: v for k, v in obj.items() if k not in _STORED_KEYS}
        if others or ("envelope" in obj and envelope is None):
            envelope = dict(envelope or {})
            if "envelope" in obj and not isinstance(obj["envelope"], dict):
                others["envelope"] = obj["envelope"]
            envelope["chainedFields"] = others
        logger_topic = _clean(obj.get("topic"))
        time_value = server_timestamp
        own_routing_key = obj.get("routingKey")
    elif "loggerName" in obj and "message" in obj:
        envelope = obj.copy()  # a C-level copy beats a filtered comprehension on the hot path
        event = _message_event(envelope.pop("message"), envelope)
        logger_topic = _topic_from_logger(obj["loggerName"])
        time_value = obj.get("instant", obj.get("timeMillis"))
        own_routing_key = None
    elif "logger" in obj and "message" in obj:
        envelope = obj.copy()
        event = _message_event(envelope.pop("message"), envelope)
        logger_topic = _topic_from_logger(obj["logger"])
        time_value = obj.get("timestamp")
        own_routing_key = None
    else:
        event = obj
        envelope = None
        logger_topic = None
        time_value = None
        own_routing_key = None

    topic = logger_topic or _clean(event.get("topic")) or _clean(header_topic) or _clean(default_topic)
    if topic is None:
        raise EnvelopeError(
            "no-topic",
            "no dku.audit.<topic> logger, no 'topic' field, no X-Audit-Topic header and no default_topic",
        )
    routing_key = _clean(own_routing_key) or _clean(event.get("routingKey")) or _clean(header_routing_key)
    if time_value is None:
        time_value = event.get("timestamp")
    return Unwrapped(event, topic, routing_key, time_value, envelope, orig_address, server_timestamp, node)


# ----------------------------------------------------------------------------------------- write


def stored_line(u: Unwrapped, orig_address: str, server_timestamp: str, node: str | None = None) -> bytes:
    """The stored line for one event (no trailing newline). DSS's three keys come first;
    ``node`` (the sender's ``X-Logbridge-Node``) is kept for per-node reports."""
    line: dict[str, Any] = {
        "clientEvent": u.event,
        "origAddress": u.orig_address if u.orig_address is not None else orig_address,
        "serverTimestamp": u.server_timestamp if u.server_timestamp is not None else server_timestamp,
        "topic": u.topic,
    }
    if u.routing_key is not None:
        line["routingKey"] = u.routing_key
    if u.node is not None or node is not None:
        line["node"] = u.node if u.node is not None else node
    if u.envelope:
        line["envelope"] = u.envelope
    return orjson.dumps(line)


def restore(stored: dict[str, Any]) -> dict[str, Any]:
    """The incoming envelope that produced ``stored`` (the inverse of `unwrap` + `stored_line`).

    For an event that arrived bare, this is the event itself; for a log4j envelope, the log4j
    envelope with its message. (An Event Server envelope is stored as it came, its fields intact.)
    """
    envelope = dict(stored.get("envelope") or {})
    event = stored["clientEvent"]
    if "logger" in envelope or "loggerName" in envelope:
        was_string = envelope.pop(MESSAGE_WAS_STRING, False)
        was_wrapped = envelope.pop(MESSAGE_WAS_WRAPPED, False)
        if was_wrapped:
            message: Any = event["message"]
        elif was_string:
            message = orjson.dumps(event).decode()
        else:
            message = event
        envelope["message"] = message
        return envelope
    return event


def stored_event_epoch(line: dict[str, Any]) -> float | None:
    """The event's own time of a stored line (what ``partition_time: event`` partitions by), read
    from the envelope it came in; None when it carried none that reads."""
    try:
        original = restore(line)
        u = unwrap(original) if isinstance(original, dict) else None
    except (EnvelopeError, KeyError, TypeError, AttributeError):
        return None
    return event_epoch(u.event_time) if u is not None and u.event_time is not None else None


# ----------------------------------------------------------------------------------------- times

_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d\d(?::?\d\d)?)?"
)
_minute_cache: dict[tuple[str, str | None], float] = {}


def _offset_seconds(offset: str | None) -> int:
    if not offset or offset == "Z":
        return 0
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    return sign * (hours * 3600 + minutes * 60)


def parse_iso(text: str) -> float | None:
    """Epoch seconds of an ISO-8601 time (``2020-02-19T16:05:02.441+0100``); None if unreadable.

    Minute starts are cached: audit streams repeat the same minute thousands of times."""
    if len(text) == 28 and text[19] == ".":
        # Fast path for log4j's own form, 2020-02-19T16:05:02.441+0100: only a prefix the
        # full parser below has validated is ever in the cache.
        base = _minute_cache.get((text[:16], text[23:]))
        if base is not None:
            sec, ms = text[17:19], text[20:23]
            # isdecimal, not isdigit: "²" is a digit that int() refuses (and the regex's \d too)
            if sec.isdecimal() and ms.isdecimal() and text[16] == ":" and int(sec) <= 60:
                return base + int(sec) + int(ms) / 1000.0
    m = _ISO.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, offset = m.groups()
    key = (text[:16], offset)
    base = _minute_cache.get(key)
    if base is None:
        try:
            dt = datetime(int(y), int(mo), int(d), int(h), int(mi), tzinfo=UTC)
            if int(offset[1:3] if offset and offset != "Z" else 0) > 23:
                return None
        except ValueError:
            return None
        base = calendar.timegm(dt.timetuple()) - _offset_seconds(offset)
        if len(_minute_cache) > 100_000:
            _minute_cache.clear()
        _minute_cache[key] = base
    seconds = int(s) if s else 0
    if seconds > 60:
        return None
    return base + seconds + (float("0." + frac) if frac else 0.0)


def event_epoch(value: Any) -> float | None:
    """Epoch seconds of any time value the envelopes carry, or None."""
    if isinstance(value, str):
        return parse_iso(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        # Epoch milliseconds (log4j 2 timeMillis, Java clocks) vs seconds.
        seconds = value / 1000.0 if abs(value) > 100_000_000_000 else float(value)
        return seconds if 0 <= seconds < 253_402_300_800 else None
    if isinstance(value, dict):  # log4j 2 instant
        sec, nano = value.get("epochSecond"), value.get("nanoOfSecond", 0)
        if isinstance(sec, int) and not isinstance(sec, bool) and isinstance(nano, int):
            return event_epoch(sec + nano / 1e9) if 0 <= sec < 253_402_300_800 else None
    return None


def format_timestamp(epoch: float) -> str:
    """ISO-8601 with milliseconds and a numeric offset, in UTC: ``2020-03-17T18:15:30.609+0000``."""
    dt = datetime.fromtimestamp(epoch, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+0000"
