"""The shipper (``logbridge ship``): tail → checkpoint → batch → forward.

`discover` finds the files, `identity` says which bytes are the same file, `tail` reads whole
lines from an acknowledged offset, `batch` decides where a batch ends, `logbridge.client` posts it,
`checkpoint` remembers what the collector has, and `engine` runs the loop. `shipped` is the
read-only view of the checkpoint that other processes (a rolling appender's retention guard) use.

The names below are imported on first use: a process that only reads the checkpoint
(`shipped`) must not pay for the engine and its HTTP client (~0.3 s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ShipperConfig, load
    from .engine import Shipper

__all__ = ["Shipper", "ShipperConfig", "load"]


def __getattr__(name: str) -> Any:
    if name in ("ShipperConfig", "load"):
        from . import config

        return getattr(config, name)
    if name == "Shipper":
        from .engine import Shipper

        return Shipper
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
