"""The manifest format: what is signed, what is chained, and how it is read back safely.

A manifest file is one canonical JSON header line (sorted keys, no spaces, UTF-8), a newline, then
the file's line digests as raw bytes (8 per line). The header commits to the digests through
``line_digests.sha256``, so reading the header alone (a few hundred bytes, one ranged read on an
object store) is enough to check a file whose SHA-256 matches; the digests are read only to
localize a change.

A *retention record* has the same layout with ``kind: retention`` and no digests.

Hash and signature::

    manifest hash = SHA-256(canonical header without "signature")       ← what the next ``prev`` names
    signature     = HMAC-SHA256(key, the same bytes)                     ← optional

The parser is written for hostile input: sizes are bounded, every field is type-checked, and any
problem is a `ManifestError` (never a KeyError or a crash).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import ManifestError

FORMAT = "logbridge-manifest/1"
LINE_DIGEST = "sha256/64"  # the first 8 bytes of each line's SHA-256 (the line without its newline)
DIGEST_SIZE = 8
MAX_HEADER = 1024 * 1024  # a retention record lists whole partitions: allow a generous header
SIGNATURE = "hmac-sha256"

_SORT = orjson.OPT_SORT_KEYS


def canonical(header: dict[str, Any]) -> bytes:
    return orjson.dumps(header, option=_SORT)


def sign(header: dict[str, Any], key: bytes) -> dict[str, Any]:
    """``header`` with its ``signature`` (over the header without one)."""
    body = {k: v for k, v in header.items() if k != "signature"}
    mac = hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    return body | {"signature": {"algorithm": SIGNATURE, "key": key_id(key), "value": mac}}


def key_id(key: bytes) -> str:
    """A short public name of a key (so a wrong key is told apart from a forged signature)."""
    return hashlib.sha256(b"logbridge-key-id:" + key).hexdigest()[:12]


def signature_ok(header: dict[str, Any], key: bytes) -> bool:
    sig = header.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
        return False
    body = {k: v for k, v in header.items() if k != "signature"}
    expected = hmac.new(key, canonical(body), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig["value"])


def header_hash(header: dict[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "signature"}
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass
class Manifest:
    """A parsed manifest or retention record."""

    header: dict[str, Any]
    digests: bytes = b""  # the line digests (a file manifest), DIGEST_SIZE bytes per line
    hash: str = field(init=False)

    def __post_init__(self) -> None:
        self.hash = header_hash(self.header)

    @property
    def kind(self) -> str:
        return str(self.header["kind"])

    @property
    def stream(self) -> str:
        return str(self.header["stream"])

    @property
    def seq(self) -> int:
        return int(self.header["seq"])

    def get(self, key: str) -> Any:
        return self.header.get(key)

    def line_digests(self) -> list[bytes]:
        d = self.digests
        return [d[i : i + DIGEST_SIZE] for i in range(0, len(d), DIGEST_SIZE)]


def serialize(manifest: Manifest) -> bytes:
    return canonical(manifest.header) + b"\n" + manifest.digests


def build_file_manifest(
    *,
    file: str,
    size: int,
    sha256: str,
    lines: int,
    digests: bytes | None,
    encoding: str,
    first_event_time: str | None,
    last_event_time: str | None,
    partition: str,
    partition_start: str | None,
    partition_end: str | None,
    stream: str,
    seq: int,
    prev: str | None,
    prev_file: str | None,
    sealed_at: str,
    key: bytes | None = None,
) -> Manifest:
    header: dict[str, Any] = {
        "format": FORMAT,
        "kind": "file",
        "file": file,
        "size": size,
        "sha256": sha256,
        "lines": lines,
        "line_digests": None
        if digests is None
        else {"algorithm": LINE_DIGEST, "sha256": hashlib.sha256(digests).hexdigest()},
        "encoding": encoding,
        "first_event_time": first_event_time,
        "last_event_time": last_event_time,
        "partition": partition,
        "partition_start": partition_start,
        "partition_end": partition_end,
        "stream": stream,
        "seq": seq,
        "prev": prev,
        "prev_file": prev_file,
        "sealed_at": sealed_at,
    }
    if key is not None:
        header = sign(header, key)
    return Manifest(header, digests or b"")


# ------------------------------------------------------------------------------------ parsing

_STR = (str,)
_OPT_STR = (str, type(None))
_INT = (int,)

_FILE_FIELDS: dict[str, tuple[type, ...]] = {
    "file": _STR,
    "size": _INT,
    "sha256": _STR,
    "lines": _INT,
    "line_digests": (dict, type(None)),
    "encoding": _STR,
    "first_event_time": _OPT_STR,
    "last_event_time": _OPT_STR,
    "partition": _STR,
    "partition_start": _OPT_STR,
    "partition_end": _OPT_STR,
    "prev_file": _OPT_STR,
}
_COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "format": _STR,
    "kind": _STR,
    "stream": _STR,
    "seq": _INT,
    "prev": _OPT_STR,
    "sealed_at": _STR,
}
_RETENTION_FIELDS: dict[str, tuple[type, ...]] = {
    "destination": _STR,
    "max_age_seconds": (int, float),
    "cutoff": _STR,
    "pruned": (list,),
}


def split_header(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\n", 0, MAX_HEADER + 1)
    if end < 0:
        raise ManifestError(f"no header line within {MAX_HEADER} bytes")
    return data[:end], data[end + 1 :]


def parse_header(raw: bytes) -> dict[str, Any]:
    """The header line, checked field by field. Raises `ManifestError`."""
    if len(raw) > MAX_HEADER:
        raise ManifestError(f"header longer than {MAX_HEADER} bytes")
    try:
        header = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ManifestError("header is not a JSON object")
    if header.get("format") != FORMAT:
        raise ManifestError(f"format is {str(header.get('format'))[:40]!r}, expected {FORMAT!r}")
    kind = header.get("kind")
    fields = _COMMON_FIELDS | (
        _FILE_FIELDS if kind == "file" else _RETENTION_FIELDS if kind == "retention" else {}
    )
    if kind not in ("file", "retention"):
        raise ManifestError(f"kind is {str(kind)[:40]!r}, expected 'file' or 'retention'")
    for name, types in fields.items():
        value = header.get(name)
        if name not in header or not isinstance(value, types) or isinstance(value, bool):
            raise ManifestError(f"field {name!r} missing or not a {'/'.join(t.__name__ for t in types)}")
    if header["seq"] < 1:
        raise ManifestError("seq must be 1 or more")
    if kind == "file":
        if header["size"] < 0 or header["lines"] < 0:
            raise ManifestError("size and lines must not be negative")
        digests = header["line_digests"]
        if digests is not None and (
            digests.get("algorithm") != LINE_DIGEST or not isinstance(digests.get("sha256"), str)
        ):
            raise ManifestError(f"line_digests must be {{algorithm: {LINE_DIGEST!r}, sha256: hex}}")
    else:
        for entry in header["pruned"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise ManifestError("pruned entries must be objects naming a file")
    sig = header.get("signature")
    if sig is not None and not (
        isinstance(sig, dict) and sig.get("algorithm") == SIGNATURE and isinstance(sig.get("value"), str)
    ):
        raise ManifestError(f"signature must be {{algorithm: {SIGNATURE!r}, key, value}}")
    return header


def parse(data: bytes) -> Manifest:
    """A whole manifest file (header and digests). Raises `ManifestError`."""
    raw, digests = split_header(data)
    header = parse_header(raw)
    if header["kind"] == "file" and header["line_digests"] is None:
        if digests:
            raise ManifestError("line digests after a header that says there are none")
    elif header["kind"] == "file":
        if len(digests) != header["lines"] * DIGEST_SIZE:
            raise ManifestError(
                f"{len(digests)} bytes of line digests for {header['lines']} lines "
                f"(expected {header['lines'] * DIGEST_SIZE})"
            )
        if hashlib.sha256(digests).hexdigest() != header["line_digests"]["sha256"]:
            raise ManifestError("the line digests do not match the header's line_digests.sha256")
    elif digests:
        raise ManifestError("a retention record has nothing after its header")
    return Manifest(header, digests)
