"""``logbridge report STORE_URL KIND``: the click face of `logbridge.report.run`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..cliopts import storage_options
from ..errors import ConfigError, LogbridgeError
from ..sinks.fs import require_module
from .events import Filters
from .kinds import KINDS
from .layout import DEFAULT_TEMPLATE, parse_template

FORMATS = ("table", "csv", "json", "html")


class Moment(click.ParamType):
    """A day (``2020-02-19``: its midnight UTC) or an ISO-8601 time (UTC unless it has an offset)."""

    name = "DATE|TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"{value!r} is not a date or time: use 2020-02-19, 2020-02-19T08:00 or 2020-02-19T08:00:00+01:00",
                param,
                ctx,
            )
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _emit(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


def _describe(kind: str, filters: Filters) -> str:
    parts = [kind]
    if filters.since:
        parts.append(f"since {filters.since:%Y-%m-%d %H:%M} UTC")
    if filters.until:
        parts.append(f"until {filters.until:%Y-%m-%d %H:%M} UTC")
    for label, values in (
        ("topic", filters.topics),
        ("routing key", filters.routing_keys),
        ("user", filters.users),
        ("node", filters.nodes),
    ):
        if values:
            parts.append(f"{label} {', '.join(values)}")
    return ", ".join(parts)


@click.command("report")
@click.argument("store_url")
@click.argument("kind", type=click.Choice(sorted(KINDS)))
@click.option("--since", type=Moment(), help="Only events at or after this day or time (UTC unless given).")
@click.option("--until", type=Moment(), help="Only events before this day or time (exclusive).")
@click.option("--topic", "topics", multiple=True, help="Only this topic (repeat for several).")
@click.option("--routing-key", "routing_keys", multiple=True, help="Only this routing key (repeatable).")
@click.option("--user", "users", multiple=True, help="Only this authUser (repeatable).")
@click.option("--node", "nodes", multiple=True, help="Only this sending node (repeatable).")
@click.option(
    "--inactive-since",
    type=Moment(),
    help="last-activity: only users whose last event is before this day or time.",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option(
    "--layout",
    default=DEFAULT_TEMPLATE,
    show_default=True,
    help="The destination's path template (its 'path' key), read to skip partitions outside the question.",
)
@click.option("--timezone", default="UTC", show_default=True, help="The destination's partition time zone.")
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False),
    help="Where to keep the flat rows of files already read (default: $XDG_CACHE_HOME/logbridge/report).",
)
@click.option("--no-cache", is_flag=True, help="Read every file's JSON; keep nothing.")
@click.option(
    "-o",
    "--storage-option",
    "storage_option_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec storage option of the store (repeatable; a.b=… nests), as a destination's storage_options.",
)
def report(
    store_url: str,
    kind: str,
    since: datetime | None,
    until: datetime | None,
    topics: tuple[str, ...],
    routing_keys: tuple[str, ...],
    users: tuple[str, ...],
    nodes: tuple[str, ...],
    inactive_since: datetime | None,
    fmt: str,
    output: str | None,
    layout: str,
    timezone: str,
    cache_dir: str | None,
    no_cache: bool,
    storage_option_pairs: tuple[str, ...],
) -> None:
    """Answer a question over the store at STORE_URL (file://, s3://, az://, gs://, or a path).

    \b
    KIND is one of:
      last-activity  each user's last event (when, type, topic, node)
      logins         logins and login failures per user per day
      api-usage      API node calls, errors and p50/p95/p99 call time per service/endpoint
      compute        compute usage per project and user (CPU hours, peak memory)
      failures       generic-failure events per msgType, with the last error
      volume         events per hour, node and topic; hours a node sent nothing are gaps

    Times are UTC; days and hours are UTC days and hours. Published files never change, so
    the rows of each file read are kept in a local cache (--cache, --no-cache): a second
    question reads only files published since.
    """
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("must be later than --since", param_hint="--until")
    if inactive_since is not None and kind != "last-activity":
        raise click.BadParameter("only applies to last-activity", param_hint="--inactive-since")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone)
    except Exception:
        raise click.BadParameter(f"unknown time zone {timezone!r}", param_hint="--timezone") from None
    try:
        parse_template(layout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--layout") from None
    options = storage_options(storage_option_pairs)
    require_module("duckdb", "report", "logbridge report")
    from .digest import default_cache_dir
    from .run import Store
    from .run import report as run_report

    filters = Filters(
        since=since,
        until=until,
        topics=list(topics) or None,
        routing_keys=list(routing_keys) or None,
        users=list(users) or None,
        nodes=list(nodes) or None,
    )
    started = time.monotonic()
    try:
        cache = None if no_cache else Path(cache_dir) if cache_dir else default_cache_dir()
        store = Store(store_url, options, layout, timezone, cache_dir=cache)
        if not store.exists():
            raise click.BadParameter(f"{store_url!r}: nothing there (no such folder or bucket prefix)")
        table, chart_svgs, selection = run_report(
            store, kind, filters, inactive_since, with_charts=fmt == "html"
        )
    except ConfigError:
        raise  # a STORE_URL or storage option fsspec cannot use: one line, exit code 2 (cli.main)
    except LogbridgeError as exc:  # a line DuckDB cannot read, a store that refuses: exit code 1
        raise click.ClickException(str(exc)) from None
    from . import render

    if fmt == "table":
        text = render.as_text(table)
    elif fmt == "csv":
        text = render.as_csv(table)
    elif fmt == "json":
        text = render.as_json(table)
    else:
        from .html import page

        text = page(store_url, table, chart_svgs, _describe(kind, filters))
    _emit(text, output)
    if selection.skipped_count:
        shown = ", ".join(selection.skipped[:3]) + (", …" if selection.skipped_count > 3 else "")
        click.echo(
            f"logbridge report: {selection.skipped_count} paths fit neither the layout ({layout}) nor a data "
            f"file name and were not read: {shown} (give --layout the destination's path template)",
            err=True,
        )
    for note in selection.notes:
        click.echo(f"logbridge report: {note}", err=True)
    cached = selection.files_read - selection.files_parsed
    click.echo(
        f"{len(table.rows)} rows from {selection.files_read} files"
        + (f" ({cached} from the cache)" if cached else "")
        + f", {selection.folders_listed} folders listed, in {time.monotonic() - started:.2f}s",
        err=True,
    )
