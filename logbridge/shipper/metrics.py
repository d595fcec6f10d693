"""Prometheus metrics of one shipper (its own registry, so tests can run several at once)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines = Counter("logbridge_shipper_lines", "Lines the collector acknowledged", registry=r)
        self.bytes = Counter("logbridge_shipper_bytes", "File bytes the collector acknowledged", registry=r)
        self.batches = Counter("logbridge_shipper_batches", "Batches acknowledged", ["result"], registry=r)
        self.retries = Counter(
            "logbridge_shipper_retries", "Requests retried (network, 429, 5xx, auth)", registry=r
        )
        self.dead_lines = Counter(
            "logbridge_shipper_dead_lettered_lines", "Lines put in the local dead-letter folder", registry=r
        )
        self.oversized = Counter(
            "logbridge_shipper_oversized_lines",
            "Lines over max_line_bytes (sent as dead-letter markers)",
            registry=r,
        )
        self.lost = Counter(
            "logbridge_shipper_lost_bytes",
            "Bytes that could not be read (file deleted or truncated before it was read)",
            registry=r,
        )
        self.lost_files = Counter(
            "logbridge_shipper_lost_files",
            "Files that lost bytes before they were read (deleted or truncated; the log names each)",
            registry=r,
        )
        self.lag = Gauge("logbridge_shipper_lag_bytes", "Bytes written but not yet acknowledged", registry=r)
        self.files = Gauge("logbridge_shipper_open_files", "Files being tailed", registry=r)
        self.waiting = Gauge(
            "logbridge_shipper_waiting_files",
            "Files with bytes to read waiting for a descriptor (max_open_files reached)",
            registry=r,
        )
        self.fd_shortages = Counter(
            "logbridge_shipper_fd_shortages",
            "Times the process ran out of file descriptors (files were closed to make room)",
            registry=r,
        )

        self.collector = Gauge(
            "logbridge_shipper_collector",
            "1 for the collector URL batches go to now, 0 for the other URLs of collector.urls",
            ["url"],
            registry=r,
        )
        self.collector_switches = Counter(
            "logbridge_shipper_collector_switches",
            "Times the shipper moved to another collector URL (failover, failback)",
            registry=r,
        )
        self.collector_failures = Counter(
            "logbridge_shipper_collector_failures",
            "Failed requests per collector URL (network error, timeout, 401/403/408/425/429, 5xx)",
            ["url"],
            registry=r,
        )

    def current_collector(self, names: tuple[str, ...], current: str) -> None:
        for name in names:
            self.collector.labels(name).set(1 if name == current else 0)

    def serve(self, host: str, port: int) -> None:
        start_http_server(port, addr=host, registry=self.registry)
