"""The shipper (``logbridge ship``): tail → checkpoint → batch → forward.

`discover` finds the files, `identity` says which bytes are the same file, `tail` reads whole
lines from an acknowledged offset, `batch` decides where a batch ends, `logbridge.client` posts it,
`checkpoint` remembers what the collector has, and `engine` runs the loop.
"""

from __future__ import annotations

from .config import ShipperConfig, load
from .engine import Shipper

__all__ = ["Shipper", "ShipperConfig", "load"]
