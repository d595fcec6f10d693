"""The stored lines as one flat table, ``events``, that every report kind queries.

DuckDB reads the published NDJSON (``.gz`` and ``.zst`` too, by extension) through
``read_json`` with the columns below declared up front: no schema sampling, and only these
fields leave the JSON parser. Every leaf is read as VARCHAR and cast in SQL with ``try_cast``
because events come from many senders: a number where text was expected (or the reverse) must
not stop a report. A line that is not JSON, or not a stored line, does stop it, with DuckDB's
message naming the file and line (`ReportError`), never silently skipped.

Event time follows DESIGN.md §2: the log4j envelope's ``timestamp``, log4j 2's ``instant`` /
``timeMillis``, the event's own ``timestamp``, then ``serverTimestamp`` (the receive time). All
grouping by hour or day is in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

COLUMNS = {
    "clientEvent": (
        'STRUCT(msgType VARCHAR, authUser VARCHAR, "timestamp" VARCHAR, serviceId VARCHAR, '
        "endpointId VARCHAR, responseTimeMs VARCHAR, success VARCHAR, error VARCHAR, usage VARCHAR)"
    ),
    "origAddress": "VARCHAR",
    "serverTimestamp": "VARCHAR",
    "topic": "VARCHAR",
    "routingKey": "VARCHAR",
    "node": "VARCHAR",
    "envelope": 'STRUCT("timestamp" VARCHAR, timeMillis VARCHAR, instant VARCHAR, callTime VARCHAR)',
}

# The timestamp shapes DSS, log4j and logbridge write (milli-, micro-, nanoseconds; offsets
# +0100, +01:00 or Z). A naive time is read as UTC (the session time zone).
TIME_FORMATS = [
    f"%Y-%m-%d{sep}%H:%M:%S{frac}{zone}"
    for sep in ("T", " ")
    for frac in (".%g", ".%f", ".%n", "")
    for zone in ("%z", "Z", "")
]


def _strptime(expr: str) -> str:
    formats = ", ".join("'" + f + "'" for f in TIME_FORMATS)
    return f"try_strptime({expr}, [{formats}])::TIMESTAMPTZ"


def _json_field(expr: str, path: str) -> str:
    """A field of a nested object read as JSON text (NULL when the value is not an object)."""
    return f"CASE WHEN json_valid({expr}) THEN json_extract_string({expr}, '{path}') END"


EVENT_TIME = (
    "coalesce("
    + ", ".join(
        [
            _strptime("envelope.timestamp"),
            "to_timestamp(try_cast(" + _json_field("envelope.instant", "$.epochSecond") + " AS DOUBLE)"
            " + coalesce(try_cast("
            + _json_field("envelope.instant", "$.nanoOfSecond")
            + " AS DOUBLE), 0) / 1e9)",
            "to_timestamp(try_cast(envelope.timeMillis AS DOUBLE) / 1000)",
            _strptime("clientEvent.timestamp"),
            _strptime("serverTimestamp"),
        ]
    )
    + ")"
)

# One row per stored line: the fields the report kinds use, named for what they are.
FLAT_SELECT = f"""
    topic,
    routingKey AS routing_key,
    coalesce(node, origAddress) AS node,
    clientEvent.authUser AS user,
    clientEvent.msgType AS msg_type,
    {EVENT_TIME} AS t,
    coalesce(clientEvent.serviceId, routingKey) AS service,
    clientEvent.endpointId AS endpoint,
    coalesce(try_cast(clientEvent.responseTimeMs AS DOUBLE), try_cast(envelope.callTime AS DOUBLE))
        AS call_ms,
    (clientEvent.error IS NOT NULL OR lower(coalesce(clientEvent.success, '')) = 'false') AS failed,
    coalesce({_json_field("clientEvent.error", "$.message")}, clientEvent.error) AS error_message,
    {_json_field("clientEvent.usage", "$.id")} AS usage_id,
    {_json_field("clientEvent.usage", "$.type")} AS usage_type,
    {_json_field("clientEvent.usage", "$.context.projectKey")} AS project,
    try_cast({_json_field("clientEvent.usage", "$.cpuTotalMs")} AS DOUBLE) AS cpu_ms,
    try_cast({_json_field("clientEvent.usage", "$.peakMemoryBytes")} AS DOUBLE) AS peak_memory_bytes
"""
# records = true: each line is one object whose keys are the columns. Left to 'auto', DuckDB 2.0
# spends ~30 ms a file deciding so (50x the read itself on a store of hourly files).
READ_JSON = (
    "read_json($files, format = 'newline_delimited', records = true, columns = $columns, "
    "compression = 'auto'{extra})"
)
FLAT = f"SELECT {FLAT_SELECT} FROM " + READ_JSON.format(extra="")


@dataclass
class Filters:
    """What a question keeps: a time window (``until`` exclusive) and exact values."""

    since: datetime | None = None
    until: datetime | None = None
    topics: list[str] | None = None
    routing_keys: list[str] | None = None
    users: list[str] | None = None
    nodes: list[str] | None = None
    # Events without a routing key are stored under this folder name; filtering on it finds them.
    routing_key_placeholder: str = "default"

    def sql(self) -> tuple[str, dict[str, Any]]:
        """The WHERE clause over the flat rows, and its parameters."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.since is not None:
            clauses.append("t >= $since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("t < $until")
            params["until"] = self.until
        if self.routing_keys:
            params["placeholder"] = self.routing_key_placeholder
        for name, column, values in (
            ("topics", "topic", self.topics),
            ("routing_keys", "coalesce(routing_key, $placeholder)", self.routing_keys),
            ("users", "user", self.users),
            ("nodes", "node", self.nodes),
        ):
            if values:
                clauses.append(f"{column} IN (SELECT unnest(${name}))")
                params[name] = list(values)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def events_sql(filters: Filters, rows: str | None = None) -> tuple[str, dict[str, Any]]:
    """``SELECT … FROM read_json($files …) WHERE …`` and its parameters (without ``files``);
    with ``rows``, the same over already flat rows (a `digest` cache) instead."""
    where, params = filters.sql()
    if rows is not None:
        return f"SELECT * FROM ({rows}){where}", params
    params["columns"] = COLUMNS
    return f"SELECT * FROM ({FLAT}){where}", params
