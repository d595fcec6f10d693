"""The sink seam: what the collector asks of a destination, and the registry of destination types.

A sink owns its state (staging files, connections, what is acknowledged); the collector only
routes lines to it and keeps the journal. One batch goes through a sink in this order::

    append(partition, data) → Receipt      the lines are in the sink (not yet acknowledged)
      (or prestage → adopt: a big batch's lines written off the writer thread, then taken in)
      rollback(receipt)                    the batch failed elsewhere: undo exactly this append
    sync()                                 make every append so far durable (durability: fsync)
    acknowledge(receipts)                  the journal holds the batch: the sink may ship it
    roll(now) … publish()                  ship what is acknowledged and due (publish: any thread,
                                           one round at a time; a store's uploads run concurrently)
    recover(acknowledged)                  at start: keep what a killed process acknowledged, drop the rest

A receipt's ``journal_key`` and ``size`` are what the journal records, so that `recover` can tell
an acknowledged byte from one of a batch that was never answered.

Threads: `append`, `adopt`, `rollback`, `sync`, `acknowledge`, `roll`, `recover`, `staged_sizes`
and `close` belong to the collector's writer thread; `publish` runs on a publisher thread;
`prestage` and `discard` on any thread (they touch no shared state); `pending`, `blocked`,
`problem` and `staging_bytes` may be read from anywhere (a stale answer is harmless).
Errors are the `logbridge.errors` tree: a sink maps its backend's errors at this seam.

A `Publisher` is the other kind of destination: nothing staged, nothing journaled — each
request's lines are handed over, one message per partition, and the request is answered only
once the destination has acknowledged every message (NATS JetStream, `logbridge.sinks.nats`).
Both kinds share what routing needs of them (`Destination`: a name, partitions, which time).

Destination types are looked up in `SINK_TYPES`, imported only when a destination uses them (as
fsspec's registry does), so a missing optional dependency is a `MissingExtra` naming the
``pip install 'logbridge[…]'`` to run — never an ImportError from deep inside.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError
from .config import DestinationBase
from .fs import require_module


@dataclass(slots=True)
class Receipt:
    """One append: where it went, and the sink's own handle to undo or acknowledge it."""

    sink: Sink
    journal_key: str | None  # the name the journal records the acknowledged size under
    size: int  # the size to record: bytes of the staged file up to and including this append
    before: int  # the size before this append (rollback cuts back to it)
    handle: Any  # the sink's own (a staging file, a pending publish)


class Partitioner(Protocol):
    """Renders partitions for (topic, routing key, time). The collector's ingest renders once
    per topic, routing key and minute of a batch when ``grain`` is a minute or more."""

    grain: int  # the seconds one rendering stands for (900, 60 or 1: the template's finest field)

    def render(self, topic: str, routing_key: str | None, epoch: float) -> str: ...

    def render_received(self, topic: str, routing_key: str | None, received: float) -> str:
        """The partition of a line partitioned by event time that has no usable time of its own
        (it takes the receive time). A filesystem partition is the same as `render`'s; a
        publisher keeps such lines apart, since a retry of the request is received at another
        time and its messages must still be cut the same way (their ids depend on it)."""
        ...


@runtime_checkable
class Destination(Protocol):
    """What routing needs of any destination."""

    name: str
    partitions: Partitioner  # (topic, routing key, time) → the partition a line goes to
    event_time: bool  # partitions use the event's own time (else receive time)


@runtime_checkable
class Sink(Destination, Protocol):
    """A destination written through staging files (see the module docstring)."""

    def append(self, partition: str, data: bytes) -> Receipt:
        """Append whole lines. Raises `StorageUnavailable` with nothing appended."""
        ...

    def prestage(self, partition: str, data: bytes) -> Receipt:
        """Any thread: ``data`` in a piece of its own, not part of the sink until `adopt` (writer
        thread) or gone with `discard`. Raises `StorageUnavailable` with nothing left behind."""
        ...

    def adopt(self, receipt: Receipt) -> None: ...

    def discard(self, receipt: Receipt) -> None: ...

    def rollback(self, receipt: Receipt) -> None: ...

    def sync(self) -> None:
        """Make every append so far durable. Raises `OSError` (the kernel may have dropped data)."""
        ...

    def acknowledge(self, receipts: Sequence[Receipt]) -> None: ...

    def roll(self, now: float, force: bool = False) -> None:
        """Close what is due (``force``: everything, cut to what is acknowledged) for `publish`."""
        ...

    def publish(self) -> int:
        """Ship what `roll` closed; returns how many went. Failures stay queued and show in `problem`."""
        ...

    def recover(self, acknowledged: dict[str, int]) -> None:
        """Keep what the journal says a killed process acknowledged (by journal key), drop the rest."""
        ...

    def staged_sizes(self) -> dict[str, int]:
        """Journal key → acknowledged size of everything not shipped yet (survives a compaction)."""
        ...

    @property
    def pending(self) -> int:
        """How many closed pieces are not published yet (queued, or being published now)."""
        ...

    @property
    def wants_publish(self) -> bool:
        """`publish` has work: pieces `pending`, or housekeeping due (a manifest to publish
        again, a retention check), which an idle destination must get too."""
        ...

    @property
    def blocked(self) -> bool:
        """New lines must be refused (503): shipping fails with a backlog waiting."""
        ...

    def problem(self) -> str | None:
        """Why it is blocked, or None."""
        ...

    def staging_bytes(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchOrigin:
    """Where a request's lines come from, as far as a publisher's message ids need it."""

    mark_key: str | None  # the idempotence key (token name, source): None without a range
    source: str | None
    range_start: int | None
    range_end: int | None


@dataclass(frozen=True, slots=True)
class Published:
    messages: int
    duplicates: int  # messages the destination already held (a retry's, recognised by id)


@runtime_checkable
class Publisher(Destination, Protocol):
    """A destination that takes each request's lines before the request is answered.

    The event loop calls every method. `publish_batch` returns once every message is
    acknowledged; it raises `StorageUnavailable` (a subclass naming why: `DestinationUnreachable`,
    `DestinationFull`, `DestinationTimeout`) when one is not — some may have been taken, which
    is harmless when the request has a range: a retry sends the same message ids — or
    `BodyTooLarge` when a single line can never fit in a message (nothing was sent)."""

    async def start(self) -> None:
        """Connect (retrying in the background while the destination is down)."""
        ...

    async def publish_batch(self, groups: Sequence[tuple[str, bytes]], origin: BatchOrigin) -> Published:
        """Publish ``groups`` (partition key → the partition's stored lines), in this order."""
        ...

    def problem(self) -> str | None:
        """Why nothing can be published now (for ``/healthz`` and a 503), or None."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SinkType:
    target: str | None  # "module:Class", imported on first use; None: the type is not built yet
    requires: tuple[str, str] | None = None  # (Python module, logbridge extra that installs it)


SINK_TYPES: dict[str, SinkType] = {
    "filesystem": SinkType("logbridge.sinks.filesystem:FilesystemSink"),
    "nats": SinkType("logbridge.sinks.nats:NatsSink", requires=("nats", "nats")),
}


def check_available(dest: DestinationBase, key: str) -> None:
    """Raise `ConfigError` (`MissingExtra` for a missing dependency) if ``dest`` cannot be built here."""
    kind = getattr(dest, "type", "filesystem")
    spec = SINK_TYPES.get(kind)
    if spec is None:
        raise ConfigError(f"{key}.type: {kind!r} is not a destination type (one of {', '.join(SINK_TYPES)})")
    if spec.requires is not None:
        require_module(*spec.requires, what=f"{key}: type: {kind}")
    if spec.target is None:
        raise ConfigError(
            f"{key}.type: {kind!r} destinations are not available in this build yet; use type: filesystem"
        )


def build_sink(dest: DestinationBase, staging_dir: Path, key: str) -> Sink | Publisher:
    """The sink (or publisher) for one destination, any staging under ``staging_dir``. Raises
    `ConfigError`."""
    check_available(dest, key)
    target = SINK_TYPES[getattr(dest, "type", "filesystem")].target
    assert target is not None
    module_name, attr = target.split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    sink: Sink | Publisher = factory.from_config(dest, staging_dir, key=key)
    return sink
