"""``--format html``: one self-contained page, the asked report's table under three charts.

The charts (events per hour per topic, logins and failures per day, API call time percentiles)
come from the same filtered events as the table: the events are read from the store once into
a DuckDB table, and every query runs on that. The page has no script and loads nothing: it
opens offline, from a mail attachment or a ticket.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from html import escape
from typing import Any

from .kinds import API_USAGE, LOGINS, VOLUME
from .render import cell
from .run import Table
from .svg import bar_chart, line_chart

FAILURES_PER_DAY = """
SELECT CAST(t AS DATE) AS day, count(*) AS failures FROM events
WHERE topic = 'generic-failure' GROUP BY ALL ORDER BY day
"""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
.meta{color:#666}.chart{width:100%;max-width:900px;height:auto;font-size:11px}
.chart .grid{stroke:#e4e4e4}.chart text{fill:#444}
table{border-collapse:collapse;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.empty{color:#888}
"""


def charts(run: Any) -> list[tuple[str, str]]:
    """The three charts; ``run(sql)`` answers a query over the materialized ``events``."""
    volume = run(VOLUME.sql)
    per_hour: dict[str, dict[str, float]] = defaultdict(dict)
    hours: set[str] = set()
    for row in volume.rows:
        hour, _node, topic, events, gap = row
        if gap:
            continue
        label = cell(hour)
        hours.add(label)
        per_hour[topic][label] = per_hour[topic].get(label, 0) + events
    hour_labels = sorted(hours)
    events_chart = line_chart(
        "Events per hour per topic",
        [h[5:13].replace("T", " ") + "h" for h in hour_labels],  # 02-18 09h: the table has the year
        {topic: [per_hour[topic].get(h, 0) for h in hour_labels] for topic in sorted(per_hour)},
    )

    logins = run(LOGINS.sql)
    failures = run(FAILURES_PER_DAY)
    days: dict[str, dict[str, float]] = defaultdict(lambda: {"logins": 0, "login failures": 0, "failures": 0})
    for day, _user, successes, failed, _denied in logins.rows:
        days[cell(day)]["logins"] += successes
        days[cell(day)]["login failures"] += failed
    for day, n in failures.rows:
        days[cell(day)]["failures"] += n
    day_labels = sorted(days)
    day_chart = bar_chart(
        "Logins and failures per day",
        day_labels,
        {name: [days[d][name] for d in day_labels] for name in ("logins", "login failures", "failures")},
    )

    api = run(API_USAGE.sql)
    labels = [f"{node} {service}/{endpoint}" for node, service, endpoint, *_ in api.rows]
    latency_chart = bar_chart(
        "API call time percentiles (ms)",
        labels,
        {
            "p50": [row[5] or 0 for row in api.rows],
            "p95": [row[6] or 0 for row in api.rows],
            "p99": [row[7] or 0 for row in api.rows],
        },
    )
    return [
        ("Events per hour per topic", events_chart),
        ("Logins and failures per day", day_chart),
        ("API call time percentiles (ms)", latency_chart),
    ]


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = "".join(
            f'<td class="n">{escape(cell(v))}</td>'
            if isinstance(v, int | float) and not isinstance(v, bool)
            else f"<td>{escape(cell(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    if not table.rows:
        body.append(f'<tr><td colspan="{len(table.columns)}" class="empty">no events matched</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(store_url: str, table: Table, chart_svgs: list[tuple[str, str]], description: str) -> str:
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>logbridge report: {escape(table.kind)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>logbridge report: {escape(table.kind)}</h1>"
        f'<p class="meta">{escape(store_url)} · {escape(description)} · made {made}</p>'
        + "".join(f"<section><h2>{escape(title)}</h2>{svg}</section>" for title, svg in chart_svgs)
        + f"<h2>{escape(table.kind)}</h2>"
        + _table_html(table)
        + "</body></html>\n"
    )
