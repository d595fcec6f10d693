"""`EventServerHandler`: audit records straight from a Python process to ``logbridge collect``.

The DSS EventServer target for Python, in three parts, data flowing one way::

    caller ──emit()──▶ queue (bounded; full → counted as dropped)          handler.py
                         │  spooler thread
                         ▼
                       spool (a byte stream of lines; on disk with         spool.py
                         │    ``spool_dir``, else in memory; bounded by
                         │    ``spool_max_bytes``; beyond it → counted, logged, dropped,
                         │    and the count spooled as a ``logbridge-events-dropped`` event)
                         │  sender thread
                         ▼
              CollectorClient: POST /events, NDJSON, gzip, Bearer token,   sender.py
              X-Logbridge-Source + X-Logbridge-Range                        (logbridge.client)

- `handler`: the `logging.Handler` (never blocks nor raises into the caller), its settings,
  the spooler thread, flush / wait_delivered / close, and the restart in a forked child;
- `spool`: where the lines wait, and the byte offsets that make a resend idempotent;
- `sender`: the sender thread, one batch at a time through `logbridge.client.CollectorClient`,
  whose status policy is the shipper's too (a 401 is retried; a 413 splits the batch; other
  4xx go to the dead letter in the spool directory, ``<slot>/dead-letter/``).

Records logged by the handler's own threads (its warnings, httpx's request lines) are never
sent, so a handler on the root logger cannot feed itself. A forked child (gunicorn
``--preload``, a multiprocessing pool) starts threads, a spool slot and a source id of its own
with its first record; a child that never logs starts nothing.
"""

from __future__ import annotations

from .handler import EventServerHandler, HandlerStats, RoutingKeyMode

__all__ = ["EventServerHandler", "HandlerStats", "RoutingKeyMode"]
