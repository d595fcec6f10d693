"""File identity (fingerprints) and crash-safe checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from logbridge.shipper.checkpoint import CheckpointStore, Entry
from logbridge.shipper.identity import HEAD_BYTES, fingerprint, head_matches


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
