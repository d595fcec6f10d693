"""Prometheus metrics of one ``logbridge consume`` writer (its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WriterMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.messages = Counter("logbridge_consume_messages", "Messages stored and acknowledged", registry=r)
        self.events = Counter(
            "logbridge_consume_events", "Stored lines written, by destination", ["destination"], registry=r
        )
        self.bytes = Counter("logbridge_consume_bytes", "Message body bytes stored", registry=r)
        self.redeliveries = Counter(
            "logbridge_consume_redeliveries", "Messages received more than once", registry=r
        )
        self.already_staged = Counter(
            "logbridge_consume_already_staged",
            "Redelivered messages this writer had staged already (acked, not written again)",
            registry=r,
        )
        self.claimed_elsewhere = Counter(
            "logbridge_consume_claimed_elsewhere",
            "Deliveries of messages another writer claimed (not written; delivered again later)",
            registry=r,
        )
        self.dead_letters = Counter(
            "logbridge_consume_dead_letters",
            "Messages sent to the dead letter, by reason",
            ["reason"],
            registry=r,
        )
        self.ack_failures = Counter(
            "logbridge_consume_ack_failures", "Acks JetStream did not confirm (retried)", registry=r
        )
        self.storage_errors = Counter(
            "logbridge_consume_storage_errors", "Batches refused because storage failed", registry=r
        )
        self.ack_seconds = Histogram(
            "logbridge_consume_ack_seconds",
            "A batch's fetch to its acks confirmed",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.files_published = Counter(
            "logbridge_consume_files_published", "Files published to the store", registry=r
        )
        self.staging_bytes = Gauge("logbridge_consume_staging_bytes", "Bytes in staging files", registry=r)
