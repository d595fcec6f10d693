"""The ingest fast path (log4j 1 envelopes) gives what the general path gives, byte for byte.

`Ingest.__call__` takes the common log4j envelope without `envelope.unwrap`; `Ingest.general`
runs every item through `parse_line` → `unwrap` → `stored_line`. For any batch both must give
the same chunks (partition → lines, in the same order), the same dead letters and the same
counts. The generated envelopes lean on what the fast path decides by itself: the logger, the
routing key, the timestamp's exact form, the limits (size, nesting near the bound), and fields
that make another envelope of a log4j one.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbridge import envelope
from logbridge.collector import ingest as ingest_mod
from logbridge.collector.body import Invalid
from logbridge.collector.config import Limits
from logbridge.collector.ingest import Ingest, Prepared, RequestContext, Route
from logbridge.sinks.config import FilesystemDestination
from logbridge.sinks.partition import PartitionPaths

MAX_DEPTH = 8
MAX_EVENT_BYTES = 900
RECEIVED = 1_764_590_000.25  # 2025-12-01T11:53:20.250Z


class _Sink:
    """What `Ingest` reads of a sink: its partitions and which time they use."""

    def __init__(self, name: str, partitions: PartitionPaths, event_time: bool):
        self.name = name
        self.partitions = partitions
        self.event_time = event_time


def _route(index: int, event_time: bool = True, timezone: str = "UTC", **dest: Any) -> Route:
    destination = FilesystemDestination(name=f"d{index}", url="memory://x", **dest)
    template = dest.get("path") or "{topic}/{routing_key}/%Y/%m/%d/%H"
    sink = _Sink(destination.name, PartitionPaths(template, timezone=timezone), event_time)
    return Route(index, destination, sink)  # type: ignore[arg-type]


def make_ingest(default_topic: str | None = None, limits: Limits | None = None) -> Ingest:
    routes = [
        _route(0),
        # a second destination for some topics, in another time zone, by receive time
        _route(
            1, event_time=False, timezone="Asia/Kolkata", topics=["generic", "other"], path="%Y/%m/%d/%H/%M"
        ),
        # one by event time in a half-hour zone, for some routing keys only
        _route(2, timezone="America/St_Johns", routing_keys=["svc_1", ""], path="{routing_key}/%Y%m%d%H%M"),
        _route(3, required_token="tok"),  # only for requests with the token "tok"
    ]
    limits = limits or Limits(max_event_bytes=MAX_EVENT_BYTES, max_depth=MAX_DEPTH)
    return Ingest(routes, limits, default_topic, PartitionPaths("%Y/%m/%d/%H"))


def outcome(prepared: Prepared) -> dict[str, Any]:
    return {
        "chunks": list(prepared.chunks.items()),  # order included: it is the append order
        "dead": prepared.dead,
        "dead_chunk": prepared.dead_chunk,
        "dead_partition": prepared.dead_partition,
        "accepted": prepared.result.accepted,
        "invalid": prepared.result.invalid,
        "reasons": list(prepared.result.reasons.items()),
        "topic_counts": prepared.topic_counts,
        "out_counts": prepared.out_counts,
        "unrouted": prepared.unrouted,
    }


def both(items: list[Any], ctx: RequestContext, default_topic: str | None = None) -> tuple[dict, dict]:
    fast = make_ingest(default_topic)(list(items), ctx, RECEIVED)
    general = make_ingest(default_topic).general(list(items), ctx, RECEIVED)
    return outcome(fast), outcome(general)


# ------------------------------------------------------------------------------ strategies

ascii_digits = st.integers(0, 9).map(str)
odd_char = st.sampled_from(["٣", "²", "a", " ", "-", "0", ":", "."])  # unicode digits, letters, blanks


def weighted(*pairs: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.sampled_from([s for n, s in pairs for _ in range(n)]).flatmap(lambda s: s)


# A few minutes and offsets, so that the events of one batch share fast-path keys; near the
# edges: a quarter hour's last minute (a leap second moves it to the next partition), an
# impossible date, a half-hour and a 45-minute zone, an offset past 23 hours, a minute of 60.
PREFIXES = [
    "2020-02-19T16:05:",
    "2020-02-19T16:14:",
    "2020-02-19T16:59:",
    "2020-02-19 23:44:",
    "1970-01-01T00:00:",
    "9999-12-31T23:59:",
    "2020-02-30T16:05:",
    "2020-13-19T16:05:",
    "2020-02-19T16:60:",
    "2020-02-19T16:05-",
]
OFFSETS = [
    "+0100",
    "+0100",
    "+0000",
    "-0530",
    "+0545",
    "+2400",
    "+0199",
    "Z",
    "+01:00",
    "12345",
    " +01",
    "+1",
]


@st.composite
def log4j_stamps(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(PREFIXES))
    sec = draw(st.sampled_from(["00", "05", "30", "59"] * 3 + ["60", "61", "99"]))
    ms = "".join(draw(st.lists(ascii_digits, min_size=3, max_size=3)))
    text = f"{prefix}{sec}.{ms}{draw(st.sampled_from(OFFSETS))}"
    if draw(st.integers(0, 15)) == 0:
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + draw(odd_char) + text[at + 1 :]
    return text


stamps = weighted(
    (12, log4j_stamps()),
    (
        1,
        st.sampled_from(
            [
                "2020-02-19T16:05:02,441+0100",
                "2020-02-19T16:05:02+0100",
                "2020-02-19T16:05:2.441+0100",
                "2020-02-19T16:05",
                "",
                "yesterday",
            ]
        ),
    ),
    (1, st.one_of(st.integers(-(10**13), 10**13), st.floats(allow_nan=False, allow_infinity=False))),
    (1, st.sampled_from([None, [], {}, {"epochSecond": 1}, True, ["2020-02-19T16:05:02.441+0100"]])),
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8))

loggers = weighted(
    (
        12,
        st.sampled_from(
            ["dku.audit.generic", "dku.audit.other", "dku.audit.apinode-query", "dku.audit.ü/../é"]
        ),
    ),
    (
        2,
        st.sampled_from(
            [
                "dku.audit.",
                "dku.audit.  ",
                "dku.audit.%2F%Y",
                "dku.auditgeneric",
                "DKU.audit.generic",
                "com.example",
            ]
        ),
    ),
    (1, st.text(max_size=12).map(lambda t: "dku.audit." + t)),
    (1, st.one_of(json_scalars, st.just(["dku.audit.generic"]))),
)
routing_keys = weighted(
    (8, st.sampled_from(["svc_1", "svc_2", "a/b", ".."])),
    (2, st.sampled_from(["", "  ", "\t"])),
    (1, st.text(max_size=6)),
    (1, st.sampled_from([0, 1, 2, 1.0, True, False, None, [1], {"k": 1}])),
)


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {"msgType": draw(st.sampled_from(["login", "prediction-query", "é"]))}
    if draw(st.booleans()):
        event["routingKey"] = draw(routing_keys)
    if draw(st.integers(0, 4)) == 0:
        event["topic"] = draw(st.sampled_from(["generic", "event-topic", "", " "]))
    if draw(st.integers(0, 4)) == 0:
        event["timestamp"] = draw(stamps)
    if draw(st.integers(0, 3)) == 0:
        event["deep"] = nested(draw(st.integers(MAX_DEPTH - 4, MAX_DEPTH)))
    if draw(st.integers(0, 3)) == 0:
        event["text"] = draw(st.text(max_size=40))
    if draw(st.integers(0, 10)) == 0:
        event["big"] = "x" * draw(st.integers(500, 900))
    return event


messages = weighted(
    (12, events()),
    (1, st.just('{"msgType":"as-string"}')),
    (1, st.one_of(json_scalars, st.just([1]))),
)


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    """A log4j 1 envelope, sometimes with a field missing, of another type, or one too many."""
    env: dict[str, Any] = {}
    fields = [
        ("severity", st.just("INFO")),
        ("logger", loggers),
        ("message", messages),
        ("mdc", st.just({"user": "admin", "apiCall": "/api"})),
        ("callTime", st.integers(0, 5000)),
        ("timestamp", stamps),
    ]
    order = draw(st.permutations(fields)) if draw(st.integers(0, 5)) == 0 else fields
    for name, strategy in order:
        if draw(st.integers(0, 30)) == 0:
            continue  # missing
        env[name] = draw(strategy)
    extra = draw(st.integers(0, 15))
    if extra == 0:
        env["clientEvent"] = draw(st.one_of(events(), json_scalars))
    elif extra == 1:
        env["loggerName"] = "dku.audit.log4j2"
    elif extra == 2:
        env["unicode-é"] = "☃"
    if draw(st.integers(0, 30)) == 0:
        return draw(st.one_of(json_scalars, st.just([env])))
    return env


@st.composite
def lines(draw: st.DrawFn) -> Any:
    """A raw NDJSON line (mostly), or a parsed item as a JSON-array body gives them."""
    value = draw(envelopes())
    kind = draw(
        st.sampled_from(["line"] * 24 + ["spaced", "bad-utf8", "cut", "empty", "blank", "dict", "invalid"])
    )
    raw = orjson.dumps(value)
    if kind == "spaced":
        return b" \t" + raw + b" "
    if kind == "bad-utf8":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + b"\xff\xfe" + raw[at:]
    if kind == "cut":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if kind == "empty":
        return b""
    if kind == "blank":
        return b"  "
    if kind == "dict":
        return value if isinstance(value, dict) else Invalid(value)
    if kind == "invalid":
        return Invalid(value)
    return raw


contexts = st.builds(
    RequestContext,
    orig_address=st.sampled_from(["10.0.0.7", "::1"]),
    node=st.sampled_from([None, "node-1", "é"]),
    header_topic=st.sampled_from([None, "header-topic", " "]),
    header_routing_key=st.sampled_from([None, "svc_1", "", " ", "hdr"]),
    token_name=st.sampled_from([None, "tok"]),
)


# ---------------------------------------------------------------------------------- tests


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(lines(), max_size=25), contexts, st.sampled_from([None, "fallback"]))
def test_fast_path_equals_general_path(
    items: list[Any], ctx: RequestContext, default_topic: str | None
) -> None:
    fast, general = both(items, ctx, default_topic)
    assert fast == general


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["generic", "other", "apinode-query"]),
            st.sampled_from([None, "svc_1", "svc_2"]),
            st.sampled_from(["16:14", "16:15", "16:59", "17:00"]),
            st.integers(0, 61),
            st.sampled_from(["+0100", "-0530", "+0000"]),
        ),
        max_size=60,
    ),
    contexts,
)
def test_many_events_of_few_groups(specs: list[tuple], ctx: RequestContext) -> None:
    """Common envelopes only, few keys: the groups are reused, and lines keep their order
    within each partition when minutes of one partition interleave."""
    items = []
    for i, (topic, key, minute, sec, offset) in enumerate(specs):
        message: dict[str, Any] = {"msgType": "m", "i": i}
        if key is not None:
            message["routingKey"] = key
        items.append(
            orjson.dumps(
                {
                    "severity": "INFO",
                    "logger": f"dku.audit.{topic}",
                    "message": message,
                    "mdc": {},
                    "callTime": i,
                    "timestamp": f"2020-02-19T{minute}:{sec:02d}.{i % 1000:03d}{offset}",
                }
            )
        )
    fast, general = both(items, ctx)
    assert fast == general


def _log4j_line(message: Any, stamp: str = "2020-02-19T16:05:02.441+0100") -> bytes:
    return orjson.dumps(
        {"severity": "INFO", "logger": "dku.audit.generic", "message": message, "timestamp": stamp}
    )


def test_the_common_envelope_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(__file__).resolve().parents[2] / "bench" / "collector.py"
    spec = importlib.util.spec_from_file_location("bench_collector", path)
    assert spec is not None and spec.loader is not None
    bench_collector = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_collector", bench_collector)  # for its dataclasses
    spec.loader.exec_module(bench_collector)  # the benchmark's body
    items = bench_collector.dss_events(300).strip().split(b"\n")
    general = make_ingest().general(list(items), RequestContext("10.0.0.7"), RECEIVED)
    calls = []
    original = ingest_mod._Batch.general
    monkeypatch.setattr(
        ingest_mod._Batch, "general", lambda self, item: calls.append(item) or original(self, item)
    )
    fast = make_ingest()(list(items), RequestContext("10.0.0.7"), RECEIVED)
    assert calls == []
    assert outcome(fast) == outcome(general)
    assert fast.result.accepted == 300


def test_nesting_bound_and_size_bound_hold_on_the_fast_path() -> None:
    at_bound = _log4j_line({"msgType": "m", "deep": nested(MAX_DEPTH - 2)})  # envelope + message + 6
    too_deep = _log4j_line({"msgType": "m", "deep": nested(MAX_DEPTH - 1)})
    too_big = _log4j_line({"msgType": "m", "pad": "x" * MAX_EVENT_BYTES})
    prepared = make_ingest()([at_bound, too_deep, too_big], RequestContext("10.0.0.7"), RECEIVED)
    assert prepared.result.accepted == 1
    assert [orjson.loads(line)["reason"] for line in prepared.dead] == ["too-deep", "too-large"]


def test_hostile_nesting_is_refused_on_the_fast_path() -> None:
    head = b'{"logger":"dku.audit.generic","timestamp":"2020-02-19T16:05:02.441+0100","message":'
    hostile = [head + b"[" * n + b"]" * n + b"}" for n in (63, 64, 2000, 100_000)]
    prepared = make_ingest(limits=Limits())(hostile, RequestContext("10.0.0.7"), RECEIVED)
    assert (prepared.result.accepted, prepared.result.invalid) == (1, 3)
    # (orjson refuses past its own depth of 1024 with a message `parse_line` reads as invalid JSON)
    assert [orjson.loads(line)["reason"] for line in prepared.dead] == [
        "too-deep",
        "invalid-json",
        "invalid-json",
    ]
    assert outcome(prepared) == outcome(
        make_ingest(limits=Limits()).general(hostile, RequestContext("10.0.0.7"), RECEIVED)
    )


def test_a_leap_second_and_odd_stamps_take_the_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = ingest_mod._Batch.general
    monkeypatch.setattr(
        ingest_mod._Batch, "general", lambda self, item: calls.append(item) or original(self, item)
    )
    odd = [
        _log4j_line({"m": 1}, "2020-02-19T16:14:60.500+0000"),  # leap second: the next partition
        _log4j_line({"m": 1}, "2020-02-19T16:05:٠٢.441+0100"),  # unicode digits
        _log4j_line({"m": 1}, "2020-02-19T16:05:02,441+0100"),
        _log4j_line({"m": 1}, "2020-02-19T16:05:2.441+0100"),
    ]
    make_ingest()(odd, RequestContext("10.0.0.7"), RECEIVED)
    assert calls == odd
    fast, general = both(odd, RequestContext("10.0.0.7"))
    assert fast == general


def test_a_superscript_digit_in_the_seconds_is_an_unreadable_time() -> None:
    """Found by the property test: "²" passes ``str.isdigit`` but not ``int``; the general path
    took the whole batch down when the minute was cached."""
    assert envelope.parse_iso("2020-02-19T16:05:02.441+0100") is not None  # caches the minute
    assert envelope.parse_iso("2020-02-19T16:05:²1.441+0100") is None
    items = [_log4j_line({"m": 1}), _log4j_line({"m": 2}, "2020-02-19T16:05:²1.441+0100")]
    fast, general = both(items, RequestContext("10.0.0.7"))
    assert fast == general
    assert fast["accepted"] == 2


def test_a_time_past_year_9999_in_the_zone_goes_to_the_receive_time() -> None:
    """Found by the property test: year 10000 in a destination's zone cannot be rendered."""
    item = _log4j_line({"m": 1}, "9999-12-31T23:59:00.000-0530")
    fast, general = both([item], RequestContext("10.0.0.7"))
    assert fast == general
    assert fast["accepted"] == 1
    assert [key for key, _ in fast["chunks"]][0] == (0, "generic/default/2025/12/01/11")


# ------------------------------------------------------- checks made once per batch, not per event


def _brackets_within(item: bytes, max_bytes: int, max_depth: int) -> bool:
    """The per-item bound the fast path applies when the batch's is not known."""
    return len(item) <= max_bytes and item.count(b"{") + item.count(b"[") <= max_depth


raw_lines = st.lists(
    st.text(alphabet='{}[]"a:,\\é \n', max_size=40).map(lambda t: t.encode("utf-8")), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(raw_lines, st.integers(0, 60), st.integers(0, 12))
def test_the_batch_bound_is_the_per_item_bound(items: list[bytes], max_bytes: int, max_depth: int) -> None:
    """`_within_bounds` says yes only if every item passes the per-item bound, and, for items
    without a newline of their own (`body.split` never gives one), exactly then."""
    within = ingest_mod._within_bounds(items, max_bytes, max_depth)
    each = bool(items) and all(_brackets_within(item, max_bytes, max_depth) for item in items)
    if any(b"\n" in item for item in items):
        assert not within
    else:
        assert within == each


def test_the_batch_bound_refuses_parsed_items_and_stays_linear() -> None:
    assert not ingest_mod._within_bounds([b"{}", {"a": 1}], 100, 8)
    assert not ingest_mod._within_bounds([b"{}", Invalid(1)], 100, 8)
    # Lines just under the bound: the line-start anchor keeps the search to one pass (a search
    # from every position would read each run again from each of its brackets).
    items = [b"[" * 1000 + b"]" * 1000] * 2000
    assert ingest_mod._within_bounds(items, 10_000, 1000)
    assert not ingest_mod._within_bounds(items, 10_000, 999)


def _odd_time(stamp: str) -> bool:
    """What the fast path sends to the general path when it checks each event's time."""
    return stamp[17:19] not in ingest_mod._SECONDS or stamp[19:23] not in ingest_mod._MILLIS


@settings(max_examples=300, deadline=None)
@given(st.lists(log4j_stamps(), min_size=1, max_size=40), st.sampled_from(["generic", "other"]))
def test_times_checked_once_per_batch_as_each_event_would(stamps: list[str], topic: str) -> None:
    """The batch's one look at the times (`_Batch.usual_times`) finds an odd one exactly when
    the per-event check would (it leaves times with any non-ASCII character to that check), and
    the batch then runs again: same outcome as the general path."""
    items = [
        orjson.dumps(
            {"severity": "INFO", "logger": f"dku.audit.{topic}", "message": {"i": i}, "timestamp": stamp}
        )
        for i, stamp in enumerate(stamps)
    ]
    ctx = RequestContext("10.0.0.7")
    ingest = make_ingest()
    unchecked = ingest._fast(list(items), ctx, RECEIVED, checked=False)
    assert (unchecked is None) == any(_odd_time(stamp) or not stamp.isascii() for stamp in stamps)
    if unchecked is not None:
        assert outcome(unchecked) == outcome(ingest._fast(list(items), ctx, RECEIVED, checked=True))
    fast, general = both(items, ctx)
    assert fast == general


def test_a_batch_of_usual_times_is_run_once(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    original = Ingest._fast
    monkeypatch.setattr(
        Ingest,
        "_fast",
        lambda self, *args, checked: runs.append(checked) or original(self, *args, checked=checked),
    )
    usual = [_log4j_line({"m": i}, f"2020-02-19T16:05:{i:02d}.441+0100") for i in range(59)]
    assert make_ingest()(usual, RequestContext("10.0.0.7"), RECEIVED).result.accepted == 59
    assert runs == [False]
    runs.clear()
    odd = [*usual, _log4j_line({"m": 60}, "2020-02-19T16:05:60.441+0100")]
    assert make_ingest()(odd, RequestContext("10.0.0.7"), RECEIVED).result.accepted == 60
    assert runs == [False, True]


def test_stored_lines_are_the_general_functions_lines() -> None:
    """The partition buffers hold `envelope.stored_line` of each event, a newline after each."""
    items = [_log4j_line({"msgType": "m", "i": i}) for i in range(5)]
    ctx = RequestContext("10.0.0.7", node="n1")
    prepared = make_ingest()(items, ctx, RECEIVED)
    server_ts = envelope.format_timestamp(RECEIVED)
    expected = b"".join(
        envelope.stored_line(envelope.unwrap(orjson.loads(item)), "10.0.0.7", server_ts, "n1") + b"\n"
        for item in items
    )
    assert prepared.chunks[(0, "generic/default/2020/02/19/15")] == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.lists(lines(), max_size=12), contexts, st.sampled_from([0.0, 3600.0, 86_400.5])),
        min_size=2,
        max_size=4,
    )
)
def test_plans_kept_across_batches_fit_each_request(
    batches: list[tuple[list[Any], RequestContext, float]],
) -> None:
    """One `Ingest` keeps its plans from batch to batch (keyed by what the request can change:
    header routing key, token); each batch still gets what the general path gives it, with its
    own receive time and context."""
    ingest = make_ingest()
    for items, ctx, later in batches:
        fast = ingest(list(items), ctx, RECEIVED + later)
        general = make_ingest().general(list(items), ctx, RECEIVED + later)
        assert outcome(fast) == outcome(general)


def test_a_plan_is_kept_per_header_routing_key_and_token() -> None:
    """The same events in requests that differ only by what routes them (the routing-key header
    for events without their own, the token a destination requires) or by receive time."""
    items = [
        _log4j_line({"msgType": "m"}),
        _log4j_line({"msgType": "m", "routingKey": "svc_1"}),
        _log4j_line({"msgType": "m", "routingKey": " "}),
    ]
    ingest = make_ingest()
    for ctx, later in [
        (RequestContext("10.0.0.7"), 0.0),
        (RequestContext("10.0.0.7", header_routing_key="svc_1"), 0.0),
        (RequestContext("10.0.0.7", token_name="tok"), 0.0),
        (RequestContext("10.0.0.7", header_routing_key="hdr", token_name="tok"), 7200.0),
        (RequestContext("10.0.0.7"), 7200.0),
    ]:
        fast = ingest(list(items), ctx, RECEIVED + later)
        assert outcome(fast) == outcome(make_ingest().general(list(items), ctx, RECEIVED + later))


def test_a_path_by_the_second_puts_each_event_in_its_own_seconds_partition() -> None:
    """The fast path plans once per minute: a destination whose path names seconds takes the
    general path, so two events of one minute do not share the minute's first partition."""
    route = _route(0, path="{topic}/%Y/%m/%d/%H/%M/%S")
    ingest = Ingest(
        [route], Limits(max_event_bytes=MAX_EVENT_BYTES, max_depth=MAX_DEPTH), None, PartitionPaths("%H")
    )
    items = [
        _log4j_line({"m": 1}, "2020-02-19T16:05:02.441+0100"),
        _log4j_line({"m": 2}, "2020-02-19T16:05:37.000+0100"),
    ]
    prepared = ingest(items, RequestContext("10.0.0.7"), RECEIVED)
    assert prepared.result.accepted == 2
    assert sorted(key for key, _ in prepared.chunks.items()) == [
        (0, "generic/2020/02/19/15/05/02"),
        (0, "generic/2020/02/19/15/05/37"),
    ]


def test_a_nats_destination_by_the_second_takes_the_general_path_too() -> None:
    """The nats destination's partitioner wraps the same paths: its grain is theirs."""
    from logbridge.sinks.config import NatsDestination
    from logbridge.sinks.nats import NatsSink

    def grain(path: str) -> int:
        dest = NatsDestination(name="bus", type="nats", servers=["nats://127.0.0.1:4222"], path=path)
        return NatsSink(dest, key="destinations[0]").partitions.grain

    assert grain("{topic}/%Y/%m/%d/%H") == 900
    assert grain("{topic}/%Y/%m/%d/%H/%M") == 60
    assert grain("{topic}/%Y/%m/%d/%H/%M/%S") == 1
