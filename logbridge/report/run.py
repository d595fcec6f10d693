"""A report from a store URL: walk the layout (pruned), hand the files to DuckDB, run a kind.

DuckDB reads local paths itself; for any other store the fsspec file system is registered with
the connection (``register_filesystem``) and DuckDB opens ``s3://…`` / ``az://…`` / ``gs://…``
paths through it, so the credentials and ``storage_options`` are the destination's own. With a
cache directory, the rows come from the `digest` cache and only new files are read as JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import ReportError
from ..sinks.fs import is_local, map_storage_errors, open_filesystem
from .events import Filters, events_sql
from .kinds import KINDS
from .layout import DEFAULT_TEMPLATE, DataFile, Selection, Window, find_data_files, parse_template


@dataclass
class Table:
    """One report: column names and rows (times as aware UTC datetimes)."""

    kind: str
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class Store:
    """A store URL opened for reading."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    template: str = DEFAULT_TEMPLATE
    timezone: str = "UTC"
    routing_key_placeholder: str = "default"
    cache_dir: Path | None = None  # the `digest` cache's folder; None: read the JSON every time

    def __post_init__(self) -> None:
        try:
            self.levels = parse_template(self.template)
        except ValueError as exc:
            raise ReportError(f"layout: {exc}") from None
        self.tz = UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)
        self.fs, self.root = open_filesystem(self.url, self.storage_options, "STORE_URL")
        self.local = is_local(self.fs)

    def exists(self) -> bool:
        with map_storage_errors(self.url, "looking for the store"):
            return bool(self.fs.exists(self.root))

    def files(
        self, filters: Filters, topics: tuple[str, ...] | None
    ) -> tuple[list[DataFile], list[str], Selection]:
        """The data files a question may need, the same as paths DuckDB opens, and what the walk saw."""
        wanted = list(topics) if topics else None
        if filters.topics:
            wanted = [t for t in filters.topics if wanted is None or t in wanted]
        selection = Selection.of(
            Window(filters.since, filters.until), wanted, filters.routing_keys, self.routing_key_placeholder
        )
        if wanted == []:
            return [], [], selection
        with map_storage_errors(self.url, "listing the store"):
            found = find_data_files(self.fs, self.root, self.levels, selection, self.tz)
        selection.files_read = len(found)
        if self.local:
            return found, [f.path for f in found], selection
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return found, [f"{protocol}://{f.path}" for f in found], selection


def connect(store: Store, database: str = ":memory:") -> Any:
    """A DuckDB connection that reads this store (UTC, the store's file system registered)."""
    import duckdb

    con = duckdb.connect(database)
    con.execute("SET TimeZone = 'UTC'")
    if not store.local:
        con.register_filesystem(store.fs)
    return con


def open_digests(store: Store, selection: Selection) -> tuple[Any, Any]:
    """(connection, `Digests`) on the store's cache file; (in-memory connection, None) without a
    cache, or when another report holds it (noted in ``selection.notes``: it is not waited for)."""
    import duckdb

    from .digest import Digests, cache_file

    if store.cache_dir is None:
        return connect(store), None
    path = cache_file(store.cache_dir, store.url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = connect(store, str(path))
    except (OSError, duckdb.IOException) as exc:
        selection.notes.append(f"the cache {path} was not used ({exc}): the store was read directly")
        return connect(store), None
    try:
        return con, Digests(con)
    except BaseException:
        con.close()
        raise


_DUCKDB_HINT = re.compile(r"\s*Try (setting|increasing) .*", re.S)
_DUCKDB_FILE = re.compile(r'in file "([^"]+)"')


def first_bad_line(fs: Any, path: str) -> tuple[int, str] | None:
    """(line number, what is wrong) of the first line of ``path`` that is not a stored line.

    DuckDB names the file but its line numbers are not always right (one off for malformed
    JSON in 2.0), and the user goes to that line: it is found again here, exactly."""
    import gzip

    import orjson

    with fs.open(path.split("://", 1)[-1] if "://" in path else path, "rb") as fh:
        data = fh.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return number, "not JSON"
        if not isinstance(line, dict):
            return number, "not a JSON object"
        for key in ("clientEvent", "envelope"):
            if key in line and not isinstance(line[key], dict | None):
                return number, f"{key} is not an object"
    return None


@contextmanager
def duckdb_errors(fs: Any = None) -> Iterator[None]:
    """A stored line DuckDB cannot read becomes a `ReportError` naming the file and line."""
    import duckdb

    try:
        yield
    except duckdb.InvalidInputException as exc:
        message = _DUCKDB_HINT.sub("", str(exc)).strip()
        found = _DUCKDB_FILE.search(message)
        if found and fs is not None:
            bad = first_bad_line(fs, found.group(1))
            if bad is not None:
                message = f"{found.group(1)}, line {bad[0]}: {bad[1]}"
        raise ReportError(
            f"{message} (every stored line is a JSON object in the collector's format: "
            "`logbridge verify STORE_URL` names what was altered)"
        ) from None
    except duckdb.IOException as exc:
        raise ReportError(f"reading the store: {exc}") from None


def query(
    con: Any, sql: str, params: dict[str, Any], fs: Any = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql``: (column names, rows)."""
    with duckdb_errors(fs):
        result = con.execute(sql, params)
        columns = [d[0] for d in result.description]
        return columns, result.fetchall()


def compose(events: str, sql: str) -> str:
    """``sql`` (a kind's query over ``events``) with ``events`` defined as a CTE."""
    body = sql.strip()
    # A kind with CTEs of its own continues the list that ``events`` opens.
    if body.startswith("WITH"):
        return f"WITH events AS ({events}), {body[4:]}"
    return f"WITH events AS ({events}) {body}"


@dataclass
class Source:
    """Where ``events`` come from for a connection: the filtered read of the store's files (or of
    the digest cache's rows), or, for a page of several queries, a table it was read into once."""

    con: Any
    events: str
    params: dict[str, Any]
    fs: Any = None  # to find a line DuckDB could not read

    @classmethod
    def read(cls, con: Any, filters: Filters, files: list[str], fs: Any = None) -> Source:
        events, params = events_sql(filters)
        # read_json needs at least one file: with none, the same query over an empty relation.
        params["files"] = files or ["/dev/null"]
        if not files:
            events += " LIMIT 0"
        return cls(con, events, params, fs)

    @classmethod
    def cached(cls, con: Any, filters: Filters, rows: str, fs: Any = None) -> Source:
        events, params = events_sql(filters, rows)
        return cls(con, events, params, fs)

    def materialize(self) -> Source:
        query(self.con, f"CREATE TEMP TABLE report_events AS {self.events}", self.params, self.fs)
        return Source(self.con, "SELECT * FROM report_events", {}, self.fs)

    def table(self, name: str, sql: str, **params: Any) -> Table:
        wanted = {k: v for k, v in params.items() if f"${k}" in sql}
        columns, rows = query(self.con, compose(self.events, sql), {**self.params, **wanted}, self.fs)
        return Table(name, columns, rows)


def report(
    store: Store,
    kind_name: str,
    filters: Filters,
    inactive_since: datetime | None = None,
    *,
    with_charts: bool = False,
) -> tuple[Table, list[tuple[str, str]], Selection]:
    """The kind's table; with ``with_charts``, the HTML page's charts too (from all topics the
    filters allow, read once)."""
    kind = KINDS[kind_name]
    found, paths, selection = store.files(filters, None if with_charts else kind.topics)
    con, digests = open_digests(store, selection)
    try:
        if digests is None:
            source = Source.read(con, filters, paths, store.fs)
            selection.files_parsed = len(paths)
        else:
            with duckdb_errors(store.fs):
                selection.files_parsed = digests.update(found, paths)
            source = Source.cached(con, filters, digests.ROWS, store.fs)
        if not with_charts:
            return source.table(kind.name, kind.sql, inactive_since=inactive_since), [], selection
        from .html import charts

        source = source.materialize()
        table = source.table(kind.name, kind.sql, inactive_since=inactive_since)
        return table, charts(lambda sql: source.table("chart", sql)), selection
    finally:
        con.close()
