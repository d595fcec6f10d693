"""A report table as text: an aligned table for a terminal, CSV, or JSON.

Values come from the store, written by any sender: in the text table, control characters are
shown escaped and long cells are cut, so a hostile user name cannot move the cursor or wrap a
terminal; CSV and JSON carry the values whole (their quoting keeps them in their cell).
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import orjson

from .run import Table

_MAX_CELL = 80


def cell(value: Any) -> str:
    """A value as report text: times ISO-8601 UTC with milliseconds, numbers without noise."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3f}".rstrip("0")
    return str(value)


def _printable(text: str) -> str:
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def as_text(table: Table) -> str:
    rows = [[_printable(cell(v)) for v in row] for row in table.rows]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(table.columns)]
    numeric = [
        all(
            isinstance(row[i], int | float) and not isinstance(row[i], bool)
            for row in table.rows
            if row[i] is not None
        )
        for i in range(len(table.columns))
    ]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(table.columns), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    if not table.rows:
        out.append("(no events matched)")
    return "\n".join(out) + "\n"


def as_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([cell(v) for v in row] for row in table.rows)
    return buffer.getvalue()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return cell(value)
    return value


def records(table: Table) -> list[dict[str, Any]]:
    return [{c: _json_value(v) for c, v in zip(table.columns, row, strict=True)} for row in table.rows]


def as_json(table: Table) -> str:
    return orjson.dumps(records(table), option=orjson.OPT_INDENT_2).decode() + "\n"
