"""The JSON behind the operator page: ``/api/stats`` and ``/api/recent``.

The live numbers come from `LiveStats`; counters that already exist (requests by status, files
published, publish failures) are read from the collector's Prometheus registry rather than
counted twice; destination health from the sinks, which may be asked from any thread.
"""

from __future__ import annotations

import time
from typing import Any, cast

from prometheus_client import CollectorRegistry

from ... import envelope
from ...sinks.base import Publisher, Sink
from ..core import Collector
from ..stats import LiveStats

Samples = dict[str, list[tuple[dict[str, str], float]]]
MAX_LIMIT = 1000
MAX_FILTER_CHARS = 200


class UiApi:
    def __init__(self, collector: Collector, stats: LiveStats, *, refresh: float):
        self.collector = collector
        self.stats = stats
        self.refresh = refresh

    def stats_payload(self) -> dict[str, Any]:
        now = time.time()
        collector = self.collector
        samples = _samples(collector.metrics.registry)  # one pass: each costs a few hundred µs
        problem = collector.storage_problem()
        requests = {
            labels["status"]: int(value)
            for labels, value in samples.get("logbridge_requests_total", [])
            if labels.get("path") == "/events"
        }
        return {
            "now": envelope.format_timestamp(now),
            "uptime_s": round(now - self.stats.started, 1),
            "refresh_s": self.refresh,
            "stale_after_s": self.stats.stale_after,
            "health": {"status": "degraded" if problem else "ok", "reason": problem},
            "ingest": self.stats.topics(now),
            "nodes": self.stats.nodes(now),
            "dead_letter": self.stats.dead_letter(),
            "destinations": self.destinations(samples),
            "requests": {
                "by_status": dict(sorted(requests.items())),
                "unavailable_503": requests.get("503", 0),
                "auth_failures": int(_total(samples, "logbridge_auth_failures_total")),
                "storage_errors": int(_total(samples, "logbridge_storage_errors_total")),
            },
        }

    def destinations(self, samples: Samples) -> list[dict[str, Any]]:
        """Each destination's backlog and trouble, the dead letter last."""
        published = _by_destination(samples, "logbridge_files_published_total")
        messages = _by_destination(samples, "logbridge_messages_published_total")
        failures = _by_destination(samples, "logbridge_publish_failures_total")
        rows: list[dict[str, Any]] = []
        collector = self.collector
        for route in collector.routes:
            name = route.dest.name
            sink = cast(Sink | Publisher, route.sink)
            row: dict[str, Any] = {
                "name": name,
                "type": getattr(route.dest, "type", "?"),
                "problem": sink.problem(),
            }
            if route.publishes:
                row |= {
                    "messages_published": int(messages.get(name, 0)),
                    "publish_failures": int(failures.get(name, 0)),
                }
            else:
                row |= _sink_backlog(cast(Sink, route.sink), published)
            rows.append(row)
        dead = collector.dead_letter
        rows.append(
            {"name": "dead letter", "type": "filesystem", "problem": dead.problem()}
            | _sink_backlog(dead, published)
        )
        return rows

    def recent_payload(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Raises ValueError with what to send instead for a bad ``limit``."""
        raw_limit = (query.get("limit") or ["100"])[0]
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit[:20]!r}")
        text = (query.get("filter") or [""])[0][:MAX_FILTER_CHARS]
        limit = min(int(raw_limit), self.stats.recent_events)
        events = self.stats.recent(limit, text)
        return {"limit": limit, "filter": text, "count": len(events), "events": events}


def _sink_backlog(sink: Sink, published: dict[str, float]) -> dict[str, Any]:
    return {
        "files_waiting": sink.pending,
        "staging_bytes": sink.staging_bytes(),
        "blocked": sink.blocked,
        "files_published": int(published.get(sink.name, 0)),
    }


def _samples(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry by name (``…_total`` for counters), in one collection."""
    samples: Samples = {}
    for family in registry.collect():
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def _total(samples: Samples, name: str) -> float:
    return sum(value for _, value in samples.get(name, []))


def _by_destination(samples: Samples, name: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in samples.get(name, []):
        key = labels.get("destination", "")
        totals[key] = totals.get(key, 0.0) + value
    return totals
