"""``logbridge verify``'s checks: files against their manifests, manifests against their chains.

The happy path does no per-line work: each data file is hashed whole (SHA-256 in 8 MiB reads on
a pool of threads; hashlib releases the GIL on big buffers, so threads use every core) and
compared with its manifest's header, the only part of a manifest read then. A file whose hash
differs is read again line by line, and its line digests diffed against the manifest's
(`localize`). Then, per stream, sequence numbers and previous hashes are followed (with the links
that retention records bridge), and what is left over is named: manifests without a file
(removed, or renamed when another file has their hash), files without a manifest (added, or
their manifest removed when a chain names them).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import envelope
from ..errors import ManifestError
from ..store import manifest as mf
from ..store.digest import line_digests
from ..store.retention import read_header
from .findings import Report
from .localize import localize
from .scan import Listing, list_store

_READ = 8 * 1024 * 1024
_NAME_TIME = re.compile(r"^events-(\d{8}T\d{6}Z)-")


@dataclass
class Options:
    key: bytes | None = None
    since: float | None = None
    until: float | None = None
    threads: int = 4


Progress = Callable[[int, int], None]  # (files done, bytes done)


class Verifier:
    def __init__(self, fs: Any, root: str, options: Options, progress: Progress | None = None):
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol))
        self.options = options
        self.progress = progress
        self.report = Report()
        self._lock = threading.Lock()
        self._done = (0, 0)

    # ------------------------------------------------------------------------- the walk

    def run(self) -> Report:
        started = time.perf_counter()
        listing = list_store(self.fs, self.root)
        self.listing = listing
        report = self.report
        report.files = len(listing.data)
        for rel in listing.temp:
            report.add("leftover-temp", file=rel)
        for rel in listing.strays:
            report.add("unmanifested-file", file=rel, detail="an unknown file among the manifests")
        headers = self._read_headers(listing)
        records = self._read_retention(listing)
        self._check_signatures(headers, records)
        pruned = self._pruned(records)
        in_window = {data for data, m in headers.items() if self._in_window(m)}
        todo = [data for data in headers if data in listing.data and data in in_window]
        self.total = (len(todo), sum(listing.data[d] for d in todo))
        hashes = self._hash_all(todo, headers)
        for data in todo:
            self._compare(data, headers[data], hashes[data])
        self._leftovers(listing, headers, pruned, in_window)
        self._chains(headers, records, pruned, in_window)
        report.seconds = time.perf_counter() - started
        return report

    def _read_headers(self, listing: Listing) -> dict[str, mf.Manifest]:
        """Data path → its manifest's header (unreadable ones reported and left out)."""
        headers: dict[str, mf.Manifest] = {}

        def read(item: tuple[str, str]) -> None:
            data, path = item
            try:
                m = read_header(self.fs, f"{self.root}/{path}")
                if m.kind != "file":
                    raise ManifestError("not a file manifest")
            except (ManifestError, OSError) as exc:
                with self._lock:
                    self.report.add("bad-manifest", file=data, detail=f"{path}: {exc}")
                return
            base = self.listing.base_of(data)
            if m.get("file") != data[len(base) :]:
                with self._lock:
                    self.report.add(
                        "renamed-file",
                        file=data,
                        stream=m.stream,
                        seq=m.seq,
                        detail=f"the manifest at {path} was sealed for {base}{m.get('file')}",
                    )
            with self._lock:
                headers[data] = m

        with ThreadPoolExecutor(self.options.threads) as pool:
            list(pool.map(read, sorted(listing.manifests.items())))
        self.report.manifests = len(headers)
        return headers

    def _read_retention(self, listing: Listing) -> list[tuple[str, mf.Manifest]]:
        records = []
        for path in sorted(listing.retention):
            try:
                m = mf.parse(self.fs.cat_file(f"{self.root}/{path}"))
                if m.kind != "retention":
                    raise ManifestError("not a retention record")
            except (ManifestError, OSError) as exc:
                self.report.add("bad-manifest", file=path, detail=str(exc))
                continue
            records.append((path, m))
            pruned = m.get("pruned") or []
            self.report.add(
                "pruned-by-retention",
                file=path,
                stream=m.stream,
                seq=m.seq,
                detail=f"{len(pruned)} files of {len({e.get('partition') for e in pruned})} partitions deleted "
                f"(partitions ending before {m.get('cutoff')})",
            )
        self.report.retention_records = len(records)
        return records

    def _check_signatures(
        self, headers: dict[str, mf.Manifest], records: list[tuple[str, mf.Manifest]]
    ) -> None:
        key = self.options.key
        signed = 0
        for name, m in [*headers.items(), *records]:
            has = m.get("signature") is not None
            signed += has
            if key is None:
                continue
            if not has:
                self.report.add("unsigned-manifest", file=name, stream=m.stream, seq=m.seq)
            elif not mf.signature_ok(m.header, key):
                sig = m.get("signature") or {}
                other = sig.get("key") != mf.key_id(key)
                self.report.add(
                    "bad-signature",
                    file=name,
                    stream=m.stream,
                    seq=m.seq,
                    detail="signed with another key"
                    if other
                    else "the manifest was changed after it was signed",
                )
        if key is None and signed:
            self.report.add(
                "signatures-not-checked",
                detail=f"{signed} signed manifests: pass --key-env or --key-file to check them",
            )

    def _pruned(self, records: list[tuple[str, mf.Manifest]]) -> dict[str, dict[str, Any]]:
        """Data path → the retention entry that deleted it."""
        out: dict[str, dict[str, Any]] = {}
        for path, m in records:
            base = path[: path.find(".logbridge/")]
            for entry in m.get("pruned") or []:
                out[base + entry["file"]] = entry
        return out

    def _in_window(self, m: mf.Manifest) -> bool:
        since, until = self.options.since, self.options.until
        if since is None and until is None:
            return True
        start = envelope.event_epoch(m.get("partition_start") or m.get("first_event_time"))
        end = envelope.event_epoch(m.get("partition_end") or m.get("last_event_time"))
        if since is not None and end is not None and end <= since:
            return False
        return not (until is not None and start is not None and start >= until)

    def _named_in_window(self, path: str) -> bool:
        """A file without a manifest has no times but its name's (``events-20261201T101500Z-…``:
        when its writer opened it): with ``--since``/``--until``, a store that had files before
        manifests existed can be checked from then on."""
        if self.options.since is None and self.options.until is None:
            return True
        found = _NAME_TIME.search(path.rsplit("/", 1)[-1])
        if found is None:
            return True
        opened = calendar.timegm(time.strptime(found.group(1), "%Y%m%dT%H%M%SZ"))
        if self.options.since is not None and opened < self.options.since:
            return False
        return not (self.options.until is not None and opened >= self.options.until)

    # ----------------------------------------------------------------------- hashing

    def _hash_all(self, todo: list[str], headers: dict[str, mf.Manifest]) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}

        def one(data: str) -> None:
            try:
                result = self._hash(data, headers[data].get("encoding") == "gzip")
            except (OSError, zlib.error) as exc:
                result = (f"unreadable: {exc}", -1)
            with self._lock:
                out[data] = result
                files, done = self._done
                self._done = (files + 1, done + self.listing.data[data])
                self.report.checked += 1
                self.report.bytes += self.listing.data[data]
                if self.progress is not None:
                    self.progress(*self._done)

        with ThreadPoolExecutor(self.options.threads) as pool:
            list(pool.map(one, todo))
        return out

    def _open(self, rel: str) -> Any:
        path = f"{self.root}/{rel}"
        if self.local:
            return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller's with
        return self.fs.open(path, "rb", block_size=_READ)

    def _hash(self, rel: str, gzipped: bool) -> tuple[str, int]:
        """(SHA-256 hex of the file's content, its size), the content unzipped for a gzip file."""
        sha = hashlib.sha256()
        size = 0
        inflate = zlib.decompressobj(wbits=31) if gzipped else None
        with self._open(rel) as fh:
            buf = bytearray(_READ)
            view = memoryview(buf)
            while True:
                n = fh.readinto(buf) if hasattr(fh, "readinto") else None
                if n is None:
                    chunk = fh.read(_READ)
                    n = len(chunk)
                    view = memoryview(chunk)
                if not n:
                    break
                block = view[:n]
                if inflate is not None:
                    block = memoryview(inflate.decompress(block))
                sha.update(block)
                size += len(block)
        if inflate is not None:
            rest = inflate.flush()
            sha.update(rest)
            size += len(rest)
        return sha.hexdigest(), size

    def _content(self, rel: str, gzipped: bool) -> bytes:
        data = self.fs.cat_file(f"{self.root}/{rel}")
        return zlib.decompress(data, wbits=31) if gzipped else bytes(data)

    # ---------------------------------------------------------------------- comparing

    def _compare(self, data: str, m: mf.Manifest, hashed: tuple[str, int]) -> None:
        digest, size = hashed
        if size < 0:
            self.report.add("content-mismatch", file=data, stream=m.stream, seq=m.seq, detail=digest)
            return
        if digest == m.get("sha256") and size == m.get("size"):
            return
        if m.get("line_digests") is None:
            self.report.add(
                "content-mismatch",
                file=data,
                stream=m.stream,
                seq=m.seq,
                detail="the file differs from its manifest (sealed without line digests: no line can be named)",
            )
            return
        try:
            full = mf.parse(self.fs.cat_file(f"{self.root}/{self.listing.manifests[data]}"))
            current = line_digests(self._content(data, m.get("encoding") == "gzip"))
        except (ManifestError, OSError, zlib.error) as exc:
            self.report.add("content-mismatch", file=data, stream=m.stream, seq=m.seq, detail=str(exc))
            return
        original = full.line_digests()
        now = [current[i : i + mf.DIGEST_SIZE] for i in range(0, len(current), mf.DIGEST_SIZE)]
        changes = localize(original, now)
        for change in changes:
            self.report.add(
                change.kind,
                file=data,
                line=change.line,
                original_line=change.original_line,
                stream=m.stream,
                seq=m.seq,
            )
        if not changes:
            self.report.add(
                "content-mismatch",
                file=data,
                stream=m.stream,
                seq=m.seq,
                detail="every line's digest matches, yet the file's SHA-256 does not (bytes outside lines, "
                "or a forged line digest)",
            )

    def _leftovers(
        self,
        listing: Listing,
        headers: dict[str, mf.Manifest],
        pruned: dict[str, dict[str, Any]],
        in_window: set[str],
    ) -> None:
        """Manifests without their file, files without their manifest."""
        orphans = [d for d in headers if d not in listing.data and d in in_window]
        self._unmanifested = [
            d
            for d in listing.data
            if d not in listing.manifests and d not in pruned and self._named_in_window(d)
        ]
        for d in listing.data:
            if d in pruned and d not in listing.manifests:
                self.report.add(
                    "pruned-by-retention", file=d, detail="listed by a retention record, not deleted yet"
                )
        by_hash: dict[str, str] = {}
        if orphans and self._unmanifested:
            wanted = {headers[d].get("sha256") for d in orphans}
            for d in self._unmanifested:
                try:
                    digest, _ = self._hash(d, d.endswith(".gz"))
                except (OSError, zlib.error):
                    continue
                if digest in wanted:
                    by_hash[digest] = d
        self._renamed_to: set[str] = set()
        for d in sorted(orphans):
            m = headers[d]
            target = by_hash.get(m.get("sha256"))
            if target is not None:
                self._renamed_to.add(target)
                self.report.add(
                    "renamed-file", file=d, stream=m.stream, seq=m.seq, detail=f"now named {target}"
                )
            elif d in pruned:
                self.report.add("pruned-by-retention", file=d, detail="its manifest is left")
            else:
                self.report.add(
                    "removed-file", file=d, stream=m.stream, seq=m.seq, detail="its manifest is there"
                )

    # ------------------------------------------------------------------------- chains

    def _chains(
        self,
        headers: dict[str, mf.Manifest],
        records: list[tuple[str, mf.Manifest]],
        pruned: dict[str, dict[str, Any]],
        in_window: set[str],
    ) -> None:
        # stream → seq → [(hash, prev, name, manifest or None for a pruned link)]
        links: dict[str, dict[int, list[tuple[str, Any, str, mf.Manifest | None]]]] = {}

        def add(m: mf.Manifest, name: str) -> None:
            links.setdefault(m.stream, {}).setdefault(m.seq, []).append((m.hash, m.get("prev"), name, m))

        for data, m in headers.items():
            add(m, data)
        for path, m in records:
            add(m, path)
        bridged: dict[str, dict[int, str]] = {}
        for entry in pruned.values():
            if isinstance(entry.get("stream"), str) and isinstance(entry.get("seq"), int):
                bridged.setdefault(entry["stream"], {})[entry["seq"]] = str(entry.get("manifest"))
        explained: set[str] = set(self._renamed_to)
        windowed = self.options.since is not None or self.options.until is not None

        def shown(name: str) -> bool:
            return not windowed or name in in_window or name not in headers

        for stream in sorted(set(links) | set(bridged)):
            seqs = links.get(stream, {})
            bridge = bridged.get(stream, {})
            top = max([*seqs, *bridge])
            missing: list[int] = []
            for seq in range(1, top + 1):
                here = seqs.get(seq)
                if not here:
                    if seq not in bridge:
                        missing.append(seq)
                    continue
                if len({h for h, *_ in here}) > 1:
                    self.report.add(
                        "broken-chain",
                        file=", ".join(sorted(n for *_, n, _ in here)),
                        stream=stream,
                        seq=seq,
                        detail="two different manifests with the same sequence number",
                    )
                _, prev, name, _ = here[0]
                if missing:
                    self._gap(stream, missing, here[0], explained, shown(name))
                    missing = []
                    continue
                if seq == 1:
                    expected = None
                elif seq - 1 in seqs:
                    expected = seqs[seq - 1][0][0]
                else:
                    expected = bridge.get(seq - 1)
                if prev != expected and shown(name):
                    self.report.add(
                        "broken-chain",
                        file=name,
                        stream=stream,
                        seq=seq,
                        detail=(
                            f"its previous hash is {str(prev)[:16]}…, the manifest before it hashes to "
                            f"{str(expected)[:16]}… (a manifest was edited or replaced)"
                        ),
                    )
        for d in self._unmanifested:
            if d not in explained:
                self.report.add(
                    "unmanifested-file", file=d, detail="no manifest, and no chain names it (added?)"
                )

    def _gap(
        self,
        stream: str,
        missing: list[int],
        after: tuple[str, Any, str, Any],
        explained: set[str],
        show: bool,
    ) -> None:
        _, _, name, m = after
        prev_file = m.get("prev_file") if m is not None and m.kind == "file" else None
        base = self.listing.base_of(name)
        named = base + prev_file if prev_file else None
        if named is not None and named in self.listing.data and named not in self.listing.manifests:
            explained.add(named)
            self.report.add(
                "missing-manifest",
                file=named,
                stream=stream,
                seq=missing[-1],
                detail=f"named by the manifest of {name}",
            )
            missing = missing[:-1]
        if not missing or not show:
            return
        span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}-{missing[-1]}"
        last = f"; the last was {named}" if named and named not in explained else ""
        self.report.add(
            "removed-file",
            file=named if named and named not in explained else None,
            stream=stream,
            seq=missing[0],
            detail=f"sequence {span} of this stream is gone with its manifest{'s' if len(missing) > 1 else ''}{last} "
            f"(before {name})",
        )
