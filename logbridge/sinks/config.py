"""Destination settings (DESIGN.md §5, §6): one model per sink type, chosen by ``type``.

``destinations`` is a pydantic discriminated union over `SINK_CONFIGS`; a destination without
``type`` is a ``filesystem`` one, so configs written before types existed keep working. Adding a
type is one model here and one entry in `logbridge.sinks.base.SINK_TYPES` (the ``consume``
writer will read the same models for its destinations).
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


class FilesystemDestination(DestinationBase):
    """Partitioned NDJSON files in any fsspec store (``file://``, ``s3://``, ``az://``, ``gs://``, …)."""

    type: Literal["filesystem"] = "filesystem"
    url: str
    path: str | None = None
    partitioning: Literal["hour", "day", "month"] | None = None
    folder_by_topic: bool | None = None
    folder_by_routing_key: bool | None = None
    partition_time: Literal["event", "server"] = "event"
    timezone: str = "UTC"
    routing_key_placeholder: str = "default"
    # How a published file is encoded (`logbridge.sinks.encoders`): staging is always NDJSON.
    compression: Literal["none", "gzip"] = "none"
    roll: Roll = Roll()
    storage_options: dict[str, object] = {}

    @model_validator(mode="after")
    def _path_or_layout(self) -> FilesystemDestination:
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


class NatsDestination(DestinationBase):
    """NATS JetStream (DESIGN §5, §6): the keys are the contract; the sink comes with a later issue."""

    type: Literal["nats"]
    servers: list[str] = Field(min_length=1)
    stream: str = "AUDIT"
    subject: str = "audit.{topic}.{routing_key}"
    creds_file: str | None = None
    token_env: str | None = None
    user: str | None = None
    password_env: str | None = None


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
