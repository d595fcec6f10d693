"""The shipper's configuration (DESIGN.md §6): which files, which collector, how to batch.

The minimal file of DESIGN.md §6 works as written; every other key has a default chosen for
a node that must not lose lines: the files themselves are the buffer, so nothing here bounds
how far behind the shipper may fall, only how much it holds in memory at once.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..client.target import CollectorTarget
from ..config import Duration, Size, StrictModel, load_config, validate


class InputConfig(StrictModel):
    """One glob of files. ``format: log4j`` lines are JSON envelopes sent as they are (the
    collector unwraps them; ``topic``/``routing_key`` are then only fallbacks for lines that
    carry none); ``format: text`` lines become bare events ``{"message": line}`` with this
    input's topic and routing key."""

    path: str
    exclude: list[str] = []
    format: Literal["log4j", "text"] = "log4j"
    topic: str | None = None
    routing_key: str | None = None
    read_from: Literal["beginning", "end"] = "beginning"
    poll: bool | None = None  # None: automatic (polling on NFS/CIFS or without inotify)

    @model_validator(mode="after")
    def _text_needs_topic(self) -> InputConfig:
        if self.format == "text" and not (self.topic and self.topic.strip()):
            raise ValueError("format: text needs a topic (text lines carry no logger to take it from)")
        return self


class BatchConfig(StrictModel):
    max_events: int = Field(default=1000, ge=1)
    max_bytes: Size = 1024 * 1024
    linger: Duration = 0.2

    @field_validator("max_bytes")
    @classmethod
    def _not_tiny(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("batch.max_bytes must be at least 1KiB")
        return value


class MetricsConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


def _default_state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "logbridge" / "shipper")


class ShipperConfig(StrictModel):
    node: str = Field(default_factory=socket.gethostname)
    collector: CollectorTarget
    inputs: list[InputConfig] = Field(min_length=1)
    state_dir: str = Field(default_factory=_default_state_dir)
    batch: BatchConfig = BatchConfig()
    # A line longer than this is not sent: a marker goes to the collector's dead letter instead.
    max_line_bytes: Size = 1024 * 1024
    # How long a last line without its newline is held before it may be shipped as it is.
    partial_line_timeout: Duration = 5.0
    # A file with no new bytes for this long is closed (reopened when it grows).
    close_inactive: Duration = 300.0
    # At most this many files are held open; beyond it, files wait for one to be closed (the
    # least recently grown with nothing left to send). None: half the soft RLIMIT_NOFILE, at
    # most 1024. A value too close to the limit is lowered (64 descriptors are kept spare).
    max_open_files: int | None = Field(default=None, ge=1)
    # Globs are re-read this often even when no file event arrived (events can be missed).
    scan_interval: Duration = 10.0
    # Open files are checked for growth this often when no event woke the shipper.
    poll_interval: Duration = 0.25
    # The acknowledged offsets are written this often while they move, and at shutdown; never
    # per batch (a SIGKILL in between costs re-sent batches the collector drops, not lines).
    checkpoint_interval: Duration = 1.0
    # A checkpoint entry whose file has not been seen for this long is forgotten.
    checkpoint_ttl: Duration = 7 * 86400.0
    metrics: MetricsConfig | None = None

    @model_validator(mode="after")
    def _line_fits_a_request(self) -> ShipperConfig:
        if self.max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1 byte")
        return self


def load(path: str | os.PathLike[str]) -> ShipperConfig:
    """Read and validate a shipper config file (`ConfigError` naming file and key otherwise)."""
    return load_config(path, ShipperConfig)


def validate_dict(data: dict[str, object], source: str = "<shipper config>") -> ShipperConfig:
    """Validate an already-parsed config (the demo and tests build theirs in code)."""
    return validate(data, ShipperConfig, source=source)
