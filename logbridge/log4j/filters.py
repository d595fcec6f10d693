"""log4j's filter chain as one `logging.Filter`.

log4j asks each filter of an appender in order: DENY drops the event, ACCEPT logs it without
asking the rest, NEUTRAL passes it on; an event nobody decided on is logged. Python ANDs its
filters, so a whole chain becomes one `FilterChain` attached to the handler.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

DENY, NEUTRAL, ACCEPT = -1, 0, 1


class LevelRangeFilter:
    def __init__(
        self, level_min: int | None = None, level_max: int | None = None, accept_on_match: bool = False
    ):
        self.level_min, self.level_max, self.accept_on_match = level_min, level_max, accept_on_match

    def decide(self, record: logging.LogRecord) -> int:
        if self.level_min is not None and record.levelno < self.level_min:
            return DENY
        if self.level_max is not None and record.levelno > self.level_max:
            return DENY
        return ACCEPT if self.accept_on_match else NEUTRAL


class LevelMatchFilter:
    def __init__(self, level_to_match: int | None = None, accept_on_match: bool = True):
        self.level_to_match, self.accept_on_match = level_to_match, accept_on_match

    def decide(self, record: logging.LogRecord) -> int:
        if self.level_to_match is None or record.levelno != self.level_to_match:
            return NEUTRAL
        return ACCEPT if self.accept_on_match else DENY


class StringMatchFilter:
    def __init__(self, string_to_match: str | None = None, accept_on_match: bool = True):
        self.string_to_match, self.accept_on_match = string_to_match, accept_on_match

    def decide(self, record: logging.LogRecord) -> int:
        if self.string_to_match is None or self.string_to_match not in record.getMessage():
            return NEUTRAL
        return ACCEPT if self.accept_on_match else DENY


class DenyAllFilter:
    def decide(self, record: logging.LogRecord) -> int:
        return DENY


_TYPES: dict[str, Any] = {
    "LevelRangeFilter": LevelRangeFilter,
    "LevelMatchFilter": LevelMatchFilter,
    "StringMatchFilter": StringMatchFilter,
    "DenyAllFilter": DenyAllFilter,
}


class FilterChain(logging.Filter):
    """``FilterChain(filters=[{"type": "LevelRangeFilter", "level_min": 20}, ...])``."""

    def __init__(self, filters: Sequence[Mapping[str, Any]] = ()):
        super().__init__()
        self.chain = []
        for spec in filters:
            opts = dict(spec)
            kind = opts.pop("type")
            self.chain.append(_TYPES[kind](**opts))

    def filter(self, record: logging.LogRecord) -> bool:
        for f in self.chain:
            decision = f.decide(record)
            if decision == DENY:
                return False
            if decision == ACCEPT:
                return True
        return True
