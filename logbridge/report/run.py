"""A report from a store URL: walk the layout (pruned), hand the files to DuckDB, run a kind.

DuckDB reads local paths itself; for any other store the fsspec file system is registered with
the connection (``register_filesystem``) and DuckDB opens ``s3://…`` / ``az://…`` / ``gs://…``
paths through it, so the credentials and ``storage_options`` are the destination's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import ReportError
from ..sinks.fs import is_local, map_storage_errors, open_filesystem
from .events import Filters, events_sql
from .kinds import KINDS, Kind
from .layout import DEFAULT_TEMPLATE, Selection, Window, find_data_files, parse_template


@dataclass
class Table:
    """One report: column names and rows (times as aware UTC datetimes)."""

    kind: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class Store:
    """A store URL opened for reading, and what a walk of it found."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    template: str = DEFAULT_TEMPLATE
    timezone: str = "UTC"
    routing_key_placeholder: str = "default"

    def __post_init__(self) -> None:
        try:
            self.levels = parse_template(self.template)
        except ValueError as exc:
            raise ReportError(f"--layout: {exc}") from None
        self.tz = UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)
        self.fs, self.root = open_filesystem(self.url, self.storage_options, "STORE_URL")
        self.local = is_local(self.fs)

    def files(self, filters: Filters, topics: tuple[str, ...] | None) -> tuple[list[str], Selection]:
        """The data files a question may need, as paths DuckDB opens, and what the walk saw."""
        wanted = list(topics) if topics else None
        if filters.topics:
            wanted = [t for t in filters.topics if wanted is None or t in wanted]
        selection = Selection.of(
            Window(filters.since, filters.until), wanted, filters.routing_keys, self.routing_key_placeholder
        )
        if wanted == []:
            return [], selection
        with map_storage_errors(self.url, "listing the store"):
            if not self.fs.exists(self.root):
                raise ReportError(f"{self.url}: no such store (nothing at {self.root!r})")
            found = find_data_files(self.fs, self.root, self.levels, selection, self.tz)
        if self.local:
            return found, selection
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return [f"{protocol}://{path}" for path in found], selection


def connect(store: Store) -> Any:
    """A DuckDB connection that reads this store (UTC, the store's file system registered)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if not store.local:
        con.register_filesystem(store.fs)
    return con


_DUCKDB_HINT = re.compile(r"\s*Try (setting|increasing) .*", re.S)


def query(con: Any, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql``; a stored line DuckDB cannot read becomes a `ReportError` naming it."""
    import duckdb

    try:
        result = con.execute(sql, params)
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()
    except duckdb.InvalidInputException as exc:
        message = _DUCKDB_HINT.sub("", str(exc)).strip()
        raise ReportError(
            f"{message} (every stored line is a JSON object in the collector's format: "
            "`logbridge verify STORE_URL` names what was altered)"
        ) from None
    except duckdb.IOException as exc:
        raise ReportError(f"reading the store: {exc}") from None


def run_kind(
    con: Any, kind: Kind, filters: Filters, files: list[str], inactive_since: datetime | None = None
) -> Table:
    """One kind's report over ``files`` (none: the kind's empty table, with its columns)."""
    events, params = events_sql(filters)
    params["files"] = files or ["/dev/null"]
    if "$inactive_since" in kind.sql:
        params["inactive_since"] = inactive_since
    if not files:
        events += " LIMIT 0"
    body = kind.sql.strip()
    # A kind with CTEs of its own continues the list that ``events`` opens.
    sql = f"WITH events AS ({events}), {body[4:]}" if body.startswith("WITH") else f"WITH events AS ({events}) {body}"
    columns, rows = query(con, sql, params)
    return Table(kind.name, columns, rows)


def report(
    store: Store, kind_name: str, filters: Filters, inactive_since: datetime | None = None
) -> tuple[Table, Selection]:
    kind = KINDS[kind_name]
    files, selection = store.files(filters, kind.topics)
    con = connect(store)
    try:
        return run_kind(con, kind, filters, files, inactive_since), selection
    finally:
        con.close()
