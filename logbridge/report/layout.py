"""Which published files a question needs: the store's path template read backwards.

A destination writes ``{root}/{topic}/{routing_key}/%Y/%m/%d/%H/{file}`` (DESIGN.md §5; the
template is configurable). Reading a folder level by level, each level's name either names a
topic / routing key (kept when the question filters on it) or carries time fields; the time
fields seen so far bound the folder to an interval in the destination's time zone, and a folder
whose interval misses the question's window is never listed. A one-day question over a year
therefore lists a handful of folders per topic instead of 8,760 hour folders.

This relies on partitions by event time (``partition_time: event``, the default); a destination
partitioned by receive time would need the window widened by the longest shipping delay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from ..sinks.partition import sanitize_segment

DEFAULT_TEMPLATE = "{topic}/{routing_key}/%Y/%m/%d/%H"
DATA_SUFFIXES = (".ndjson", ".ndjson.gz", ".ndjson.zst")

# The strftime directives a partition template may use, as the path fields they write.
_DIRECTIVES = {
    "%Y": r"(?P<Y>[0-9]{4})",
    "%m": r"(?P<m>[0-9]{2})",
    "%d": r"(?P<d>[0-9]{2})",
    "%H": r"(?P<H>[0-9]{2})",
}


class DataFile(NamedTuple):
    """A published data file: its path in the store's file system, size, and a version stamp
    (modification time or ETag) that changes if the file is ever replaced."""

    path: str
    size: int
    stamp: str


def _stamp(entry: dict[str, Any]) -> str:
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated", "generation"):
        if entry.get(key) is not None:
            return str(entry[key])
    return ""


@dataclass(frozen=True)
class Level:
    """One folder level of the template: a topic, a routing key, or a pattern of time fields."""

    kind: str  # "topic" | "routing_key" | "time" | "literal"
    pattern: re.Pattern[str]


def parse_template(template: str) -> list[Level]:
    """The folder levels of a partition template; a template these levels cannot read (a
    directive other than %Y %m %d %H) raises ValueError naming the piece."""
    levels = []
    for segment in template.strip("/").split("/"):
        if segment == "{topic}":
            levels.append(Level("topic", re.compile(r".+")))
            continue
        if segment == "{routing_key}":
            levels.append(Level("routing_key", re.compile(r".+")))
            continue
        pieces = re.split(r"(%.)", segment)
        regex = ""
        has_time = False
        for piece in pieces:
            if piece.startswith("%") and len(piece) == 2:
                if piece not in _DIRECTIVES:
                    raise ValueError(
                        f"the layout {template!r} uses {piece}: reports read %Y, %m, %d and %H only"
                    )
                regex += _DIRECTIVES[piece]
                has_time = True
            elif "{" in piece:
                raise ValueError(
                    f"the layout {template!r} has {piece!r}: {{topic}} and {{routing_key}} must be "
                    "whole folder names"
                )
            else:
                regex += re.escape(piece)
        levels.append(Level("time" if has_time else "literal", re.compile(regex + r"\Z")))
    return levels


@dataclass
class Window:
    """The question's time window, UTC-aware datetimes; ``until`` is exclusive."""

    since: datetime | None = None
    until: datetime | None = None

    def misses(self, start: datetime, end: datetime) -> bool:
        """Whether [start, end) and the window do not meet."""
        return (self.until is not None and start >= self.until) or (
            self.since is not None and end <= self.since
        )


@dataclass
class Selection:
    """What a question keeps while walking the store, and what the walk saw."""

    window: Window = field(default_factory=Window)
    topics: frozenset[str] | None = None  # sanitized folder names; None: all
    routing_keys: frozenset[str] | None = None
    folders_listed: int = 0
    files_read: int = 0  # data files the question covers
    files_parsed: int = 0  # of which read as JSON now (the others came from the digest cache)
    notes: list[str] = field(default_factory=list)
    # Paths that fit neither the layout nor a data file's name: counted, the first few kept
    # (a store full of strays must not fill the memory with their names).
    skipped: list[str] = field(default_factory=list)
    skipped_count: int = 0

    def skip(self, path: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < 10:
            self.skipped.append(path)

    @classmethod
    def of(
        cls, window: Window, topics: list[str] | None, routing_keys: list[str] | None, placeholder: str
    ) -> Selection:
        # A filter on routing key "default" means "no routing key", stored under the placeholder.
        def folders(values: list[str] | None, placeholder: str | None = None) -> frozenset[str] | None:
            if not values:
                return None
            return frozenset(sanitize_segment(v) for v in values) | (
                {sanitize_segment(placeholder)} if placeholder and placeholder in values else set()
            )

        return cls(window, folders(topics), folders(routing_keys, placeholder))


def _interval(fields: dict[str, str], tz: tzinfo) -> tuple[datetime, datetime] | None:
    """The [start, end) that the time fields read so far bound, or None before a year is known."""
    if "Y" not in fields:
        return None
    year = int(fields["Y"])
    month = int(fields.get("m", 1))
    day = int(fields.get("d", 1))
    hour = int(fields.get("H", 0))
    try:
        start = datetime(year, month, day, hour, tzinfo=tz)
    except ValueError:
        return None  # not a real date: let the file be read rather than silently dropped
    if "H" in fields:
        end = start + timedelta(hours=1)
    elif "d" in fields:
        end = start + timedelta(days=1)
    elif "m" in fields:
        end = start.replace(year=year + (month == 12), month=month % 12 + 1)
    else:
        end = start.replace(year=year + 1)
    if tz is not UTC:
        # Where clocks go back, a local hour (01:00-02:00 twice) covers two UTC hours; one hour
        # more on each side keeps both, for the price of a folder or two read for nothing.
        return start - timedelta(hours=1), end + timedelta(hours=1)
    return start, end


def find_data_files(
    fs: Any, root: str, levels: list[Level], selection: Selection, tz: tzinfo
) -> list[DataFile]:
    """Every published data file under ``root`` that the selection may need, sorted.

    Hidden entries (the store's ``.logbridge/`` manifests) and manifests are passed over;
    anything else that is neither a data file nor a folder of the layout is noted in the
    selection (`Selection.skip`; the caller says so: nothing is dropped unseen)."""
    found: list[DataFile] = []

    def walk(path: str, depth: int, fields: dict[str, str]) -> None:
        selection.folders_listed += 1
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:
            return
        for entry in sorted(entries, key=lambda e: e["name"]):
            full = entry["name"].rstrip("/")
            name = full.rsplit("/", 1)[-1]
            if full == path.rstrip("/") or not name:
                continue  # some stores answer the prefix itself
            if name.startswith("."):
                # Never data: partition names are sanitized so that none starts with a dot, and
                # the store keeps its manifests under .logbridge/ at the root.
                continue
            if entry["type"] != "directory":
                if depth < len(levels):
                    selection.skip(full)
                elif name.endswith(DATA_SUFFIXES):
                    found.append(DataFile(full, int(entry.get("size") or 0), _stamp(entry)))
                elif "manifest" not in name:
                    selection.skip(full)
                continue
            if depth >= len(levels):
                selection.skip(full + "/")
                continue
            level = levels[depth]
            match = level.pattern.match(name)
            if match is None:
                selection.skip(full + "/")
                continue
            if level.kind == "topic" and selection.topics is not None and name not in selection.topics:
                continue
            if (
                level.kind == "routing_key"
                and selection.routing_keys is not None
                and name not in selection.routing_keys
            ):
                continue
            deeper = fields
            if level.kind == "time":
                deeper = {**fields, **{k: v for k, v in match.groupdict().items() if v is not None}}
                bounds = _interval(deeper, tz)
                if bounds is not None and selection.window.misses(*bounds):
                    continue
            walk(full, depth + 1, deeper)

    walk(root, 0, {})
    return sorted(found)


__all__ = [
    "DATA_SUFFIXES",
    "DEFAULT_TEMPLATE",
    "DataFile",
    "Level",
    "Selection",
    "Window",
    "find_data_files",
    "parse_template",
]
