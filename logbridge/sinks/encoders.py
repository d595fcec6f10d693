"""How a staged NDJSON file is encoded when it is published.

Staging is always NDJSON (appendable, cut back exactly on a failed batch); the encoding happens
once, at publication, on the destination's side. ``None`` publishes the file as staged (a rename
or a plain upload). A columnar encoder (Parquet: read the NDJSON lines, write a table) fits the
same two methods and is registered here with its extra.
"""

from __future__ import annotations

import gzip
import shutil
from typing import BinaryIO, Protocol


class Encoder(Protocol):
    def published_name(self, relpath: str) -> str:
        """The published file's path for a staged ``…/events-….ndjson``."""
        ...

    def encode(self, src: BinaryIO, dst: BinaryIO) -> None:
        """Write the encoded form of the whole staged file ``src`` to ``dst``."""
        ...


class Gzip:
    def __init__(self, level: int = 6):
        self.level = level

    def published_name(self, relpath: str) -> str:
        return relpath + ".gz"

    def encode(self, src: BinaryIO, dst: BinaryIO) -> None:
        # mtime=0: publishing the same staging file twice (after a crash) writes the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=dst, compresslevel=self.level, mtime=0) as gz:
            shutil.copyfileobj(src, gz, 1024 * 1024)


def encoder_for(compression: str) -> Encoder | None:
    """The encoder of a destination's ``compression`` key (validated by the config)."""
    return {"none": None, "gzip": Gzip()}[compression]
