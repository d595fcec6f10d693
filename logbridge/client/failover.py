"""Several collector URLs for one sender: which one is current, and when to go back to the first.

The policy (`CollectorClient` applies it to every request; both senders share it):

- **Sticky.** Batches go to the current collector, the first URL at start. A sender does not
  spread its batches over the list: one source's ranges reach one collector in order, which is
  what a collector's high-water marks expect, and the keep-alive connection is reused.
- **Failover, round-robin.** A failed attempt (network error, timeout, 401, 403, 408, 425, 429,
  5xx) moves the *same* batch (same body, same ``X-Logbridge-Source``/``X-Logbridge-Range``)
  to the next URL in list order, at once. Only when every URL has failed once in a row (a round)
  does the sender wait: the capped, jittered backoff of a single URL, or the ``Retry-After`` a
  collector gave; the next round starts with the collector that may be tried soonest. A dead
  collector is so asked once per round, never in a loop. A 401/403 is a problem of one collector
  (a token it does not know), so it moves on like any failure, and each line logged names the URL
  and what it answered.
- **Final answers are final**, wherever they come from: a 2xx, a 409 high-water mark (the caller
  resumes there), a 413 split, another 4xx for the dead letter.
- **Failback.** The first URL is the preferred one. After ``failback`` seconds away from it
  (default 5 minutes; None: never), the next batch is tried there first; if it still fails, the
  batch goes straight back to the collector that was working, and the next probe is another
  ``failback`` later. So a sender stays on a healthy collector (no flapping between two, as
  Fluent Bit's and Filebeat's failover outputs stay) yet returns to its own collector once that
  one is back (as Fluentd's standby servers hand back to the primary).

Every switch is counted (`Collectors.switches`) and logged once, with the URL left and why
(never the token; user:password in a URL is not shown either).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from ..units import parse_duration

DEFAULT_FAILBACK = 300.0
NEVER = ("never", "off", "none")


def parse_failback(value: float | int | str | None) -> float | None:
    """``"5m"`` → 300.0; ``None``/``"never"``/``"off"`` → None (stay on whichever collector works)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NEVER):
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"expected a duration such as 5m, or never, got {value!r}") from None


def shown(url: str) -> str:
    """``url`` as logs and metrics show it: without a ``user:password@``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


class Collectors:
    """The URLs, the current one, and the time the sender left the first one."""

    def __init__(self, urls: Sequence[str], failback: float | None = DEFAULT_FAILBACK):
        if isinstance(urls, str):
            urls = (urls,)
        if not urls:
            raise ValueError("at least one collector URL is needed")
        self.urls = tuple(urls)
        self.names = tuple(shown(url) for url in self.urls)
        self.failback = failback
        self.current = 0
        self.switches = 0
        self.failures = [0] * len(self.urls)  # failed attempts per URL
        self.problems: dict[int, str] = {}  # index → what its last failed attempt got
        self.away_since: float | None = None  # when the first URL was left

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def url(self) -> str:
        return self.urls[self.current]

    @property
    def name(self) -> str:
        return self.names[self.current]

    def after(self, index: int) -> list[int]:
        """Every index in round-robin order starting after ``index`` (``index`` last)."""
        n = len(self.urls)
        return [(index + k) % n for k in range(1, n + 1)]

    def failed(self, index: int, problem: str) -> None:
        self.failures[index] += 1
        self.problems[index] = problem

    def move(self, index: int, now: float) -> None:
        if index == self.current:
            return
        self.switches += 1
        if index == 0:
            self.away_since = None
        elif self.current == 0:
            self.away_since = now
        self.current = index

    def failback_due(self, now: float) -> bool:
        """Time to try the first URL again (only ever when away from it)."""
        return (
            self.failback is not None
            and self.current != 0
            and self.away_since is not None
            and now - self.away_since >= self.failback
        )
