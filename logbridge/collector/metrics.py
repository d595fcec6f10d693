"""Prometheus metrics of one collector (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter("logbridge_events_in", "Events accepted, by topic", ["topic"], registry=r)
        self.events_out = Counter(
            "logbridge_events_out",
            "Stored lines written, by destination and topic",
            ["destination", "topic"],
            registry=r,
        )
        self.invalid = Counter(
            "logbridge_events_invalid",
            "Invalid lines sent to the dead letter, by reason",
            ["reason"],
            registry=r,
        )
        self.unrouted = Counter(
            "logbridge_events_unrouted", "Events no destination takes (dead letter)", registry=r
        )
        self.dead_lettered = Counter(
            "logbridge_dead_letter_lines", "Lines written to the dead letter", registry=r
        )
        self.duplicates = Counter(
            "logbridge_duplicate_batches", "Batches whose range was already stored", registry=r
        )
        self.bytes_in = Counter(
            "logbridge_request_bytes", "Request body bytes received (as sent)", registry=r
        )
        self.requests = Counter(
            "logbridge_requests", "Requests by path and status", ["path", "status"], registry=r
        )
        self.cut_requests = Counter(
            "logbridge_cut_requests",
            "Requests whose body ended before its Content-Length or last chunk (discarded whole)",
            registry=r,
        )
        self.read_timeouts = Counter(
            "logbridge_read_timeouts",
            "Connections closed because headers or body came too slowly, by phase",
            ["phase"],
            registry=r,
        )
        self.auth_failures = Counter(
            "logbridge_auth_failures", "Requests refused for a bad or missing token", registry=r
        )
        self.storage_errors = Counter(
            "logbridge_storage_errors", "Writes refused because storage failed", registry=r
        )
        self.files_published = Counter(
            "logbridge_files_published", "Files published, by destination", ["destination"], registry=r
        )
        self.files_waiting = Gauge(
            "logbridge_files_waiting",
            "Closed staging files not published yet (queued or being uploaded), by destination",
            ["destination"],
            registry=r,
        )
        self.fsync_rounds = Counter(
            "logbridge_fsync_rounds", "Group-commit fsync rounds (one serves many requests)", registry=r
        )
        self.journal_compactions = Counter(
            "logbridge_journal_compactions",
            "Journal compactions finished (snapshot written or not)",
            registry=r,
        )
        self.latency = Histogram(
            "logbridge_request_seconds",
            "POST /events latency until the batch is durable",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        # Publishers (NATS): one observation per request and destination, messages by the ack.
        self.messages_published = Counter(
            "logbridge_messages_published",
            "Messages acknowledged by a publishing destination (NATS JetStream), by destination",
            ["destination"],
            registry=r,
        )
        self.messages_duplicate = Counter(
            "logbridge_messages_duplicate",
            "Messages the destination already held (a retry recognised by its Nats-Msg-Id)",
            ["destination"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "logbridge_publish_seconds",
            "From a request's first publish to its last ack, by destination",
            ["destination"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.publish_failures = Counter(
            "logbridge_publish_failures",
            "Requests a publishing destination failed (answered 503, or 413 for a line too big), "
            "by destination and reason (unreachable, full, timeout, too_large, error)",
            ["destination", "reason"],
            registry=r,
        )
        self.staging_bytes = Gauge(
            "logbridge_staging_bytes", "Bytes in staging files not yet published", registry=r
        )
