"""The writer thread: jobs run there one at a time, in order; under fsync one round serves many."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import orjson
import pytest

from logbridge.collector.body import split
from logbridge.collector.config import CollectorServerConfig
from logbridge.collector.core import Collector
from logbridge.collector.ingest import RequestContext
from logbridge.collector.service import CollectorService
from logbridge.errors import StorageUnavailable

# 8000 events in one partition, ~1.8 MiB: over the prestage thresholds (1 MiB body, 64 KiB chunk).
BIG = b"\n".join(
    orjson.dumps({"msgType": "m", "topic": "generic", "i": i, "pad": "x" * 200}) for i in range(8000)
)


def service(tmp_path: Path, durability: str) -> CollectorService:
    config = CollectorServerConfig.model_validate(
        {
            "durability": durability,
            "state_dir": str(tmp_path / "state"),
            "dead_letter": f"file://{tmp_path / 'dead'}",
            "destinations": [{"name": "store", "url": f"file://{tmp_path / 'store'}"}],
        }
    )
    return CollectorService(Collector(config))


def body(source: int, n: int = 3) -> bytes:
    return b"\n".join(
        orjson.dumps({"msgType": "m", "topic": "generic", "src": source, "i": i}) for i in range(n)
    )


@pytest.mark.parametrize("durability", ["flush", "fsync"])
def test_concurrent_requests_are_stored_on_the_writer_thread(tmp_path: Path, durability: str) -> None:
    svc = service(tmp_path, durability)
    threads: set[str] = set()
    store = svc.collector.store

    def spy(prepared):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return store(prepared)

    svc.collector.store = spy  # type: ignore[method-assign]

    async def run() -> list[int]:
        await svc.start()
        try:
            results = await asyncio.gather(
                *(
                    svc.ingest(
                        body(i), None, None, RequestContext("h", source=f"s{i}", range_start=0, range_end=9)
                    )
                    for i in range(50)
                )
            )
            # The same range again: a duplicate, judged on the writer thread's marks.
            again = await svc.ingest(
                body(0), None, None, RequestContext("h", source="s0", range_start=0, range_end=9)
            )
            assert again.duplicate
            return [r.accepted for r in results]
        finally:
            await svc.close()

    assert asyncio.run(run()) == [3] * 50
    assert threads == {"logbridge-writer"}
    if durability == "fsync":
        rounds = svc.metrics.fsync_rounds._value.get()
        assert 1 <= rounds < 50, f"{rounds} fsync rounds for 50 concurrent requests: no group commit"
    stored = [p for p in (tmp_path / "store").rglob("*.ndjson")]
    assert sum(len(p.read_bytes().splitlines()) for p in stored) == 150


def test_a_refused_request_is_answered_and_the_thread_goes_on(tmp_path: Path) -> None:
    svc = service(tmp_path, "flush")

    def refuse(prepared):  # type: ignore[no-untyped-def]
        raise StorageUnavailable("no room")

    async def run() -> None:
        await svc.start()
        try:
            with pytest.raises(StorageUnavailable, match="no room"):
                await svc.writer.submit(refuse, None)
            result = await svc.ingest(body(1), None, None, RequestContext("h"))
            assert result.accepted == 3
        finally:
            await svc.close()

    asyncio.run(run())


def test_a_big_batch_brings_its_own_files_and_is_rolled_back_whole(tmp_path: Path) -> None:
    """Prestaged chunks are adopted by the writer thread; the same range again stores nothing."""
    svc = service(tmp_path, "flush")
    big = BIG

    async def run() -> None:
        await svc.start()
        try:
            ctx = RequestContext("h", source="big", range_start=0, range_end=len(big))
            assert (await svc.ingest(big, None, None, ctx)).accepted == 8000
            assert (await svc.ingest(big, None, None, ctx)).duplicate
        finally:
            await svc.close()

    asyncio.run(run())
    assert stored(tmp_path) == list(range(8000))
    assert [p for p in (tmp_path / "state" / "staging").rglob("*") if p.is_file()] == []


def test_prestaged_files_of_a_request_found_duplicate_are_removed(tmp_path: Path) -> None:
    """Two copies of one range prestaged at once (the hint saw neither claimed): the writer
    thread stores the first and discards the second's files."""
    collector = service(tmp_path, "flush").collector
    collector.start()
    items = split(BIG, None)
    ctx = RequestContext("h", source="big", range_start=0, range_end=len(BIG))
    first, second = (collector.prepare_items(items, ctx, time.time()) for _ in range(2))
    collector.prestage(first)
    collector.prestage(second)
    assert first.prestaged and second.prestaged and not first.chunks
    assert collector.store(first).accepted == 8000
    assert collector.store(second).duplicate
    collector.close()
    assert stored(tmp_path) == list(range(8000))
    assert [p for p in (tmp_path / "state" / "staging").rglob("*") if p.is_file()] == []


def stored(tmp_path: Path) -> list[int]:
    lines = [line for p in (tmp_path / "store").rglob("*.ndjson") for line in p.read_bytes().splitlines()]
    return sorted(orjson.loads(line)["clientEvent"]["i"] for line in lines)
