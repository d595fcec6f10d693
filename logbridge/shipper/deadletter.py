"""Batches the collector refused for good (a 4xx other than 409/429/auth) are kept here, never
dropped: ``<state_dir>/dead-letter/<time>-<n>.ndjson`` holds the batch's lines exactly as they
were in the file, and ``<same name>.json`` says where they came from and what the collector
answered. Replaying one is ``curl --data-binary @FILE.ndjson`` once the cause is fixed.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path
from typing import Any

import orjson


class DeadLetter:
    def __init__(self, state_dir: str | os.PathLike[str]):
        self.dir = Path(state_dir) / "dead-letter"
        self._seq = itertools.count()

    def write(self, body: bytes, meta: dict[str, Any]) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        base = self.dir / f"{stamp}-{os.getpid()}-{next(self._seq)}"
        data_path = base.with_suffix(".ndjson")
        for path, content in ((data_path, body), (base.with_suffix(".json"), orjson.dumps(meta))):
            with open(path, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
        return data_path
