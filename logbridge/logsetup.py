"""How logbridge's own processes log: structured (structlog), one JSON object per line on stderr.

Secrets never reach a log line: configs hold only the *names* of variables and files that
carry tokens, and no code path passes a token value to a logger.
"""

from __future__ import annotations

import logging
import sys

import structlog


def setup(level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog for a logbridge command. JSON unless stderr is a terminal."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
