"""``logbridge consume --status`` and ``--release WRITER_ID``: what the writers hold."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import LockFile
from .claims import Claims, WriterInfo
from .config import WriterConfig
from .runner import _close_quietly, preflight


async def status(config: WriterConfig) -> dict[str, Any]:
    n = config.nats
    nc, js, _ = await preflight(config)
    try:
        info = await js.consumer_info(n.stream, n.consumer)
        stream = await js.stream_info(n.stream)
        claims = Claims(js, n.stream, n.claims, n.consumer, config.resolved_writer_id())
        writers = await claims.writers(nc)
    finally:
        await _close_quietly(nc)
    return {
        "stream": n.stream,
        "messages": stream.state.messages,
        "consumer": n.consumer,
        "pending": info.num_pending,
        "ack_pending": info.num_ack_pending,
        "redelivered": info.num_redelivered,
        "waiting": info.num_waiting,
        "delivered_seq": info.delivered.stream_seq if info.delivered else 0,
        "ack_floor_seq": info.ack_floor.stream_seq if info.ack_floor else 0,
        "writers": [_writer(w) for w in sorted(writers.values(), key=lambda w: w.writer_id)],
    }


def _writer(w: WriterInfo) -> dict[str, Any]:
    beat = w.heartbeat or {}
    running = w.running
    local = _local_lock(beat)
    if local is not None:  # on this host, its state-dir lock says it better than a heartbeat
        holder = local.try_acquire("status")
        local.release()
        running = holder is not None
    return {
        "writer_id": w.writer_id,
        "running": running,
        "last_seen_seconds": round(w.age, 1) if w.age is not None else None,
        "host": beat.get("host"),
        "pid": beat.get("pid"),
        "state_dir": beat.get("state_dir"),
        "claims": len(w.claims),
        "claimed_sequences": sorted(w.claims)[:20],
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"stream {report['stream']}: {report['messages']} messages",
        f"consumer {report['consumer']}: pending {report['pending']}, ack pending {report['ack_pending']}, "
        f"redelivered {report['redelivered']}, waiting pulls {report['waiting']}, "
        f"ack floor seq {report['ack_floor_seq']}",
    ]
    if not report["writers"]:
        lines.append("writers: none seen")
    for w in report["writers"]:
        state = "running" if w["running"] else "NOT RUNNING"
        seen = (
            f"last seen {w['last_seen_seconds']}s ago" if w["last_seen_seconds"] is not None else "never seen"
        )
        lines.append(
            f"writer {w['writer_id']}: {state} ({seen}, host {w['host']}, pid {w['pid']}, "
            f"state_dir {w['state_dir']}), claims held: {w['claims']}"
        )
        if w["claims"] and not w["running"]:
            lines.append(
                f"  holds {w['claims']} messages nobody else will write (first: {w['claimed_sequences']}): "
                f"restart it on its state_dir, or if that is gone for good: "
                f"logbridge consume --config … --release {w['writer_id']}"
            )
    return "\n".join(lines)


def _local_lock(beat: dict[str, Any]) -> LockFile | None:
    """The state-dir lock of a writer on this host (None: elsewhere, or its state dir is gone)."""
    state_dir = str(beat.get("state_dir") or "")
    if beat.get("host") == socket.gethostname() and state_dir and Path(state_dir).is_dir():
        return LockFile(Path(state_dir) / "writer.lock")
    return None


async def release(config: WriterConfig, writer_id: str, force: bool) -> tuple[int, list[str]]:
    """Remove ``writer_id``'s claims: refused while it runs (its state-dir lock is held, when
    the state dir is on this host; its heartbeat is fresh, elsewhere, unless ``force``)."""
    n = config.nats
    nc, js, _ = await preflight(config)
    warnings: list[str] = []
    try:
        claims = Claims(js, n.stream, n.claims, n.consumer, config.resolved_writer_id())
        writers = await claims.writers(nc)
        w = writers.get(writer_id)
        if w is None:
            return 0, [f"writer {writer_id!r} holds no claims and has no heartbeat in {n.claims!r}"]
        beat = w.heartbeat or {}
        state_dir = str(beat.get("state_dir") or "")
        lock = _local_lock(beat)
        if lock is not None:
            holder = lock.try_acquire("release")
            if holder is not None:
                raise ConfigError(
                    f"writer {writer_id!r} is running (pid {holder.pid}, state_dir {state_dir}): "
                    "its claims are not released; stop it first"
                )
            lock.release()
            warnings.append(
                f"state_dir {state_dir} of {writer_id!r} is still on this host: if that writer starts "
                "again it drops the lines of the released messages (another writer writes them)"
            )
        elif w.running and not force:
            raise ConfigError(
                f"writer {writer_id!r} on host {beat.get('host')} reported {w.age:.0f}s ago: it looks "
                "alive, its claims are not released (--force to release anyway)"
            )
        else:
            warnings.append(
                f"writer {writer_id!r} is on another host ({beat.get('host') or 'unknown'}): this command cannot "
                "check that it is stopped; if it starts again on its state_dir it drops the lines of the "
                "released messages"
            )
        released = await claims.release_writer(writer_id, nc)
    finally:
        await _close_quietly(nc)
    return released, warnings
