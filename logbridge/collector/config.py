"""The collector's configuration (DESIGN.md §6), validated whole at start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import Duration, Size, StrictModel, load_yaml, resolve_secret, validate
from ..errors import ConfigError
from ..sinks.config import DestinationConfig, FilesystemDestination, NatsDestination, Roll

# The destination models live with the sinks (``logbridge consume`` reads the same ones).
Destination = FilesystemDestination
__all__ = ["CollectorServerConfig", "Destination", "DestinationConfig", "Roll", "load"]


class Listen(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)


class TokenSpec(StrictModel):
    # Idempotence marks are keyed "<token name>/<source>": a name holds no '/' so the pair is unambiguous.
    name: str = Field(pattern=r"^[^/\x00-\x1f]+$")
    token_env: str | None = None
    token_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TokenSpec:
        if bool(self.token_env) == bool(self.token_file):
            raise ValueError("set exactly one of token_env or token_file")
        return self


class Auth(StrictModel):
    tokens: list[TokenSpec] = []


class Limits(StrictModel):
    max_body_bytes: Size = 16 * 1024 * 1024
    max_event_bytes: Size = 1024 * 1024
    max_depth: int = Field(default=64, ge=1, le=1000)
    max_header_bytes: Size = 64 * 1024
    header_timeout: Duration = 10.0  # connection (or request start) → end of headers, in total
    body_timeout: Duration = 30.0  # the longest silence between two pieces of a body


class TLS(StrictModel):
    cert: str
    key: str
    client_ca: str | None = None


class JournalSettings(StrictModel):
    # A compaction rewrites the whole state (every source's mark): bounded by size, and hourly so
    # that expired sources are forgotten on a quiet collector too.
    compact_bytes: Size = 32 * 1024 * 1024
    compact_every: Duration = 3600.0


class UiSettings(StrictModel):
    """The operator page (``GET /ui``, ``/api/stats``, ``/api/recent``): off unless enabled.

    ``ui: true`` is short for ``ui: {enabled: true}``. With ``token_env``/``token_file`` only that
    token opens the page (a node's token then shows nothing); otherwise any of ``auth.tokens``."""

    enabled: bool = False
    token_env: str | None = None
    token_file: str | None = None
    stale_after: Duration = 300.0  # a node silent this long is marked quiet on the page
    recent_events: int = Field(default=500, ge=1, le=10_000)  # the ring of latest events
    refresh: Duration = 2.0  # how often the page asks for new numbers

    @model_validator(mode="after")
    def _one_token_source(self) -> UiSettings:
        if self.token_env and self.token_file:
            raise ValueError("set at most one of token_env or token_file")
        if self.stale_after <= 0 or self.refresh <= 0:
            raise ValueError("stale_after and refresh must be above zero")
        return self


class CollectorServerConfig(StrictModel):
    """The ``logbridge collect`` server's config file (DESIGN.md §6). What a *sender* is told
    about a collector is `logbridge.client.CollectorTarget`."""

    listen: Listen = Listen()
    auth: Auth = Auth()
    durability: Literal["flush", "fsync"] = "flush"
    state_dir: str | None = None
    dead_letter: str
    destinations: list[DestinationConfig] = Field(min_length=1)
    default_topic: str | None = None
    limits: Limits = Limits()
    tls: TLS | None = None
    # How long a source's high-water mark is kept after its last batch. A retry older than this
    # would be stored again; shippers keep checkpoints 7 days, so 30 days is well past any retry.
    idempotence_ttl: Duration = 30 * 86400.0
    journal: JournalSettings = JournalSettings()
    ui: UiSettings = UiSettings()

    @field_validator("ui", mode="before")
    @classmethod
    def _ui_shorthand(cls, value: object) -> object:
        if isinstance(value, bool):
            return {"enabled": value}
        if not isinstance(value, dict):
            raise ValueError("expected true, false, or a mapping such as {enabled: true, stale_after: 5m}")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> CollectorServerConfig:
        names = [d.name for d in self.destinations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"destination names must be unique, repeated: {', '.join(dupes)}")
        streams: dict[tuple[str, str], str] = {}
        for dest in self.destinations:
            if isinstance(dest, NatsDestination):
                for server in dest.servers:
                    earlier = streams.setdefault((server, dest.stream), dest.name)
                    if earlier != dest.name:
                        raise ValueError(
                            f"destinations {earlier!r} and {dest.name!r} publish to the same stream "
                            f"{dest.stream!r} on {server}: their message ids would collide; give each its own stream"
                        )
        token_names = {t.name for t in self.auth.tokens}
        for dest in self.destinations:
            if dest.required_token is not None and dest.required_token not in token_names:
                raise ValueError(
                    f"destination {dest.name!r}: required_token {dest.required_token!r} is not a name in auth.tokens"
                )
        return self

    def resolved_state_dir(self) -> Path:
        """``state_dir`` or ``$XDG_STATE_HOME/logbridge/collector-<port>``; never inside the store."""
        if self.state_dir:
            return Path(self.state_dir).expanduser()
        base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
        return Path(base) / "logbridge" / f"collector-{self.listen.port}"

    def resolved_tokens(self) -> dict[str, str]:
        """Token name → secret. Raises `ConfigError` naming the token, never showing the value."""
        return {
            spec.name: resolve_secret(
                env=spec.token_env, file=spec.token_file, what=f"auth.tokens[{i}] ({spec.name})"
            )
            for i, spec in enumerate(self.auth.tokens)
        }

    def resolved_ui_tokens(self) -> dict[str, str]:
        """The tokens that open the operator page: its own (named ``ui``) or the API's."""
        ui = self.ui
        if ui.token_env or ui.token_file:
            what = "ui.token_env" if ui.token_env else "ui.token_file"
            return {"ui": resolve_secret(env=ui.token_env, file=ui.token_file, what=what)}
        return self.resolved_tokens()


# Keys an older collector accepted that mean nothing now: what to tell the operator instead of
# "unknown key", and still an error (a key that is read by nothing must not look like a setting).
REMOVED_KEYS = {
    "node_header_trusted": (
        "this key was removed: it was never read. X-Logbridge-Node is a label the sender chooses, "
        "stored as the line's 'node' as sent; who sent a batch is the token (auth.tokens). "
        "Delete the key"
    ),
}


def load(path: str | os.PathLike[str]) -> CollectorServerConfig:
    source = str(path)
    data = load_yaml(path)
    removed: list[str] = []
    if isinstance(data, dict):
        removed = [f"{key}: {why}" for key, why in REMOVED_KEYS.items() if key in data]
        data = {k: v for k, v in data.items() if k not in REMOVED_KEYS}
    try:
        config = validate(data, CollectorServerConfig, source=source)
    except ConfigError as exc:
        if removed:  # every problem at once: the removed keys and the rest
            raise _invalid(source, removed + exc.problems) from None
        raise
    if removed:
        raise _invalid(source, removed)
    try:
        config.resolved_tokens()
        if config.ui.enabled:
            config.resolved_ui_tokens()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", source=source) from None
    check_state_dir_outside_stores(config, source)
    return config


def _invalid(source: str, problems: list[str]) -> ConfigError:
    return ConfigError(
        f"{source}: invalid configuration:\n" + "\n".join(f"  {p}" for p in problems),
        source=source,
        problems=problems,
    )


def local_root(url: str) -> Path | None:
    """The local folder a ``file://`` (or plain path) URL names, absolute; None for any other
    protocol (an object store cannot hold the state dir)."""
    from fsspec.core import split_protocol

    protocol, path = split_protocol(url)
    if protocol not in (None, "file", "local") or "::" in url:
        return None
    return Path(os.path.abspath(os.path.expanduser(path)))


def check_state_dir_outside_stores(config: CollectorServerConfig, source: str) -> None:
    """DESIGN.md §5: staging files live under ``state_dir``, never inside the store, which holds
    only published files and their manifests (a staging file there would be read as published,
    and `logbridge verify` would report it). `ConfigError` naming both paths otherwise."""
    state_dir = config.resolved_state_dir()
    state = state_dir.resolve()
    stores = [("dead_letter", config.dead_letter)] + [
        (f"destinations[{i}].url ({d.name})", d.url)
        for i, d in enumerate(config.destinations)
        if d.type == "filesystem"
    ]
    problems = []
    for key, url in stores:
        root = local_root(url)
        if root is not None and (state == root.resolve() or root.resolve() in state.parents):
            problems.append(
                f"state_dir: {state_dir} is inside the store of {key}, {root}: the store holds only "
                "published files and their manifests (staging files live in state_dir); "
                "give state_dir a folder outside it"
            )
    if problems:
        raise _invalid(source, problems)
