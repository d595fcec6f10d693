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
