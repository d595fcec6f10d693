"""Where manifests live in a store, and what a partition path says (stream key, time window).

Manifests are kept out of the data folders, under a sibling prefix at the destination's root::

    {root}/generic/default/2026/12/01/19/events-….ndjson                       the data file (DSS layout)
    {root}/.logbridge/manifests/generic/default/2026/12/01/19/events-….ndjson.manifest
    {root}/.logbridge/retention/<writer>-<destination>-00000001.manifest      a retention record

A leading ``.`` can never start a rendered partition (topics and routing keys are sanitized, a
leading dot encoded; time fields are digits), so ``.logbridge`` never collides with data, and
readers that skip hidden folders (DSS, Hadoop, Spark) never see it.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

META = ".logbridge"
MANIFESTS = f"{META}/manifests"
RETENTION = f"{META}/retention"
SUFFIX = ".manifest"


def manifest_path(relpath: str) -> str:
    """The manifest of the data file ``relpath`` (both relative to the destination root)."""
    return f"{MANIFESTS}/{relpath}{SUFFIX}"


def data_path(manifest_relpath: str) -> str | None:
    """The data file a manifest path names, or None if it is not one."""
    prefix = MANIFESTS + "/"
    if manifest_relpath.startswith(prefix) and manifest_relpath.endswith(SUFFIX):
        return manifest_relpath[len(prefix) : -len(SUFFIX)]
    return None


def retention_path(writer: str, destination: str, seq: int) -> str:
    return f"{RETENTION}/{writer}-{destination}-{seq:08d}{SUFFIX}"


# strftime directive → (regex, the field it sets, how fine it is: 0 year … 5 second)
_DIRECTIVES: dict[str, tuple[str, str, int]] = {
    "Y": (r"\d{4}", "year", 0),
    "m": (r"\d{2}", "month", 1),
    "d": (r"\d{2}", "day", 2),
    "j": (r"\d{3}", "yday", 2),
    "H": (r"\d{2}", "hour", 3),
    "M": (r"\d{2}", "minute", 4),
    "S": (r"\d{2}", "second", 5),
}
_PLACEHOLDERS = {"{topic}": "topic", "{routing_key}": "routing_key"}


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # exclusive


class PartitionLayout:
    """Reads rendered partitions of one path template back: the stream key (the template with its
    topic and routing key filled in, its time fields left as they are: ``generic/default/%Y/%m/%d/%H``)
    and the partition's time window. A template with a directive other than %Y %m %d %j %H %M %S
    reads no times (``times`` is False: such a destination cannot have ``retention``)."""

    def __init__(self, template: str, timezone: str | tzinfo = "UTC"):
        self.template = template.strip("/")
        self.tz: tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) and timezone != "UTC" else UTC
        if isinstance(timezone, tzinfo):
            self.tz = timezone
        pattern = []
        self._parts: list[tuple[str, str]] = []  # (kind, text): literal, placeholder or directive
        self.times = True
        self.finest = -1
        i = 0
        t = self.template
        while i < len(t):
            placeholder = next((p for p in _PLACEHOLDERS if t.startswith(p, i)), None)
            if placeholder is not None:
                pattern.append(f"(?P<{_PLACEHOLDERS[placeholder]}{i}>[^/]+)")
                self._parts.append(("placeholder", placeholder))
                i += len(placeholder)
            elif t[i] == "%" and i + 1 < len(t):
                code = t[i + 1]
                if code == "%":
                    pattern.append("%")
                    self._parts.append(("literal", "%"))
                elif code in _DIRECTIVES:
                    regex, name, fineness = _DIRECTIVES[code]
                    pattern.append(f"(?P<{name}{i}>{regex})")
                    self._parts.append(("directive", "%" + code))
                    self.finest = max(self.finest, fineness)
                else:
                    self.times = False
                    pattern.append(r"[^/]+?")
                    self._parts.append(("directive", "%" + code))
                i += 2
            else:
                pattern.append(re.escape(t[i]))
                self._parts.append(("literal", t[i]))
                i += 1
        self.times = self.times and self.finest >= 0
        self._regex = re.compile("".join(pattern) + r"\Z")

    def match(self, partition: str) -> dict[str, str] | None:
        m = self._regex.match(partition.strip("/"))
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def stream_key(self, partition: str) -> str:
        """The partition with its time fields put back as directives ("" if it does not match)."""
        found = self.match(partition)
        if found is None:
            return ""
        values = iter(v for k, v in found.items() if k.startswith(("topic", "routing_key")))
        out = []
        for kind, text in self._parts:
            out.append(next(values, "") if kind == "placeholder" else text)
        return "".join(out)

    def window(self, partition: str) -> Window | None:
        """The time span the partition holds, or None (no time fields, or not this template's)."""
        if not self.times:
            return None
        found = self.match(partition)
        if found is None:
            return None
        fields: dict[str, int] = {}
        for key, value in found.items():
            name = key.rstrip("0123456789")
            if name in ("topic", "routing_key"):
                continue
            if name in fields and fields[name] != int(value):
                return None  # the same field twice, with two values: not a real partition
            fields[name] = int(value)
        try:
            year = fields.get("year", 1970)
            if "yday" in fields:
                start = datetime(year, 1, 1, tzinfo=self.tz) + timedelta(days=fields["yday"] - 1)
                month, day = start.month, start.day
            else:
                month, day = fields.get("month", 1), fields.get("day", 1)
            start = datetime(
                year,
                month,
                day,
                fields.get("hour", 0),
                fields.get("minute", 0),
                fields.get("second", 0),
                tzinfo=self.tz,
            )
        except ValueError:
            return None
        return Window(start, _advance(start, self.finest))


def _advance(start: datetime, fineness: int) -> datetime:
    if fineness == 0:
        return start.replace(year=start.year + 1)
    if fineness == 1:
        days = calendar.monthrange(start.year, start.month)[1]
        return start + timedelta(days=days)
    step = {2: timedelta(days=1), 3: timedelta(hours=1), 4: timedelta(minutes=1)}.get(
        fineness, timedelta(seconds=1)
    )
    return start + step


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
