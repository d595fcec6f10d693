"""A writer's manifest chains: which sequence number comes next in each stream, and its head.

A *stream* is ``<writer id>/<destination>/<stream key>`` (`layout.PartitionLayout.stream_key`):
one collector (or ``consume`` writer), one destination, one topic and routing key. Its manifests
are numbered 1, 2, 3… in roll order and each names the hash of the one before, so a file removed
or inserted anywhere but at the very end breaks the sequence. Sequence numbers are given when a
file is sealed (rolled), on one thread, so the concurrent uploads that follow cannot reorder them.

The state lives in the writer's state dir, beside (never inside) its staging dir::

    writer-id      a random id, made once: a new state dir is a new writer, with new streams
    chain.log      one JSON line per sealed manifest {stream, seq, hash, file}; the last line of a
                   stream is its head. Appended and fsynced before the manifest can be published;
                   rewritten with only the heads when it grows past `COMPACT_BYTES`.
    pending/…      sealed manifests waiting for their file's publication (a resumed publication
                   after a SIGKILL publishes exactly these bytes again)

A manifest is written to ``pending/`` before its record is appended to ``chain.log``: a crash
between the two leaves a pending manifest one past the head, which `load` takes as the head.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

from ..errors import ManifestError
from ..fileio import append_or_cut, write_atomic
from . import manifest as mf

log = structlog.get_logger("logbridge.store")

COMPACT_BYTES = 4 * 1024 * 1024


@dataclass
class Head:
    seq: int
    hash: str
    file: str | None


class ChainState:
    """The heads of one writer's streams for one destination (thread-safe)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.pending_dir = directory / "pending"
        self.heads: dict[str, Head] = {}
        self._backlog: list[mf.Manifest] = []  # records the log could not take yet
        self._lock = threading.Lock()
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.writer = self._writer_id()
        self._log_path = directory / "chain.log"
        self._load()
        self._fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def _writer_id(self) -> str:
        path = self.dir / "writer-id"
        try:
            value = path.read_text(encoding="ascii").strip()
            if value:
                return value
        except FileNotFoundError:
            pass
        value = secrets.token_hex(8)
        write_atomic(path, value.encode("ascii"))
        return value

    def _load(self) -> None:
        try:
            data = self._log_path.read_bytes()
        except FileNotFoundError:
            data = b""
        for line in data.splitlines():
            try:
                record = orjson.loads(line)
                self.heads[record["stream"]] = Head(int(record["seq"]), record["hash"], record.get("file"))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn last line (a crash mid-append): its manifest is still pending
        # Pending manifests one past a head were sealed, then the process died before the log.
        for path in sorted(self.pending_dir.rglob("*" + ".manifest")):
            try:
                m = mf.parse(path.read_bytes())
            except (OSError, ManifestError):
                continue
            head = self.heads.get(m.stream)
            if m.seq == (head.seq if head else 0) + 1 and m.get("prev") == (head.hash if head else None):
                self.heads[m.stream] = Head(m.seq, m.hash, m.get("file"))
                self._append_record(m, reopen=True)

    def _append_record(self, m: mf.Manifest, *, reopen: bool = False) -> None:
        line = orjson.dumps({"stream": m.stream, "seq": m.seq, "hash": m.hash, "file": m.get("file")}) + b"\n"
        if reopen:
            with open(self._log_path, "ab") as fh:
                fh.write(line)
            return
        append_or_cut(self._fd, line, self._size)
        self._size += len(line)

    def next_link(self, stream: str) -> tuple[int, str | None, str | None]:
        """(seq, prev hash, prev file) for the next manifest of ``stream`` (call under `lock`)."""
        head = self.heads.get(stream)
        return (head.seq + 1, head.hash, head.file) if head else (1, None, None)

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def pending_path(self, relpath: str) -> Path:
        return self.pending_dir / (relpath + ".manifest")

    def commit(self, sealed: list[tuple[str, mf.Manifest]], *, durable: bool = True) -> None:
        """Keep sealed manifests (relpath → manifest) as pending, then advance their heads (under
        `lock`). A state dir that cannot be written (full) does not stop publication — a full
        staging disk must still empty itself by publishing: the heads advance in memory and
        the records wait in memory until the log takes them (a SIGKILL meanwhile may seal a
        file again under a number already used; verify then reports that fork)."""
        for relpath, m in sealed:
            path = self.pending_path(relpath)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, mf.serialize(m), durable=False)
            except OSError as exc:
                log.warning(
                    "cannot keep a pending manifest; publishing it anyway", file=relpath, error=str(exc)
                )
        for _, m in sealed:
            self.record(m, durable=False)
        if durable and sealed:
            self.sync()

    def record(self, m: mf.Manifest, *, durable: bool = False) -> None:
        """Advance ``m``'s stream to it (a manifest or a retention record; under `lock`)."""
        self.heads[m.stream] = Head(m.seq, m.hash, m.get("file"))
        self._backlog.append(m)
        try:
            while self._backlog:
                self._append_record(self._backlog[0])
                self._backlog.pop(0)
            if self._size > COMPACT_BYTES:
                self._compact()
            if durable:
                os.fsync(self._fd)
        except OSError as exc:
            log.warning(
                "cannot append to the chain log; kept in memory", records=len(self._backlog), error=str(exc)
            )

    def sync(self) -> None:
        try:
            os.fsync(self._fd)
        except OSError as exc:
            log.warning("cannot fsync the chain log", error=str(exc))

    def _compact(self) -> None:
        data = b"".join(
            orjson.dumps({"stream": s, "seq": h.seq, "hash": h.hash, "file": h.file}) + b"\n"
            for s, h in self.heads.items()
        )
        write_atomic(self._log_path, data)
        os.close(self._fd)
        self._fd = os.open(self._log_path, os.O_WRONLY | os.O_APPEND)
        self._size = len(data)

    def pending(self, relpath: str) -> mf.Manifest | None:
        try:
            return mf.parse(self.pending_path(relpath).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ManifestError) as exc:
            log.error(
                "a pending manifest cannot be read: the file is sealed again", file=relpath, error=str(exc)
            )
            return None

    def leftover_pending(self) -> list[str]:
        """Relpaths of every pending manifest (a crash left them)."""
        return sorted(
            p.relative_to(self.pending_dir).as_posix()[: -len(".manifest")]
            for p in self.pending_dir.rglob("*.manifest")
            if p.is_file()
        )

    def forget(self, relpath: str) -> None:
        path = self.pending_path(relpath)
        path.unlink(missing_ok=True)

    def close(self) -> None:
        os.close(self._fd)
