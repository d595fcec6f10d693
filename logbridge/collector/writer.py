"""The writer thread: the one thread that owns the collector's staging files, journal and marks.

Ownership rule: `Collector` state (sinks' open files, the journal, the high-water marks, the
pending fsync records) is touched only by jobs run here, one at a time, in submission order.
The event loop submits jobs and awaits their futures; it never runs one. Pure work (parsing a
big body) runs in the ingest pool beforehand, and slow work that needs no state (publishing,
writing a journal snapshot) on other threads afterwards, so a job here is short: appends and
journal records of one request, a roll, the start of a compaction.

Group commit: under ``durability: fsync`` the jobs that take requests (``durable=True``) are
answered only after the fsync round that follows the run of jobs they came in, one round for
every request queued meanwhile — the same rule as before: a round serves every request that
wrote before it began.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import structlog

from ..errors import StorageUnavailable
from .core import Collector

log = structlog.get_logger("logbridge.collector")

T = TypeVar("T")

# (function, arguments, durable, loop, future); None stops the thread.
_Job = tuple[Callable[..., Any], tuple[Any, ...], bool, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Done = tuple["asyncio.Future[Any]", Any, BaseException | None]


class WriterThread:
    def __init__(self, collector: Collector):
        self.collector = collector
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="logbridge-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Run what is queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def submit(self, fn: Callable[..., T], *args: Any, durable: bool = False) -> asyncio.Future[T]:
        """Queue ``fn(*args)`` for the writer thread (from the event loop); its future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, args, durable, loop, future))
        return future

    def _run(self) -> None:
        collector = self.collector
        jobs = self._queue
        while True:
            run = [jobs.get()]
            while True:  # everything queued meanwhile: one fsync round serves them all
                try:
                    run.append(jobs.get_nowait())
                except queue.Empty:
                    break
            # Answers go back once per run (one wake-up of the loop for all of them); under
            # fsync the requests' answers wait for the run's round.
            ready: list[tuple[asyncio.AbstractEventLoop, _Done]] = []
            held: list[tuple[asyncio.AbstractEventLoop, _Done]] = []
            stop = False
            for job in run:
                if job is None:
                    stop = True
                    continue
                fn, args, durable, loop, future = job
                try:
                    done: _Done = (future, fn(*args), None)
                except Exception as exc:  # delivered to the awaiting request, which answers it
                    done = (future, None, exc)
                (held if durable and done[2] is None and collector.fsync else ready).append((loop, done))
            if held and collector.needs_sync:
                try:
                    collector.sync_round()
                except StorageUnavailable as exc:
                    held = [(loop, (future, None, exc)) for loop, (future, _, _) in held]
            by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
            for loop, done in ready + held:
                by_loop.setdefault(loop, []).append(done)
            for loop, dones in by_loop.items():
                _deliver(loop, dones)
            if stop:
                return


def _deliver(loop: asyncio.AbstractEventLoop, dones: list[_Done]) -> None:
    try:
        loop.call_soon_threadsafe(_settle, dones)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


def _settle(dones: list[_Done]) -> None:
    for future, result, exc in dones:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
