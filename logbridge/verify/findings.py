"""What ``logbridge verify`` reports: one `Finding` per change, and which kinds are tampering."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# kind → what it means (the text report's legend, docs/tamper-evidence.md's table)
TAMPERING: dict[str, str] = {
    "edited-line": "a line's content differs from the one sealed",
    "removed-line": "a sealed line is missing",
    "inserted-line": "a line that was never sealed",
    "reordered-line": "a sealed line at another place",
    "content-mismatch": "the file differs from its manifest but no line could be named",
    "removed-file": "a sealed file is gone",
    "renamed-file": "a sealed file is under another name",
    "unmanifested-file": "a data file no manifest or chain knows (added)",
    "missing-manifest": "a file whose manifest was removed (its chain names it)",
    "bad-manifest": "a manifest or retention record that cannot be read",
    "broken-chain": "a manifest's previous hash or sequence does not match its stream",
    "bad-signature": "a signature that the key does not verify",
    "unsigned-manifest": "no signature, though a key was given",
}
NOTICES: dict[str, str] = {
    "pruned-by-retention": "files deleted by store-side retention, on the record",
    "signatures-not-checked": "signed manifests, but no key was given",
    "leftover-temp": "a temporary file a crashed publication left (not data)",
}


@dataclass
class Finding:
    kind: str
    file: str | None = None
    line: int | None = None  # in the file as it is now
    original_line: int | None = None  # in the file as sealed
    stream: str | None = None
    seq: int | None = None
    detail: str = ""

    @property
    def tampering(self) -> bool:
        return self.kind in TAMPERING

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0  # data files seen
    checked: int = 0  # data files hashed
    bytes: int = 0  # bytes hashed
    manifests: int = 0
    retention_records: int = 0
    seconds: float = 0.0

    @property
    def tampered(self) -> bool:
        return any(f.tampering for f in self.findings)

    def add(self, kind: str, **fields: Any) -> None:
        self.findings.append(Finding(kind, **fields))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.tampered,
            "files": self.files,
            "checked": self.checked,
            "bytes": self.bytes,
            "manifests": self.manifests,
            "retention_records": self.retention_records,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.bytes / self.seconds / 1e6, 1) if self.seconds > 0 else None,
            "counts": self.counts(),
            "findings": [f.as_dict() for f in self.findings],
        }
