"""File identity (fingerprints) and crash-safe checkpoints."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.shipper.checkpoint import CheckpointStore, Entry
from logbridge.shipper.identity import (
    HEAD_BYTES,
    LINE_ENDS_KEPT,
    check_and_line_end_hashes,
    fingerprint,
    hash_bytes,
    head_matches,
    line_end_hash,
)


def _fp(path: Path, force: bool = False):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    try:
        return fingerprint(fd, force=force)
    finally:
        os.close(fd)


def test_no_identity_until_the_first_line_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    assert _fp(path) is None and _fp(path, force=True) is None
    path.write_bytes(b'{"half"')
    assert _fp(path) is None
    forced = _fp(path, force=True)
    assert forced is not None and forced.head_len == 7
    path.write_bytes(b'{"first": 1}\n{"second": 2}\n')
    fp = _fp(path)
    assert fp is not None and fp.head_len == len(b'{"first": 1}\n')


def test_long_first_line_is_fingerprinted_by_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * (HEAD_BYTES + 10))
    fp = _fp(path)
    assert fp is not None and fp.head_len == HEAD_BYTES


def test_rename_keeps_the_identity_rewrite_does_not(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"line one\nline two\n")
    fp = _fp(path)
    assert fp is not None
    os.rename(path, tmp_path / "a.log.1")
    renamed = _fp(tmp_path / "a.log.1")
    assert renamed == fp
    assert renamed.source_id("n") == fp.source_id("n") != fp.source_id("other-node")
    with open(tmp_path / "a.log.1", "r+b") as fh:
        fh.write(b"LINE")
    fd = os.open(tmp_path / "a.log.1", os.O_RDONLY)
    try:
        assert not head_matches(fd, fp.head_len, fp.head_hash)
    finally:
        os.close(fd)


def _entry(n: int) -> Entry:
    return Entry(
        f"node/{n}", f"/logs/{n}.log", 1, n, 10, "ab" * 16, offset=n * 100, inflight=None, size=n * 200
    )


def test_checkpoint_round_trip_and_nothing_left_behind(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.load() == {}
    entries = {e.source: e for e in (_entry(1), _entry(2))}
    entries["node/2"].inflight = 4096
    store.save(entries)
    assert store.load() == entries
    assert sorted(os.listdir(tmp_path)) == ["checkpoints.json"]


def test_unreadable_checkpoint_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = CheckpointStore(tmp_path)
    store.path.write_bytes(b'{"version": 1, "files": [{"sour')  # what a torn write would look like
    assert store.load() == {}
    assert any(name.startswith("checkpoints.json.corrupt-") for name in os.listdir(tmp_path))
    assert "unreadable" in caplog.text


def test_a_crash_during_save_leaves_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CheckpointStore(tmp_path)
    store.save({"node/1": _entry(1)})

    def crash(*args: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.save({"node/2": _entry(2)})
    monkeypatch.undo()
    assert list(store.load()) == ["node/1"]


_lines = st.lists(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\n"), min_size=1, max_size=40
)


@given(lines=_lines, cut=st.integers(0, 600), start=st.integers(0, 600))
def test_line_end_hashes_are_the_last_line_ends_after_start(lines: list[bytes], cut: int, start: int) -> None:
    prefix = b"".join(lines)[: cut or None]
    check, got = check_and_line_end_hashes(prefix, start)
    assert check == hash_bytes(prefix)
    ends = [i + 1 for i, byte in enumerate(prefix) if byte == ord("\n") and i >= start]
    assert [end for end, _ in got] == ends[-LINE_ENDS_KEPT:]
    assert all(digest == line_end_hash(prefix[:end]) for end, digest in got)


@given(lines=_lines, shipped_batches=st.lists(st.integers(1, 80), min_size=1, max_size=8), data=st.data())
def test_a_shorter_copy_is_known_for_shipped_bytes_only(
    lines: list[bytes], shipped_batches: list[int], data: st.DataObject
) -> None:
    """The check grows batch by batch as `engine._advance` grows it; a copy of any length up to
    what was shipped (within the last line ends kept) is known, a copy with another byte is not."""
    content = b"".join(lines)
    entry = Entry("s", "p", 0, 0, 1, "")
    for step in shipped_batches:
        end = min(len(content), entry.check_len + step)
        entry.remember_line_ends(check_and_line_end_hashes(content[:end], entry.check_len)[1])
        entry.check_len = entry.offset = end
    size = data.draw(st.integers(0, entry.check_len))
    kept = [int(pair.split(":")[0]) for pair in entry.line_ends.split()]
    assert len(kept) <= LINE_ENDS_KEPT
    oldest = kept[0] if kept else entry.check_len + 1
    with tempfile.TemporaryFile() as copy:
        copy.write(content[:size])
        copy.flush()
        known = entry.shipped_copy(copy.fileno(), size)
        assert known == (size >= oldest), (size, oldest)
        last_end = max((end for end in kept if end <= size), default=0)
        if last_end:
            # Any other byte before the last line end kept: another file, shipped as one.
            flip = data.draw(st.integers(0, last_end - 1))
            changed = bytearray(content[:size])
            changed[flip] ^= data.draw(st.integers(1, 255))
            copy.seek(0)
            copy.write(bytes(changed))
            copy.flush()
            assert not entry.shipped_copy(copy.fileno(), size)
