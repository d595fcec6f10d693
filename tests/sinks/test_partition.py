"""Partition paths: templates render as documented; hostile keys never leave the root."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from logbridge.sinks.partition import PartitionPaths, sanitize_segment


def test_template_renders_event_hour_in_utc() -> None:
    paths = PartitionPaths("{topic}/{routing_key}/%Y/%m/%d/%H")
    # 2020-02-19T16:05:02.441+0100 is 15:05 UTC
    assert paths.render("generic", None, 1582124702.441) == "generic/default/2020/02/19/15"
    assert paths.render("apinode-query", "churn", 1582124702.441) == "apinode-query/churn/2020/02/19/15"


def test_timezone() -> None:
    paths = PartitionPaths("%Y/%m/%d/%H", timezone="Asia/Kolkata")
    assert paths.render("t", None, 1582124702.441) == "2020/02/19/20"


def test_percent_in_topic_is_not_a_strftime_directive() -> None:
    assert PartitionPaths("{topic}/%Y").render("a%Yb", None, 0) == "a%25Yb/1970"


@given(st.text(max_size=300))
def test_segments_never_escape(value: str) -> None:
    seg = sanitize_segment(value)
    assert "/" not in seg and "\\" not in seg and "\0" not in seg
    assert seg not in ("", ".", "..") and not seg.startswith(".")
    assert all(ord(c) >= 0x20 for c in seg)
    assert len(seg) <= 200
    root = Path("/store")
    assert os.path.normpath(root / seg / "x").startswith("/store/")


@given(st.text(max_size=50), st.text(max_size=50))
def test_distinct_keys_stay_distinct(a: str, b: str) -> None:
    if a != b:
        assert sanitize_segment(a) != sanitize_segment(b)


@given(
    st.sampled_from(
        [
            "%Y/%m/%d/%H",
            "%Y/%m/%d/%H/%M",
            "%Y/%m/%d/%H/%M/%S",
            "%Y%m%dT%H%M%S",
            "%H-%R",
            "%j/%T",
            "100%%/%H/%M",
        ]
    ),
    st.sampled_from(["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Paris"]),
    # milliseconds, as event times are: a float a fraction of a microsecond below a boundary
    # is rounded up by datetime itself
    st.lists(
        st.integers(min_value=0, max_value=4_102_444_800_000).map(lambda ms: ms / 1000),
        min_size=1,
        max_size=20,
    ),
)
def test_every_time_renders_as_strftime_would_whatever_the_grain(
    template: str, timezone: str, epochs: list[float]
) -> None:
    """The render cache never coarsens a template: a minute or second template names the
    event's own minute or second (retention and report pruning read the window from it)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    paths = PartitionPaths(template, timezone=timezone)
    tz = UTC if timezone == "UTC" else ZoneInfo(timezone)
    for epoch in epochs:  # one instance: the cache is shared across the times
        assert paths.render("t", None, epoch) == datetime.fromtimestamp(epoch, tz).strftime(template)
