"""Pruning never drops an event in the window: for any window and any event time, every folder
on the event's path (year, month, day, hour, in any partition time zone) meets the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from logbridge.report.layout import Window, _interval, parse_template

TIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham"])


@given(
    event=TIMES,
    start=TIMES,
    length=st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=400)),
    zone=ZONES,
)
def test_no_folder_holding_an_event_in_the_window_is_pruned(
    event: datetime, start: datetime, length: timedelta, zone: str
) -> None:
    window = Window(start, start + length)
    if not (window.since <= event < window.until):  # type: ignore[operator]
        return
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    local = event.astimezone(tz)
    levels = parse_template("{topic}/{routing_key}/%Y/%m/%d/%H")
    names = [f"{local:%Y}", f"{local:%m}", f"{local:%d}", f"{local:%H}"]
    fields: dict[str, str] = {}
    for level, name in zip(levels[2:], names, strict=True):
        match = level.pattern.match(name)
        assert match is not None
        fields.update({k: v for k, v in match.groupdict().items() if v is not None})
        bounds = _interval(fields, tz)
        assert bounds is not None
        assert not window.misses(*bounds), (fields, bounds, window)


@given(st.text(max_size=12))
def test_any_folder_name_either_matches_a_time_level_or_is_skipped(name: str) -> None:
    level = parse_template("dt=%Y-%m-%d")[0]
    match = level.pattern.match(name)
    if match is not None:
        assert name.startswith("dt=") and len(name) == 13


def test_the_repeated_hour_when_clocks_go_back_is_kept() -> None:
    # 2020-10-25 in Paris: 02:00-03:00 local happens twice; the second is 01:00-02:00 UTC.
    paris = ZoneInfo("Europe/Paris")
    second = datetime(2020, 10, 25, 1, 30, tzinfo=UTC)
    assert second.astimezone(paris).hour == 2
    window = Window(datetime(2020, 10, 25, 1, 0, tzinfo=UTC), datetime(2020, 10, 25, 1, 45, tzinfo=UTC))
    bounds = _interval({"Y": "2020", "m": "10", "d": "25", "H": "02"}, paris)
    assert bounds is not None and not window.misses(*bounds)
