"""Which lines of a file changed: its line digests now against those its manifest recorded.

Only run when a file's SHA-256 differs from its manifest's. A diff of the two digest sequences
(difflib's matching blocks, on 8-byte digests, so equal digests mean equal lines) gives runs of
lines only in the original (removed), only in the file now (inserted), or replaced one by another
(edited, paired in order). A digest found both among the removed and among the inserted lines is
one line that moved (reordered), not a removal plus an insertion.

Line numbers are 1-based: ``line`` in the file as it is now, ``original_line`` in the file the
manifest describes.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class LineChange:
    kind: str  # edited-line, removed-line, inserted-line, reordered-line
    line: int | None  # in the file now
    original_line: int | None  # in the file as sealed


def localize(original: list[bytes], current: list[bytes]) -> list[LineChange]:
    matcher = difflib.SequenceMatcher(None, original, current, autojunk=False)
    removed: list[int] = []  # original indexes
    inserted: list[int] = []  # current indexes
    edited: list[tuple[int, int]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if tag == "replace":
            pairs = min(i2 - i1, j2 - j1)
            edited.extend((i1 + k, j1 + k) for k in range(pairs))
            removed.extend(range(i1 + pairs, i2))
            inserted.extend(range(j1 + pairs, j2))
        elif tag == "delete":
            removed.extend(range(i1, i2))
        else:
            inserted.extend(range(j1, j2))
    # A line that left one place and appeared at another moved. Edited pairs count too: a swap
    # of two lines often shows as two "edits" of each other.
    gone: dict[bytes, list[int]] = defaultdict(list)
    came: dict[bytes, list[int]] = defaultdict(list)
    for i in removed:
        gone[original[i]].append(i)
    for i, _ in edited:
        gone[original[i]].append(i)
    for j in inserted:
        came[current[j]].append(j)
    for _, j in edited:
        came[current[j]].append(j)
    moved_from: set[int] = set()
    moved_to: set[int] = set()
    changes: list[LineChange] = []
    for digest, olds in gone.items():
        news = came.get(digest)
        if not news:
            continue
        for i, j in zip(sorted(olds), sorted(news), strict=False):
            moved_from.add(i)
            moved_to.add(j)
            changes.append(LineChange("reordered-line", j + 1, i + 1))
    for i, j in edited:
        if i in moved_from and j in moved_to:
            continue
        if i in moved_from:
            changes.append(LineChange("inserted-line", j + 1, None))
        elif j in moved_to:
            changes.append(LineChange("removed-line", None, i + 1))
        else:
            changes.append(LineChange("edited-line", j + 1, i + 1))
    changes.extend(LineChange("removed-line", None, i + 1) for i in removed if i not in moved_from)
    changes.extend(LineChange("inserted-line", j + 1, None) for j in inserted if j not in moved_to)
    changes.sort(key=lambda c: (c.original_line or c.line or 0, c.kind))
    return changes
