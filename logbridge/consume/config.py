"""A ``logbridge consume`` writer's configuration (DESIGN.md §6, docs/nats.md "Writers").

```yaml
nats: {servers: ["nats://127.0.0.1:4222"], stream: AUDIT, consumer: writers}
state_dir: /var/lib/logbridge/writer-1
dead_letter: file:///var/lib/logbridge/dead-letter
destinations: [ ...the collector's filesystem destinations, same keys... ]
```
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..collector.config import JournalSettings, Listen, check_state_dir_outside_stores
from ..config import Duration, StrictModel, load_yaml, validate
from ..errors import ConfigError
from ..sinks.config import FilesystemDestination, NatsConnection

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class NatsSource(NatsConnection):
    """Where the writer reads: the stream, its durable pull consumer, and the claims stream."""

    consumer: str = Field(default="writers", pattern=_ID)
    # A message not acknowledged this long after its delivery is delivered again (to any writer).
    ack_wait: Duration = 30.0
    # Messages delivered and not yet acknowledged, over all writers: JetStream's flow control.
    max_ack_pending: int = Field(default=20_000, ge=1)
    # Messages asked for per fetch.
    fetch_batch: int = Field(default=256, ge=1, le=10_000)
    # The claims stream (docs/nats.md, Writers): one entry per message being written.
    claims_stream: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,200}$")
    # How long a claim outlives a writer that never acknowledged it (then another writer may
    # write the message again). Long: a dead writer's state dir must be restarted or released
    # within it (`logbridge consume --status` lists such claims).
    claim_ttl: Duration = 7 * 86400.0
    # How long a message claimed by another writer waits before it is delivered again.
    claimed_delay: Duration = 5.0
    # Remove what the writers have stored from the stream (a purge up to the consumer's ack
    # floor, about every second). The collectors' stream keeps messages by limits (max_bytes,
    # max_age) and refuses new ones when full: without this, an acknowledged message would hold
    # its space until max_age, and a full stream would stay full however fast the writers are.
    # false: keep them (for replay, or other consumers of the stream); max_age must then bound it.
    purge_acked: bool = True

    @property
    def claims(self) -> str:
        return self.claims_stream or f"{self.stream}_CLAIMS"

    @model_validator(mode="after")
    def _positive(self) -> NatsSource:
        if self.ack_wait < 1:
            raise ValueError("ack_wait must be at least 1s")
        if self.claim_ttl < 3600:
            raise ValueError("claim_ttl must be at least 1h (it bounds how long a dead writer may stay away)")
        if self.claimed_delay <= 0:
            raise ValueError("claimed_delay must be more than 0")
        return self


class WriterConfig(StrictModel):
    """The ``logbridge consume`` config file."""

    nats: NatsSource
    # Stable across restarts: claims name it. Default: host name + a hash of state_dir.
    writer_id: str | None = Field(default=None, pattern=_ID)
    state_dir: str
    durability: Literal["flush", "fsync"] = "flush"
    dead_letter: str
    destinations: list[FilesystemDestination] = Field(min_length=1)
    journal: JournalSettings = JournalSettings()
    # Prometheus metrics at http://host:port/metrics; none: not served.
    metrics: Listen | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> WriterConfig:
        names = [d.name for d in self.destinations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"destination names must be unique, repeated: {', '.join(dupes)}")
        return self

    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir).expanduser()

    def resolved_writer_id(self) -> str:
        if self.writer_id:
            return self.writer_id
        host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0])[:40] or "host"
        where = str(self.resolved_state_dir().resolve())
        return f"{host}-{hashlib.sha256(where.encode()).hexdigest()[:10]}"


def load(path: str | os.PathLike[str]) -> WriterConfig:
    source = str(path)
    config = validate(load_yaml(path), WriterConfig, source=source)
    check_state_dir_outside_stores(config, source)  # type: ignore[arg-type]  # same keys read
    return config


__all__ = ["ConfigError", "NatsSource", "WriterConfig", "load"]
