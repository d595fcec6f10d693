"""The collector protocol (DESIGN.md §4) from the sending side: one client, one status policy.

Both senders use it: the shipper (`logbridge.shipper.engine`) and `EventServerHandler`
(`logbridge.handlers.sender`). ::

    caller ──send(body, source, start-end)──▶ CollectorClient ──POST──▶ collector
                                                 │  the answer decides
                                                 ├─ 2xx ─────────────────────▶ stored / duplicate
                                                 ├─ 409 {"high_water": N} ───▶ resume from N
                                                 ├─ 413, several lines ──────▶ split at a line, send each half
                                                 ├─ network error, 401, 403,
                                                 │  408, 425, 429, 5xx ──────▶ the next collector of ``urls`` at
                                                 │                              once; once all failed, wait
                                                 │                              (Retry-After, else capped
                                                 │                              full-jitter backoff), again
                                                 └─ any other 4xx, or 413 on
                                                    one line ────────────────▶ rejected: the caller keeps it
                                                                               in its `DeadLetter`

- `collector`: `CollectorClient`, its `Result` and `Rejected` pieces, `Stopped`;
- `failover`: several collector URLs: the current one, failover, failback (`Collectors`);
- `target`: where a sender sends (`CollectorTarget`, its ``tls`` and ``retry``), the config model;
- `tls`: the one place an ``ssl.SSLContext`` towards a collector is built;
- `deadletter`: the one dead-letter record (the lines as sent, beside a JSON note of why).
"""

from __future__ import annotations

from .collector import CollectorClient, Rejected, Result, Stopped
from .deadletter import DeadLetter
from .failover import Collectors
from .target import CollectorTarget, RetryConfig, TlsConfig
from .tls import tls_context

__all__ = [
    "CollectorClient",
    "Collectors",
    "CollectorTarget",
    "DeadLetter",
    "Rejected",
    "Result",
    "RetryConfig",
    "Stopped",
    "TlsConfig",
    "tls_context",
]
