"""Destination settings (DESIGN.md §5, §6): one model per sink type, chosen by ``type``.

``destinations`` is a pydantic discriminated union over `SINK_CONFIGS`; a destination without
``type`` is a ``filesystem`` one, so configs written before types existed keep working. Adding a
type is one model here and one entry in `logbridge.sinks.base.SINK_TYPES` (the ``consume``
writer will read the same models for its destinations). Both types share the partition keys
(`PartitionedDestination`): a ``nats`` message is one partition's lines.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ..config import UNION_TAG, Duration, Size, StrictModel

Selector = Literal["all"] | list[str]


class Roll(StrictModel):
    max_bytes: Size = 64 * 1024 * 1024
    max_age: Duration = 300.0


class DestinationBase(StrictModel):
    """What every destination has: a name and the filters that route events to it."""

    name: str = Field(pattern=r"^[A-Za-z0-9.-][A-Za-z0-9_.-]*$")  # a leading '_' is reserved (_dead-letter)
    topics: Selector = "all"
    routing_keys: Selector = "all"
    required_token: str | None = None  # a token *name* from auth.tokens that only this destination accepts

    def accepts(self, topic: str, routing_key: str | None) -> bool:
        if self.topics != "all" and topic not in self.topics:
            return False
        return self.routing_keys == "all" or (routing_key or "") in self.routing_keys


class PartitionedDestination(DestinationBase):
    """A destination whose lines are grouped by store partition: the path template and the time
    it renders. A ``nats`` destination has the same keys, so that its messages are the groups a
    ``filesystem`` destination with the same keys stores (and a writer can store them there)."""

    path: str | None = None
    partitioning: Literal["hour", "day", "month"] | None = None
    folder_by_topic: bool | None = None
    folder_by_routing_key: bool | None = None
    partition_time: Literal["event", "server"] = "event"
    timezone: str = "UTC"
    routing_key_placeholder: str = "default"

    @model_validator(mode="after")
    def _path_or_layout(self) -> PartitionedDestination:
        layout_keys = [
            k
            for k in ("partitioning", "folder_by_topic", "folder_by_routing_key")
            if getattr(self, k) is not None
        ]
        if self.path is not None and layout_keys:
            raise ValueError(
                f"'path' and {', '.join(layout_keys)} both given: use either a path template or the DSS-style keys"
            )
        return self

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (expected an IANA name such as UTC or Europe/Paris)"
            ) from None
        return value

    def path_template(self) -> str:
        """The partition path template, from ``path`` or the DSS-style keys."""
        if self.path is not None:
            return self.path
        parts = []
        if self.folder_by_topic is not False:
            parts.append("{topic}")
        if self.folder_by_routing_key is not False:
            parts.append("{routing_key}")
        parts.append(
            {"hour": "%Y/%m/%d/%H", "day": "%Y/%m/%d", "month": "%Y/%m"}[self.partitioning or "hour"]
        )
        return "/".join(parts)


class ManifestSettings(StrictModel):
    """Tamper evidence (docs/tamper-evidence.md): a manifest per published file, chained; signed
    with HMAC-SHA256 when a key is given (by environment variable or file, never logged)."""

    enabled: bool = True
    # Per-line digests let verify name the changed lines; without them it names the file only,
    # and sealing costs about a third (docs/tamper-evidence.md).
    line_digests: bool = True
    sign_key_env: str | None = None
    sign_key_file: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> ManifestSettings:
        if self.sign_key_env and self.sign_key_file:
            raise ValueError("set sign_key_env or sign_key_file, not both")
        if not self.enabled and (self.sign_key_env or self.sign_key_file):
            raise ValueError("a signing key is set but manifests are disabled (enabled: false)")
        return self


class FilesystemDestination(PartitionedDestination):
    """Partitioned NDJSON files in any fsspec store (``file://``, ``s3://``, ``az://``, ``gs://``, …)."""

    type: Literal["filesystem"] = "filesystem"
    url: str
    # How a published file is encoded (`logbridge.sinks.encoders`): staging is always NDJSON.
    compression: Literal["none", "gzip"] = "none"
    roll: Roll = Roll()
    storage_options: dict[str, object] = {}
    manifest: ManifestSettings = ManifestSettings()
    # Store-side retention: whole partitions whose time window ended longer ago are deleted (and
    # the deletion recorded in the manifest chain), checked every retention_check.
    retention: Duration | None = None
    retention_check: Duration = 3600.0

    @model_validator(mode="after")
    def _store_layout(self) -> FilesystemDestination:
        from ..store.layout import META, PartitionLayout

        if self.path_template().lstrip("/").startswith("."):
            raise ValueError(f"path: a partition may not start with '.' ({META}/ holds the manifests)")
        if self.retention is not None:
            if self.retention <= 0:
                raise ValueError("retention must be more than 0 (leave it out to keep everything)")
            if self.retention_check <= 0:
                raise ValueError("retention_check must be more than 0")
            if not PartitionLayout(self.path_template(), self.timezone).times:
                raise ValueError(
                    f"retention needs partition times in the path, and {self.path_template()!r} has none "
                    "that can be read back (use %Y %m %d %j %H %M %S)"
                )
            if not self.manifest.enabled:
                raise ValueError(
                    "retention records its deletions in the manifest chain: keep manifests enabled"
                )
        return self


class NatsTLS(StrictModel):
    """TLS to the NATS servers: ``ca`` to trust (else the system's CAs), ``cert`` + ``key`` to
    present (mutual TLS). An empty ``tls: {}`` uses TLS with the system's CAs."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _cert_with_key(self) -> NatsTLS:
        if bool(self.cert) != bool(self.key):
            raise ValueError("set cert and key together (a client certificate needs its key)")
        return self


_NATS_SCHEMES = ("nats", "tls", "ws", "wss")


class NatsConnection(StrictModel):
    """How to reach the NATS servers: what a ``nats`` destination and a ``logbridge consume``
    writer's ``nats`` section share (`logbridge.sinks.nats.connect_options` reads these keys)."""

    servers: list[str] = Field(min_length=1)
    stream: str = Field(default="AUDIT", pattern=r"^[A-Za-z0-9_-]{1,200}$")
    # Credentials: at most one of a creds file, a token, a user and password (secrets by *_env).
    creds_file: str | None = None
    token_env: str | None = None
    user: str | None = None
    password_env: str | None = None
    tls: NatsTLS | None = None
    # The longest wait for a server at start (each server is tried twice).
    connect_timeout: Duration = 5.0

    @field_validator("servers")
    @classmethod
    def _server_urls(cls, servers: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for server in servers:
            try:
                url = urlsplit(server if "://" in server else f"nats://{server}")
                url.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                raise ValueError(f"{server!r} is not a server URL such as nats://host:4222") from None
            if url.scheme not in _NATS_SCHEMES or not url.hostname:
                raise ValueError(
                    f"{server!r} is not a server URL such as nats://host:4222 "
                    f"(schemes: {', '.join(_NATS_SCHEMES)})"
                )
        return servers

    @model_validator(mode="after")
    def _one_credential(self) -> NatsConnection:
        given = [k for k in ("creds_file", "token_env", "user") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(
                f"set at most one of creds_file, token_env, user (+ password_env), got {', '.join(given)}"
            )
        if bool(self.user) != bool(self.password_env):
            raise ValueError("user and password_env go together")
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be more than 0")
        return self


class NatsDestination(PartitionedDestination, NatsConnection):
    """NATS JetStream (DESIGN §5, §6; docs/nats.md): each request's lines published as one
    message per store partition to ``stream``, before the request is answered.

    The partition keys (``path``, ``partition_time``, ``timezone``, ``routing_key_placeholder``…)
    are the filesystem destination's: a message holds the lines a filesystem destination with
    the same keys would append to one partition, and says which (``Logbridge-Partition``).
    The connection keys (``servers``, credentials, ``tls``) are `NatsConnection`'s."""

    type: Literal["nats"]
    subject: str = "audit.{topic}.{routing_key}"
    # The stream, created with these or checked against them at start.
    replicas: int = Field(default=1, ge=1, le=5)
    max_bytes: Size | None = None  # none: no limit of the stream's own (the server's apply)
    max_age: Duration | None = None  # none: messages are kept until removed by limits or writers
    duplicate_window: Duration = 120.0
    # The longest wait for JetStream's ack of one message before the request is answered 503.
    publish_timeout: Duration = 5.0

    @field_validator("subject")
    @classmethod
    def _subject_template(cls, value: str) -> str:
        from .subjects import SubjectTemplate

        SubjectTemplate(value)  # raises ValueError naming what is wrong
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NatsDestination:
        if self.duplicate_window <= 0:
            raise ValueError("duplicate_window must be more than 0 (it is what makes a retry harmless)")
        if self.max_age is not None and self.max_age < self.duplicate_window:
            raise ValueError(
                f"max_age ({self.max_age:g}s) must be at least duplicate_window ({self.duplicate_window:g}s)"
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("max_bytes must be more than 0 (leave it out for no limit)")
        if self.publish_timeout <= 0:
            raise ValueError("publish_timeout must be more than 0")
        return self


SINK_CONFIGS: dict[str, type[DestinationBase]] = {
    "filesystem": FilesystemDestination,
    "nats": NatsDestination,
}


def _destination_type(value: Any) -> str | None:
    """The union's tag: ``type``, ``filesystem`` when absent; None (an error naming the choices)
    for anything else than a known name."""
    kind = value.get("type", "filesystem") if isinstance(value, dict) else getattr(value, "type", None)
    return UNION_TAG + kind if isinstance(kind, str) and kind in SINK_CONFIGS else None


DestinationConfig = Annotated[
    Annotated[FilesystemDestination, Tag(UNION_TAG + "filesystem")]
    | Annotated[NatsDestination, Tag(UNION_TAG + "nats")],
    Discriminator(
        _destination_type,
        custom_error_type="destination_type",
        custom_error_message=f"type: expected one of {', '.join(SINK_CONFIGS)}",
    ),
]
