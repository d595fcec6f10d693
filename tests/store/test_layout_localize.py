"""Partition paths read back (stream key, time window), and line changes localized."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.sinks.partition import PartitionPaths
from logbridge.store.layout import PartitionLayout, data_path, manifest_path
from logbridge.verify.localize import localize


@pytest.mark.parametrize(
    ("template", "partition", "key", "start", "end"),
    [
        (
            "{topic}/{routing_key}/%Y/%m/%d/%H",
            "generic/default/2026/02/28/23",
            "generic/default/%Y/%m/%d/%H",
            datetime(2026, 2, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 1, 0, tzinfo=UTC),
        ),
        (
            "{topic}/%Y/%m",
            "authfail/2024/02",
            "authfail/%Y/%m",
            datetime(2024, 2, 1, tzinfo=UTC),
            datetime(2024, 3, 1, tzinfo=UTC),
        ),
        (
            "dt=%Y-%m-%d/{topic}",
            "dt=2026-12-01/a%2Fb",
            "dt=%Y-%m-%d/a%2Fb",
            datetime(2026, 12, 1, tzinfo=UTC),
            datetime(2026, 12, 2, tzinfo=UTC),
        ),
    ],
)
def test_partitions_read_back(
    template: str, partition: str, key: str, start: datetime, end: datetime
) -> None:
    layout = PartitionLayout(template)
    assert layout.stream_key(partition) == key
    window = layout.window(partition)
    assert window is not None and (window.start, window.end) == (start, end)


def test_a_template_without_readable_times_has_no_windows() -> None:
    layout = PartitionLayout("{topic}/%b")
    assert not layout.times and layout.window("generic/Dec") is None
    assert layout.window("not/a/match") is None


@given(st.text(min_size=1, max_size=30), st.integers(0, 4_000_000_000))
def test_every_rendered_partition_holds_its_own_time(topic: str, epoch: int) -> None:
    paths = PartitionPaths("{topic}/{routing_key}/%Y/%m/%d/%H", timezone="Europe/Paris")
    layout = PartitionLayout(paths.template, "Europe/Paris")
    partition = paths.render(topic, None, epoch)
    window = layout.window(partition)
    assert window is not None
    # (an hour repeated when clocks go back maps to its first occurrence: widen by one hour)
    assert window.start.timestamp() - 3600 <= epoch < window.end.timestamp() + 3600
    assert layout.stream_key(partition).endswith("/default/%Y/%m/%d/%H")


def test_manifest_paths_round_trip() -> None:
    assert data_path(manifest_path("a/b/events-1.ndjson")) == "a/b/events-1.ndjson"
    assert data_path("a/b/events-1.ndjson") is None


ORIGINAL = [bytes([i]) * 8 for i in range(10)]


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (ORIGINAL[:3] + [b"x" * 8] + ORIGINAL[4:], [("edited-line", 4, 4)]),
        (ORIGINAL[:3] + ORIGINAL[4:], [("removed-line", None, 4)]),
        (ORIGINAL[:3] + [b"x" * 8] + ORIGINAL[3:], [("inserted-line", 4, None)]),
        (ORIGINAL[:3] + [ORIGINAL[4], ORIGINAL[3]] + ORIGINAL[5:], [("reordered-line", 4, 5)]),
        (ORIGINAL[1:] + ORIGINAL[:1], [("reordered-line", 10, 1)]),
        (ORIGINAL, []),
    ],
)
def test_localize(current: list[bytes], expected: list[tuple[str, int | None, int | None]]) -> None:
    assert [(c.kind, c.line, c.original_line) for c in localize(ORIGINAL, current)] == expected


@given(st.lists(st.integers(0, 30), max_size=40), st.lists(st.integers(0, 30), max_size=40))
def test_localize_accounts_for_every_line(a: list[int], b: list[int]) -> None:
    original = [bytes([x]) * 8 for x in a]
    current = [bytes([x]) * 8 for x in b]
    changes = localize(original, current)
    touched_original = {c.original_line for c in changes if c.original_line is not None}
    touched_current = {c.line for c in changes if c.line is not None}
    # Lines not named as changed are the same count on both sides.
    assert len(original) - len(touched_original) == len(current) - len(touched_current)
    if original == current:
        assert changes == []
