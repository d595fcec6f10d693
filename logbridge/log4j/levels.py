"""log4j 1.2 levels on Python's numeric scale (log4j's values divided by 1000).

TRACE (5) is registered with `logging` on import; FATAL is Python's CRITICAL (50). ``%p`` and the
other layouts print log4j's names (``WARN``, ``FATAL``) through `log4j_name`, without renaming
Python's own levels for everybody else in the process.
"""

from __future__ import annotations

import logging

TRACE = 5
ALL = 1  # Python's 0 means "inherit" on a logger, so log4j's ALL is the lowest real level
OFF = 2**31 - 1  # log4j's Integer.MAX_VALUE: above every level, FATAL included

logging.addLevelName(TRACE, "TRACE")

# Level.toLevel's table: names compared after toUpperCase(), plus the Turkish dotted capital I
# that toUpperCase() produces from "info" in a Turkish locale (log4j bug 40937).
LEVELS: dict[str, int] = {
    "ALL": ALL,
    "TRACE": TRACE,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "\u0130NFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
    "OFF": OFF,
}

# The other way round: the name log4j prints for each of its levels.
LOG4J_NAMES: dict[int, str] = {number: name for name, number in LEVELS.items() if name.isascii()}

_PY_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
    logging.NOTSET: "NOTSET",
}


def log4j_name(levelno: int, fallback: str | None = None) -> str:
    """The name log4j prints for a level (``WARN``, ``FATAL``); Python's name for other numbers."""
    name = LOG4J_NAMES.get(levelno)
    if name is not None:
        return name
    return fallback if fallback is not None else logging.getLevelName(levelno)


def java_upper(s: str) -> str:
    """String.toUpperCase() in an English locale, close enough for level names."""
    return s.upper()


def level_from_name(name: str) -> int | None:
    """Level.toLevel(String, null): the level, or None for a name log4j does not know."""
    return LEVELS.get(java_upper(name))


def dict_level(levelno: int) -> str | int:
    """How a level is written in a dictConfig dict: Python's name when it has one, else the
    number (so that a plain ``logging.config.dictConfig`` reads it without logbridge loaded)."""
    return _PY_NAMES.get(levelno, levelno)
