"""A local cache of the store's lines, already flattened: the second question is fast.

Reading NDJSON is most of a report's time (a full scan of 10M stored lines is several GB of
JSON). Published files never change (each has a manifest and a hash chain), so the flat rows of
each file (`events.FLAT_SELECT`) are kept in a DuckDB database on the reporting machine, keyed
by the file's path, size and version stamp (mtime or ETag). A report then reads JSON only for
files it has not seen; the rest comes from DuckDB's columnar tables.

- A file replaced in the store (other size or stamp) is read again and its old rows dropped.
- A file no longer in the store, or outside the question, is not used: the rows used are those
  of exactly the files the store walk found, joined by file id.
- The rows and their file entries are written in one transaction: a report killed midway
  leaves the cache as it was.
- The cache is named after the version of the flattening SQL: a logbridge whose columns differ
  starts a new cache file rather than reading rows it would misread.
- Only one process can write a DuckDB file: a report that finds the cache busy reads the
  store directly (and says so) rather than wait.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .events import COLUMNS, FLAT_SELECT, READ_JSON
from .layout import DataFile

VERSION = hashlib.sha256(FLAT_SELECT.encode()).hexdigest()[:12]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "logbridge" / "report"


def cache_file(cache_dir: Path, store_url: str) -> Path:
    """One database per store URL and flattening version."""
    key = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return cache_dir / f"{key}-{VERSION}.duckdb"


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (id BIGINT, path VARCHAR, size BIGINT, stamp VARCHAR);
CREATE SEQUENCE IF NOT EXISTS file_ids;
CREATE TABLE IF NOT EXISTS flat AS SELECT CAST(NULL AS BIGINT) AS file_id, {FLAT_SELECT}
    FROM {READ_JSON.format(extra="")} LIMIT 0;
"""


class Digests:
    """The cache in one DuckDB connection (opened on the cache file)."""

    def __init__(self, con: Any):
        self.con = con
        con.execute("SET TimeZone = 'UTC'")
        # The CREATE … AS over read_json needs a file to plan against; it reads none of it.
        con.execute(_SCHEMA, {"files": ["/dev/null"], "columns": COLUMNS})

    def update(self, files: list[DataFile], paths: list[str]) -> int:
        """Make the cache hold the rows of every file in ``files`` (``paths``: the same files as
        DuckDB opens them); the number of files read now. The listing stays in ``listing``."""
        con = self.con
        con.execute("DROP TABLE IF EXISTS listing")
        con.execute(
            "CREATE TEMP TABLE listing AS SELECT unnest($paths) AS path, unnest($sizes) AS size, "
            "unnest($stamps) AS stamp, unnest($open) AS open_path",
            {
                "paths": [f.path for f in files],
                "sizes": [f.size for f in files],
                "stamps": [f.stamp for f in files],
                "open": paths,
            },
        )
        missing = [
            row[0]
            for row in con.execute(
                "SELECT l.open_path FROM listing l LEFT JOIN files f "
                "ON f.path = l.path AND f.size = l.size AND f.stamp = l.stamp WHERE f.id IS NULL"
            ).fetchall()
        ]
        if not missing:
            return 0
        con.execute("BEGIN")
        try:
            # Replaced files: their old rows go (same path, another size or stamp).
            con.execute(
                "DELETE FROM flat WHERE file_id IN (SELECT f.id FROM files f JOIN listing l USING (path) "
                "WHERE f.size <> l.size OR f.stamp <> l.stamp)"
            )
            con.execute(
                "DELETE FROM files WHERE id IN (SELECT f.id FROM files f JOIN listing l USING (path) "
                "WHERE f.size <> l.size OR f.stamp <> l.stamp)"
            )
            con.execute(
                "INSERT INTO files SELECT nextval('file_ids'), l.path, l.size, l.stamp FROM listing l "
                "WHERE l.open_path IN (SELECT unnest($missing))",
                {"missing": missing},
            )
            con.execute(
                f"INSERT INTO flat SELECT f.id, r.* EXCLUDE (filename) FROM "
                f"(SELECT filename, {FLAT_SELECT} FROM {READ_JSON.format(extra=', filename = true')}) r "
                "JOIN listing l ON l.open_path = r.filename JOIN files f ON f.path = l.path",
                {"files": missing, "columns": COLUMNS},
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(missing)

    ROWS = (
        "SELECT * EXCLUDE (file_id) FROM flat WHERE file_id IN "
        "(SELECT f.id FROM files f JOIN listing l ON f.path = l.path AND f.size = l.size AND f.stamp = l.stamp)"
    )
