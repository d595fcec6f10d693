"""``logbridge consume``: writers draining NATS JetStream into the partitioned store (docs/nats.md)."""
