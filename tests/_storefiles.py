"""Reading published files back, for the fixtures of every test folder (imported by conftests)."""

from __future__ import annotations

import gzip
from typing import Any

import orjson


def is_manifest(name: str) -> bool:
    return "manifest" in name


def read_data_file(name: str, data: bytes) -> list[dict[str, Any]]:
    """The stored lines of one published file (NDJSON, maybe gzip or zstd)."""
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    elif name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]
