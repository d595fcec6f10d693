"""A store's listing, sorted into data files, manifests and retention records.

Metadata lives under a ``.logbridge/`` folder at a destination's root (`logbridge.store.layout`).
A store URL may be that root or a folder above several (a dead letter inside the store, two
destinations side by side): each ``.logbridge/`` found describes the files under its parent,
its *base*. Every path here is relative to the URL verify was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..store.layout import META, RETENTION, SUFFIX, data_path

_MARK = f"/{META}/"


@dataclass
class Listing:
    data: dict[str, int] = field(default_factory=dict)  # path → size
    manifests: dict[str, str] = field(default_factory=dict)  # data path it names → manifest path
    retention: list[str] = field(default_factory=list)
    temp: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # in .logbridge/ but not ours

    def base_of(self, path: str) -> str:
        """The destination root (``""`` or ``a/b/``) whose manifests describe ``path``."""
        best = ""
        for base in self.bases:
            if path.startswith(base) and len(base) > len(best):
                best = base
        return best

    bases: set[str] = field(default_factory=set)


def list_store(fs: Any, root: str) -> Listing:
    root = root.rstrip("/")
    found = fs.find(root, detail=True) if fs.exists(root) else {}
    listing = Listing()
    for name, info in found.items():
        if info.get("type") != "file":
            continue
        rel = name[len(root) + 1 :] if name.startswith(root + "/") else name
        classify(listing, rel, int(info.get("size") or 0))
    return listing


def classify(listing: Listing, rel: str, size: int) -> None:
    leaf = rel.rsplit("/", 1)[-1]
    if leaf.startswith(".") and leaf.endswith(".tmp"):
        listing.temp.append(rel)
        return
    at = ("/" + rel).find(_MARK)
    if at < 0:
        listing.data[rel] = size
        return
    base = rel[:at]  # "" or "a/b/"
    inner = rel[at:]  # ".logbridge/…"
    listing.bases.add(base)
    named = data_path(inner)
    if named is not None:
        listing.manifests[base + named] = rel
    elif inner.startswith(RETENTION + "/") and inner.endswith(SUFFIX):
        listing.retention.append(rel)
    else:
        listing.strays.append(rel)
