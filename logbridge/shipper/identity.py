"""File identity: which bytes on disk are "the same file" across renames, restarts and reuse.

A path says nothing (rotation renames files, copytruncate empties them in place) and an inode
number alone is reused by the file system as soon as a file is deleted. The fingerprint is the
device and inode *plus* a hash of the file's first line (at most `HEAD_BYTES`): a rename keeps
all three, inode reuse changes the head, and a copy (copytruncate's ``.1``) keeps the head
under a new inode, which is how the copy is recognised as the continuation of what was read.

Two different files can begin with the same line (a text log's constant header). So before an
offset is applied to a file, or a file is taken for a copy, a longer prefix is compared too: the
checkpoint remembers a hash of the first bytes already shipped (up to `CHECK_BYTES`). A file
rewritten in place (same inode, same first line, other bytes) gets the next source id
(``…~2``) while the old one is still in the checkpoints (``checkpoint_ttl``); after that, the
two would be taken for one source, which is the accepted limit.

The rules, and the races with writers, ``cp``/copytruncate and scans they settle (`engine`):

1. An entry's bytes are its file's first ``check_len`` bytes *as shipped*: the check is hashed
   from the batch's own bytes (kept from its read) and the bytes before them, read right after
   the batch and used only if they still begin with the entry's head and check. Never from the
   live file at the ack: copytruncate may have emptied it (and the writer refilled it) while the
   batch was out, and a check taken from those bytes made the copy unrecognisable, so it was
   shipped again in full and its unread part reported lost.
2. A tailed file is the entry's only while it begins with the entry's head; this is looked at
   when its size or mtime changes (truncated and refilled to the same size included) and
   again *after* each batch is read: a batch read from a file rewritten in between holds the
   new file's bytes at the old file's offsets, and is dropped, not sent under the old source.
3. Another inode whose first bytes match an entry (head and check) is a copy: set aside while
   the entry's file still holds those bytes, it continues the entry once that file was
   truncated, replaced or removed (from the entry's offset: nothing is sent twice).
4. A file shorter than the entry's check whose every byte equals the tailed file's bytes at
   the same place is a copy still being written (``cp`` is not atomic): set aside like a copy,
   and looked at again at the next scan. (A new file that only shares a header is shipped as
   soon as it holds a byte that differs.)
5. Whichever of the scan (rule 3) and the tail (truncation noticed) gets there first moves the
   entry to the copy; the other then only lets go of the truncated file.
6. A file is identified only once it is open, and a rotated file lives a few rotations: the
   scans run between the batches of a round, not once per round (a round sends a batch per
   file, and behind on many files it outlasted a backup's life: a file created and deleted
   within it was never seen, lost without a word). A path the scan saw that is missing when
   opened is not taken for a deleted file until the next scan: logrotate renames backups one at
   a time, so for a moment a name is missing while its file lives on under the next one.
7. What a scan found is in the checkpoint before anything else happens (saved at the end of the
   scan, and in any case before an entry's first batch): the source id holds the inode, so a
   restarted shipper without the entry would ship a copy of the file again under a new id, and
   a file deleted while no shipper ran would vanish without a name to report.
8. A copy set aside is remembered by its entry (device, inode and a hash of its first bytes,
   in the checkpoint): a copy taken before the original grew further is shorter than the check
   and cannot be compared with it once the original is truncated; remembered, it is known for
   a copy whose every byte was shipped (after a restart too).
9. A first line shipped without its newline (``partial_line_timeout``) is the entry's head;
   a copy taken after the newline came has a longer first line, and is found by that head as
   its prefix. A copy a scan took for a new file (before the original was seen truncated) is
   taken over by the original's entry if nothing was shipped from it yet; otherwise its bytes
   are already going out under its own source, and the original's unread rest is counted lost.

10. A copy can also be made, and the original shipped past its end and truncated, all between
   two scans: no scan saw the copy while the original held its bytes, and it is shorter than
   the check. So each entry also remembers the hash of its shipped prefix at its last few line
   ends (`LINE_ENDS_KEPT`, in the checkpoint): a copy that ends at one of them (or within the
   line after it) with the same bytes is shipped bytes, not a new file. A copy at least as long
   as the check but shorter than what was shipped is known by the check the same way.
11. A file waiting for a descriptor is not open, so its inode can be freed and reused: a scan
   gives its entry a new name only if the file there still begins with the entry's head, and
   a loss is reported under the name the lost bytes had.

These rules were found and are checked by driving the engine as a model:
tests/shipper/test_engine_model.py.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

HEAD_BYTES = 4096  # a first line longer than this is fingerprinted by its first 4 KiB
CHECK_BYTES = 64 * 1024  # how much of a file's start a checkpoint also remembers (see Entry)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    dev: int
    ino: int
    head_len: int  # how many leading bytes `head_hash` covers
    head_hash: str

    def source_id(self, node: str) -> str:
        """The collector's idempotence key (``X-Logbridge-Source``): stable for this identity."""
        key = f"{node}\0{self.dev}\0{self.ino}\0{self.head_len}\0{self.head_hash}".encode()
        return f"{node}/{hashlib.blake2b(key, digest_size=12).hexdigest()}"


def hash_bytes(data: bytes) -> str:
    """The hash `Fingerprint.head_hash` and the checkpoints' ``check_hash`` are made of."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_hash = hash_bytes


def read_head(fd: int, *, force: bool = False) -> bytes | None:
    """The first line of the file (with its newline), or its first `HEAD_BYTES`.

    None while the first line is still being written (a head that grows would change the
    identity); with ``force`` (a file whose first line never got its newline) whatever is there.
    An empty file has no identity yet: None even when forced.
    """
    data = os.pread(fd, HEAD_BYTES, 0)
    newline = data.find(b"\n")
    if newline >= 0:
        return data[: newline + 1]
    if len(data) >= HEAD_BYTES or (force and data):
        return data
    return None


def fingerprint(fd: int, *, force: bool = False) -> Fingerprint | None:
    """The identity of the open file ``fd``; None until its first line is complete."""
    head = read_head(fd, force=force)
    if head is None:
        return None
    st = os.fstat(fd)
    return Fingerprint(st.st_dev, st.st_ino, len(head), _hash(head))


LINE_ENDS_KEPT = 16  # line ends of the shipped prefix remembered per entry (see `check_and_line_end_hashes`)


def line_end_hash(data: bytes) -> str:
    """The short hash of a prefix ending at a line end (`check_and_line_end_hashes`): the
    first half of its `hash_bytes`, so that one pass gives both."""
    return hash_bytes(data)[:16]


def check_and_line_end_hashes(
    prefix: bytes, start: int, keep: int = LINE_ENDS_KEPT
) -> tuple[str, list[tuple[int, str]]]:
    """`hash_bytes` of the whole ``prefix`` (the entry's new check), and (end, `line_end_hash`
    of ``prefix[:end]``) for its last ``keep`` line ends after ``start``: how a copy shorter
    than the check is known for shipped bytes (rule 10). One pass over the prefix for both."""
    ends: list[int] = []
    pos = len(prefix)
    while len(ends) < keep:
        newline = prefix.rfind(b"\n", start, pos)
        if newline < 0:
            break
        ends.append(newline + 1)
        pos = newline
    ends.reverse()
    hasher = hashlib.blake2b(digest_size=16)
    done = 0
    pairs: list[tuple[int, str]] = []
    for end in ends:
        hasher.update(prefix[done:end])
        done = end
        pairs.append((end, hasher.copy().hexdigest()[:16]))
    hasher.update(prefix[done:])
    return hasher.hexdigest(), pairs


def prefix_hash(fd: int, length: int) -> str:
    """Hash of the file's first ``length`` bytes (fewer if the file is shorter)."""
    return _hash(os.pread(fd, length, 0))


def head_matches(fd: int, head_len: int, head_hash: str) -> bool:
    """Do the file's first ``head_len`` bytes still hash to ``head_hash``? (Validation on resume:
    a file replaced or truncated and rewritten under the same inode fails this.)"""
    data = os.pread(fd, head_len, 0)
    return len(data) == head_len and _hash(data) == head_hash
