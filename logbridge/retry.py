"""How every logbridge sender waits before trying again (shipper, EventServerHandler)."""

from __future__ import annotations

import email.utils
import random
import time


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Capped exponential backoff with full jitter for the ``attempt``-th retry (1-based).

    The wait is anywhere between 0 and the cap (``initial`` doubled per attempt, at most
    ``maximum``): senders that failed together (a collector restart) spread their retries
    over the whole window instead of coming back in waves."""
    cap = min(maximum, initial * 2 ** min(max(attempt, 1) - 1, 30))
    return random.uniform(0, cap)
