"""logbridge: audit trails off the node and into a central, partitioned, tamper-evident store."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def configure(config: Any, **variables: str) -> Any:
    """Configure Python logging from a log4j 1.x ``.properties`` file, a ``.yaml``/``.json``
    dictConfig file, or a dictConfig dict; returns the log4j model for a properties file.
    See `logbridge.log4j.configure`."""
    from .log4j import configure as _configure

    return _configure(config, **variables)


__all__ = ["__version__", "configure"]
