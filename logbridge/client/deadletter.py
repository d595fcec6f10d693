"""What a collector refused for good is kept, never dropped: one record per refused batch.

``<dir>/<time>-<pid>-<n>.ndjson`` holds the lines exactly as they were sent (replay one with
``curl --data-binary @FILE.ndjson`` once the cause is fixed) and ``<same name>.json`` says why:
``time``, ``reason``, ``lines``, and what the sender knows (``source``, ``range``, ``status``,
``response``, ``file``...). The shipper keeps them in ``<state_dir>/dead-letter/``,
EventServerHandler in ``<spool slot>/dead-letter/``. Both files are fsynced before the
sender acknowledges the lines: a record is only ever written once it is on disk.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson


class DeadLetter:
    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)
        self._seq = itertools.count()

    def write(self, body: bytes, *, reason: str, lines: int, **context: Any) -> Path:
        """Keeps ``body`` with a note of why; returns the ``.ndjson`` path. `OSError` if it cannot."""
        self.dir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        base = self.dir / f"{stamp}-{os.getpid()}-{next(self._seq)}"
        data_path = base.with_suffix(".ndjson")
        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
            "reason": reason,
            "lines": lines,
            **context,
        }
        for path, content in ((data_path, body), (base.with_suffix(".json"), orjson.dumps(meta))):
            with open(path, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        return data_path
