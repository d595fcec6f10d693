"""``ship --status``: each file's lag, followed by inode when a rotation renamed it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from logbridge.shipper.checkpoint import CheckpointStore, Entry
from logbridge.shipper.identity import fingerprint
from logbridge.shipper.status import file_lag, render


def _entry(path: Path, offset: int) -> Entry:
    fd = os.open(path, os.O_RDONLY)
    try:
        fp = fingerprint(fd)
    finally:
        os.close(fd)
    assert fp is not None
    return Entry(
        "node/x", str(path), fp.dev, fp.ino, fp.head_len, fp.head_hash, offset, size=path.stat().st_size
    )


def test_a_renamed_file_keeps_its_lag(tmp_path: Path, make_config: Any) -> None:
    logs = tmp_path / "logs"
    live = logs / "app.log"
    live.write_bytes(b"first line\n" + b"x" * 89 + b"\n")  # 101 bytes
    entry = _entry(live, offset=11)
    cfg = make_config(inputs=[{"path": str(logs / "app.log*")}])
    CheckpointStore(cfg.state_dir).save({entry.source: entry})

    assert file_lag(entry) == ("ok", 101, 90)
    os.rename(live, logs / "app.log.1")
    live.write_bytes(b"another file\n")  # the old name now holds the next file
    assert file_lag(entry) == (f"renamed to {logs / 'app.log.1'}", 101, 90)
    table = render(cfg)
    assert f"renamed to {logs / 'app.log.1'}" in table
    assert "total lag: 90 bytes in 1 files" in table

    os.unlink(logs / "app.log.1")
    assert file_lag(entry) == ("gone", None, None)
