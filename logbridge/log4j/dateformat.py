"""java.text.SimpleDateFormat, the part that log4j configurations use, in an English locale.

Used by ``%d{...}`` in PatternLayout, TTCCLayout's ``DateFormat`` and DailyRollingFileAppender's
``DatePattern``. Times are rendered in the process's local time zone, as the JVM's default zone.
"""

from __future__ import annotations

import calendar
import datetime as dt
import time
from dataclasses import dataclass

from ..errors import DateFormatError as DateFormatError  # defined in the one tree; raised here

_LETTERS = "GyMdkHmsSEDFwWahKzZYuXL"
_MONTHS = list(calendar.month_name)[1:]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

ISO8601 = "yyyy-MM-dd HH:mm:ss,SSS"
ABSOLUTE = "HH:mm:ss,SSS"
DATE = "dd MMM yyyy HH:mm:ss,SSS"

# The names log4j's layouts accept in place of a pattern (``%d{ABSOLUTE}``, TTCCLayout's
# ``DateFormat=ISO8601``), compared after toUpperCase().
NAMED_FORMATS = {"ISO8601": ISO8601, "ABSOLUTE": ABSOLUTE, "DATE": DATE}


def named_pattern(name: str) -> str:
    """The SimpleDateFormat pattern for ``name``: a named format's, else ``name`` itself."""
    return NAMED_FORMATS.get(name.upper(), name)


@dataclass(frozen=True)
class _Field:
    letter: str
    count: int


def compile_pattern(pattern: str) -> list[str | _Field]:
    out: list[str | _Field] = []
    i, n = 0, len(pattern)
    lit: list[str] = []
    while i < n:
        c = pattern[i]
        if c == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                lit.append("'")
                i += 2
                continue
            j = i + 1
            while True:
                if j >= n:
                    raise DateFormatError("Unterminated quote")
                if pattern[j] == "'":
                    if j + 1 < n and pattern[j + 1] == "'":
                        lit.append("'")
                        j += 2
                        continue
                    break
                lit.append(pattern[j])
                j += 1
            i = j + 1
            continue
        if ("a" <= c <= "z") or ("A" <= c <= "Z"):
            if c not in _LETTERS:
                raise DateFormatError(f"Illegal pattern character '{c}'")
            j = i
            while j < n and pattern[j] == c:
                j += 1
            if c == "X" and j - i > 3:
                raise DateFormatError("invalid ISO 8601 format: length=" + str(j - i))
            if lit:
                out.append("".join(lit))
                lit = []
            out.append(_Field(c, j - i))
            i = j
            continue
        lit.append(c)
        i += 1
    if lit:
        out.append("".join(lit))
    return out


def _pad(value: int, count: int) -> str:
    s = str(abs(value)).zfill(count)
    return "-" + s if value < 0 else s


def _us_week(d: dt.date) -> tuple[int, int]:
    """(week year, week of year) with the US rules: weeks start on Sunday, week 1 holds Jan 1."""

    def start_of_week1(year: int) -> dt.date:
        jan1 = dt.date(year, 1, 1)
        return jan1 - dt.timedelta(days=(jan1.weekday() + 1) % 7)

    year = d.year
    if d >= start_of_week1(year + 1):
        year += 1
    return year, (d - start_of_week1(year)).days // 7 + 1


def _offset(t: dt.datetime, letter: str, count: int) -> str:
    off = t.utcoffset() or dt.timedelta(0)
    minutes = int(off.total_seconds()) // 60
    if letter == "X" and minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    if letter == "Z":
        return f"{sign}{hh:02d}{mm:02d}"
    if count == 1:
        return f"{sign}{hh:02d}"
    if count == 2:
        return f"{sign}{hh:02d}{mm:02d}"
    return f"{sign}{hh:02d}:{mm:02d}"


def _field(t: dt.datetime, ms: int, f: _Field) -> str:
    c, k = f.letter, f.count
    if c == "G":
        return "Anno Domini" if k >= 4 else "AD"
    if c == "y":
        return _pad(t.year % 100, 2) if k == 2 else _pad(t.year, k)
    if c == "Y":
        wy = _us_week(t.date())[0]
        return _pad(wy % 100, 2) if k == 2 else _pad(wy, k)
    if c in "ML":
        if k >= 4:
            return _MONTHS[t.month - 1]
        if k == 3:
            return _MONTHS[t.month - 1][:3]
        return _pad(t.month, k)
    if c == "d":
        return _pad(t.day, k)
    if c == "H":
        return _pad(t.hour, k)
    if c == "k":
        return _pad(t.hour or 24, k)
    if c == "K":
        return _pad(t.hour % 12, k)
    if c == "h":
        return _pad(t.hour % 12 or 12, k)
    if c == "m":
        return _pad(t.minute, k)
    if c == "s":
        return _pad(t.second, k)
    if c == "S":
        return _pad(ms, k)
    if c == "E":
        name = _DAYS[t.weekday()]
        return name if k >= 4 else name[:3]
    if c == "u":
        return _pad(t.isoweekday(), k)
    if c == "D":
        return _pad(t.timetuple().tm_yday, k)
    if c == "F":
        return _pad((t.day - 1) // 7 + 1, k)
    if c == "w":
        return _pad(_us_week(t.date())[1], k)
    if c == "W":
        first = t.replace(day=1).date()
        return _pad((t.day + (first.weekday() + 1) % 7 - 1) // 7 + 1, k)
    if c == "a":
        return "AM" if t.hour < 12 else "PM"
    if c == "z":
        zone_name = t.tzname()
        if zone_name and zone_name[0] not in "+-":
            return zone_name
        # tzdata has no abbreviation for this zone (it writes "-02"); Java prints GMT-02:00.
        return "GMT" + _offset(t, "X", 3) if t.utcoffset() else "GMT"
    return _offset(t, c, k)  # Z, X


class SimpleDateFormat:
    """Formats epoch milliseconds like ``new SimpleDateFormat(pattern).format(new Date(ms))``."""

    def __init__(self, pattern: str, tz: dt.tzinfo | None = None):
        self.pattern = pattern
        self.tz = tz
        self._parts = compile_pattern(pattern)
        self._cache: tuple[int, dt.datetime, list[str | _Field]] | None = None

    def format_ms(self, ms: int) -> str:
        secs, millis = divmod(ms, 1000)
        # Log lines come many to a second: everything but the milliseconds is formatted once
        # per second (log4j's CachedDateFormat does the same). The zone is read per second too,
        # so a TZ change shows from the next second on.
        cached = self._cache
        if cached is None or cached[0] != secs:
            if self.tz is None:
                t = dt.datetime.fromtimestamp(secs).astimezone()
            else:
                t = dt.datetime.fromtimestamp(secs, self.tz)
            pieces = [
                p if isinstance(p, str) else (p if p.letter == "S" else _field(t, 0, p)) for p in self._parts
            ]
            cached = self._cache = (secs, t, pieces)
        t, pieces = cached[1], cached[2]
        return "".join(p if isinstance(p, str) else _field(t, millis, p) for p in pieces)


# DailyRollingFileAppender periods, in log4j's order (RollingCalendar types).
MINUTE, HOUR, HALF_DAY, DAY, WEEK, MONTH = range(6)


def periodicity(fmt: SimpleDateFormat) -> int | None:
    """DailyRollingFileAppender.computeCheckPeriod: the shortest period whose boundary after the
    epoch changes the formatted name (both in GMT); None is log4j's TOP_OF_TROUBLE."""
    gmt = SimpleDateFormat(fmt.pattern, dt.UTC)
    r0 = gmt.format_ms(0)
    for kind in range(6):
        nxt = next_boundary_ms(0, kind, dt.UTC)
        if gmt.format_ms(nxt) != r0:
            return kind
    return None


def next_boundary_ms(now_ms: int, kind: int, tz: dt.tzinfo | None = None) -> int:
    """RollingCalendar.getNextCheckMillis: the start of the next period after ``now_ms``."""
    t = dt.datetime.fromtimestamp(now_ms / 1000, tz) if tz else dt.datetime.fromtimestamp(now_ms / 1000)
    t = t.replace(tzinfo=None) if tz is None else t
    if kind == MINUTE:
        n = t.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    elif kind == HOUR:
        n = t.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    elif kind == HALF_DAY:
        base = t.replace(minute=0, second=0, microsecond=0)
        n = base.replace(hour=12) if t.hour < 12 else base.replace(hour=0) + dt.timedelta(days=1)
    elif kind == DAY:
        n = t.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    elif kind == WEEK:
        day = t.replace(hour=0, minute=0, second=0, microsecond=0)
        n = day - dt.timedelta(days=(day.weekday() + 1) % 7) + dt.timedelta(days=7)
    else:
        first = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        n = (
            first.replace(year=first.year + 1, month=1)
            if first.month == 12
            else first.replace(month=first.month + 1)
        )
    if tz is None:
        return int(time.mktime(n.timetuple())) * 1000
    return int(n.timestamp() * 1000)
