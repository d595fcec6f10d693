"""The claims stream: which writer stages which message (docs/nats.md, "Writers").

A JetStream stream of its own (``<stream>_CLAIMS``, file storage, one message per subject,
``max_age`` = ``claim_ttl``), not a KV bucket: a claim is removed with the stream's message
delete once its message is acknowledged, leaving nothing behind (a KV delete leaves a marker
per message until ``max_age``). Subjects::

    lbclaims.<stream>.c.<consumer>.<stream sequence>   data: the writer id that owns the message
    lbclaims.<stream>.w.<consumer>.<writer id>         data: the writer's heartbeat (JSON)

A claim is taken with ``Nats-Expected-Last-Subject-Sequence: 0``: JetStream stores it only if
the subject holds nothing, so of two writers claiming one message exactly one succeeds.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

HEARTBEAT_EVERY = 2.0
# A writer whose heartbeat is older than this is not running (or cannot reach NATS).
ALIVE_FOR = 5 * HEARTBEAT_EVERY
_EXPECT_NONE = {"Nats-Expected-Last-Subject-Sequence": "0"}
_WRONG_LAST_SEQUENCE = 10071


@dataclass
class WriterInfo:
    writer_id: str
    heartbeat: dict[str, Any] | None = None
    claims: list[int] = field(default_factory=list)  # stream sequences it holds

    @property
    def age(self) -> float | None:
        if self.heartbeat is None:
            return None
        return max(0.0, time.time() - float(self.heartbeat.get("at", 0)))

    @property
    def running(self) -> bool:
        age = self.age
        return age is not None and age < ALIVE_FOR and not self.heartbeat.get("stopped")  # type: ignore[union-attr]


class Claims:
    def __init__(self, js: Any, stream: str, claims_stream: str, consumer: str, writer_id: str):
        self.js = js
        self.stream = stream
        self.name = claims_stream
        self.consumer = consumer
        self.writer_id = writer_id
        self._prefix = f"lbclaims.{stream}"
        self._claim = f"{self._prefix}.c.{consumer}."
        self._writer = f"{self._prefix}.w.{consumer}."

    def config(self, ttl: float, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=[f"{self._prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_msgs_per_subject=1,
            max_age=ttl,
            num_replicas=replicas,
        )

    async def ensure(self, ttl: float, replicas: int) -> None:
        """Create the claims stream, or set its ``max_age`` to ``claim_ttl``."""
        wanted = self.config(ttl, replicas)
        try:
            info = await self.js.stream_info(self.name)
        except nats.js.errors.NotFoundError:
            await self.js.add_stream(wanted)
            return
        if abs(float(info.config.max_age or 0) - ttl) > 1:
            updated = StreamConfig.from_response(info.config.as_dict())
            updated.max_age = ttl
            await self.js.update_stream(updated)

    # ------------------------------------------------------------------------- claims

    async def claim(self, seqs: Sequence[int]) -> dict[int, tuple[str | None, int]]:
        """Claim every sequence at once: seq → (owner, the claim's own sequence). The owner is
        this writer (claimed now, or earlier by this writer), another writer, or None when
        the claim could not be read (treated as another's: not written now)."""
        results = await asyncio.gather(*(self._claim_one(s) for s in seqs))
        return dict(zip(seqs, results, strict=True))

    async def _claim_one(self, seq: int) -> tuple[str | None, int]:
        subject = f"{self._claim}{seq}"
        for _ in range(3):
            try:
                ack = await self.js.publish(subject, self.writer_id.encode(), headers=_EXPECT_NONE)
                return self.writer_id, int(ack.seq)
            except nats.js.errors.APIError as exc:
                if exc.err_code != _WRONG_LAST_SEQUENCE:
                    raise
            owner = await self.owner(seq)
            if owner is not None:
                return owner
            # Deleted in between (its writer acked it): the message is done, or free again.
        return None, 0

    async def owner(self, seq: int) -> tuple[str, int] | None:
        try:
            msg = await self.js.get_last_msg(self.name, f"{self._claim}{seq}")
        except nats.js.errors.NotFoundError:
            return None
        return (msg.data or b"").decode(), int(msg.seq)

    async def release(self, claim_seqs: Sequence[int]) -> None:
        """Remove claims by their own sequence (after their messages were acked)."""
        await asyncio.gather(*(self._delete(s) for s in claim_seqs if s))

    async def release_own(self, seqs: Sequence[int]) -> list[int]:
        """Remove the claims this writer holds among ``seqs``; returns the sequences it held."""
        owners = await asyncio.gather(*(self.owner(s) for s in seqs))
        mine = [
            (s, o[1]) for s, o in zip(seqs, owners, strict=True) if o is not None and o[0] == self.writer_id
        ]
        await self.release([c for _, c in mine])
        return [s for s, _ in mine]

    async def _delete(self, claim_seq: int) -> None:
        try:
            await self.js.delete_msg(self.name, claim_seq)
        except nats.js.errors.NotFoundError:
            pass
        except nats.js.errors.APIError as exc:
            if "not found" not in str(exc).lower():
                raise

    # ---------------------------------------------------------------------- heartbeats

    async def heartbeat(self, state_dir: str, *, stopped: bool = False) -> None:
        beat = {
            "writer_id": self.writer_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state_dir": state_dir,
            "at": time.time(),
            "stopped": stopped,
        }
        await self.js.publish(f"{self._writer}{self.writer_id}", orjson.dumps(beat))

    # -------------------------------------------------------------------------- reading

    async def writers(self, nc: Any, timeout: float = 10.0) -> dict[str, WriterInfo]:
        """Every writer that has a heartbeat or holds a claim, with its claims (an ordered
        consumer over the claims stream: one pass, however many claims)."""
        found: dict[str, WriterInfo] = {}
        info = await self.js.stream_info(self.name)
        if not info.state.messages:
            return found
        sub = await self.js.subscribe(f"{self._prefix}.*.{self.consumer}.>", ordered_consumer=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    msg = await sub.next_msg(timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                except nats.errors.TimeoutError:
                    break
                kind, _, rest = msg.subject[len(self._prefix) + 1 :].partition(".")
                token = rest.split(".", 1)[1] if "." in rest else ""
                if kind == "c":
                    owner = (msg.data or b"").decode()
                    found.setdefault(owner, WriterInfo(owner)).claims.append(int(token))
                elif kind == "w":
                    with_beat = found.setdefault(token, WriterInfo(token))
                    try:
                        with_beat.heartbeat = orjson.loads(msg.data or b"{}")
                    except orjson.JSONDecodeError:
                        pass
                if msg.metadata.num_pending == 0:
                    break
        finally:
            await sub.unsubscribe()
        return found

    async def release_writer(self, writer_id: str, nc: Any) -> int:
        """Remove every claim ``writer_id`` holds (`logbridge consume --release`)."""
        writers = await self.writers(nc)
        held = writers.get(writer_id)
        if held is None:
            return 0
        owners = await asyncio.gather(*(self.owner(s) for s in held.claims))
        mine = [o[1] for o in owners if o is not None and o[0] == writer_id]
        await self.release(mine)
        return len(mine)
