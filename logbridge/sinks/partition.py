"""Partition paths: ``{topic}/{routing_key}/%Y/%m/%d/%H`` rendered safely and cheaply.

Topic and routing key come from the network, so they are percent-encoded before they touch a
path: ``/``, ``\\``, NUL, control characters and a leading ``.`` are encoded, which keeps
distinct keys distinct (``a/b`` and ``a_b`` never share a folder) and makes ``..`` harmless.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from urllib.parse import quote
from zoneinfo import ZoneInfo

_SAFE = "@+=,-._~"
_MAX_SEGMENT = 200


def sanitize_segment(value: str) -> str:
    """One path segment that cannot escape its parent, whatever ``value`` holds."""
    encoded = quote(value, safe=_SAFE)
    if not encoded or encoded.startswith("."):
        # "", ".", ".." and hidden names: encode the leading dot so the result is a plain name.
        encoded = "%2E" + encoded[1:] if encoded else "%00empty"
    if len(encoded) > _MAX_SEGMENT:
        # Long keys are cut but stay distinct by a hash of the whole value.
        import hashlib

        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = encoded[: _MAX_SEGMENT - 17].rstrip("%") + "-" + digest
    return encoded


# strftime directives finer than the 15-minute cache bucket, by the grain they need (seconds).
_FINE_DIRECTIVES = {"S": 1, "s": 1, "f": 1, "T": 1, "X": 1, "c": 1, "r": 1, "M": 60, "R": 60}


def _bucket_for(template: str) -> int:
    """The coarsest cache bucket that renders ``template`` exactly (seconds)."""
    bucket = 900
    i = template.find("%")
    while i != -1 and i + 1 < len(template):
        code = template[i + 1]
        if code in _FINE_DIRECTIVES:
            bucket = min(bucket, _FINE_DIRECTIVES[code])
        i = template.find("%", i + 2)  # "%%" is a literal percent: skip both characters
    return bucket


class PartitionPaths:
    """Renders a destination's path template for (topic, routing key, time), with a cache.

    The cache is keyed by 15-minute buckets: coarse enough that a live stream hits it almost
    always, fine enough for every real time zone offset (all are multiples of 15 minutes). A
    template that names minutes or seconds gets buckets of its own grain: rendered from the
    15-minute bucket's start, every line of 19:50 would land in ``…/19/45`` and retention and
    report pruning, which read a folder's window from its name, would take it for 19:45.
    """

    def __init__(self, template: str, *, timezone: str = "UTC", placeholder: str = "default"):
        self.template = template.strip("/")
        self.grain = _bucket_for(self.template)  # seconds one cached rendering stands for
        self.tz: tzinfo = UTC if timezone == "UTC" else ZoneInfo(timezone)
        self.placeholder = sanitize_segment(placeholder)
        self._cache: dict[tuple[str, str | None, int], str] = {}

    def render(self, topic: str, routing_key: str | None, epoch: float) -> str:
        bucket = int(epoch // self.grain)
        key = (topic, routing_key, bucket)
        path = self._cache.get(key)
        if path is None:
            if len(self._cache) > 50_000:
                self._cache.clear()
            when = datetime.fromtimestamp(bucket * self.grain, self.tz)
            # strftime first: a '%' inside a topic must never be read as a directive.
            path = (
                when.strftime(self.template)
                .replace("{topic}", sanitize_segment(topic))
                .replace(
                    "{routing_key}",
                    sanitize_segment(routing_key) if routing_key is not None else self.placeholder,
                )
            )
            self._cache[key] = path
        return path

    def render_received(self, topic: str, routing_key: str | None, received: float) -> str:
        """A line without a time of its own goes to its receive time's partition, like any other."""
        return self.render(topic, routing_key, received)
