"""The DSS sample trails (samples/) as the store tests post them, and what the store must hold
afterwards: each event once, under the hour partition of its own time (UTC)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
PREFIX = "audit"
PARTITION = "{topic}/{routing_key}/%Y/%m/%d/%H"


def sample_files() -> list[Path]:
    files = sorted(SAMPLES.glob("*/audit/*.log"))
    assert len(files) >= 10, f"samples missing under {SAMPLES}: run samples/generate.py"
    return files


def expected_partition(topic: str, routing_key: str | None, timestamp: str) -> str:
    t = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    return f"{topic}/{routing_key or 'default'}/{t:%Y/%m/%d/%H}"


def expected_from_samples(files: list[Path]) -> Counter[tuple[str, str, bytes]]:
    """(partition, topic, canonical event) for every sample line, counted."""
    expected: Counter[tuple[str, str, bytes]] = Counter()
    for path in files:
        for raw in path.read_bytes().splitlines():
            line = orjson.loads(raw)
            event = line["message"]
            topic = line["logger"].removeprefix("dku.audit.")
            partition = expected_partition(topic, event.get("routingKey"), line["timestamp"])
            expected[(partition, topic, orjson.dumps(event, option=orjson.OPT_SORT_KEYS))] += 1
    return expected


def stored_counter(files: dict[str, list[dict[str, Any]]]) -> Counter[tuple[str, str, bytes]]:
    stored: Counter[tuple[str, str, bytes]] = Counter()
    for rel, lines in files.items():
        partition = rel.rsplit("/", 1)[0]
        for line in lines:
            event = orjson.dumps(line["clientEvent"], option=orjson.OPT_SORT_KEYS)
            stored[(partition, line["topic"], event)] += 1
    return stored


def post(url: str, body: bytes, **headers: str) -> dict[str, Any]:
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/x-ndjson", **headers}, timeout=30
    )
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    result: dict[str, Any] = response.json()
    return result
