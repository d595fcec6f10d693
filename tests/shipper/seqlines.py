"""Sequence-numbered log4j envelopes written to files, and the loopback collector's count of them
(tests/conftest.py), for the shipper's tests over real files: every sequence number must arrive
exactly once, whatever happened to the files in between."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson


def line(seq: int, pad: int = 40) -> bytes:
    return (
        orjson.dumps(
            {
                "severity": "INFO",
                "logger": "dku.audit.generic",
                "message": {"msgType": "dataset-read-data", "seq": seq, "pad": "x" * pad},
                "timestamp": "2020-02-19T16:05:02.441+0100",
            }
        )
        + b"\n"
    )


def write(path: Path, seqs: range, mode: str = "ab", pad: int = 40) -> None:
    with open(path, mode) as fh:
        fh.write(b"".join(line(s, pad) for s in seqs))


def seqs(fake: Any) -> Counter[int]:
    return Counter(e["message"]["seq"] for e in fake.events() if "message" in e and "seq" in e["message"])


def exactly_once(fake: Any, n: int) -> bool:
    got = seqs(fake)
    return len(got) == n and set(got) == set(range(n)) and max(got.values()) == 1


def assert_exactly_once(fake: Any, n: int) -> None:
    got = seqs(fake)
    missing = set(range(n)) - set(got)
    twice = {s: c for s, c in got.items() if c > 1}
    assert not missing and not twice, (
        f"missing {sorted(missing)[:10]} ({len(missing)}), twice {list(twice)[:10]}"
    )
    assert len(got) == n
