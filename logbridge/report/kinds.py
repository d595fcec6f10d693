"""The questions ``logbridge report`` answers: one SQL query each over the flat ``events`` rows.

Each kind names the topics it reads, so that the store walk (`layout`) lists only those topic
folders: ``api-usage`` never opens a ``generic`` file. Days and hours are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    name: str
    help: str
    topics: tuple[str, ...] | None  # the topics it needs; None: all
    sql: str  # over ``events``; may use $inactive_since


LAST_ACTIVITY = Kind(
    "last-activity",
    "each user's last event: when, its type, topic and node (--inactive-since: only users quiet since then)",
    None,
    """
    SELECT user, max(t) AS last_time, arg_max(msg_type, t) AS msg_type, arg_max(topic, t) AS topic,
           arg_max(node, t) AS node, count(*) AS events
    FROM events WHERE user IS NOT NULL
    GROUP BY user
    HAVING $inactive_since IS NULL OR max(t) < $inactive_since
    ORDER BY last_time DESC, user
    """,
)

LOGINS = Kind(
    "logins",
    "logins per user per day: successes (generic 'login'), failures (authfail 'login…'), other denials",
    ("generic", "authfail"),
    """
    SELECT CAST(t AS DATE) AS day, coalesce(user, '(no user)') AS user,
           count(*) FILTER (WHERE topic = 'generic') AS successes,
           count(*) FILTER (WHERE topic = 'authfail' AND msg_type LIKE 'login%') AS failures,
           count(*) FILTER (WHERE topic = 'authfail' AND coalesce(msg_type, '') NOT LIKE 'login%')
               AS denied
    FROM events
    WHERE (topic = 'generic' AND msg_type = 'login') OR topic = 'authfail'
    GROUP BY ALL
    ORDER BY day, user
    """,
)

API_USAGE = Kind(
    "api-usage",
    "API node queries per node, service and endpoint: calls, errors, p50/p95/p99 of the call time (ms)",
    ("apinode-query",),
    """
    SELECT node, coalesce(service, '(none)') AS service, coalesce(endpoint, '(none)') AS endpoint,
           count(*) AS calls, count(*) FILTER (WHERE failed) AS errors,
           quantile_disc(call_ms, 0.5) AS p50_ms, quantile_disc(call_ms, 0.95) AS p95_ms,
           quantile_disc(call_ms, 0.99) AS p99_ms
    FROM events WHERE topic = 'apinode-query'
    GROUP BY ALL
    ORDER BY node, service, endpoint
    """,
)

COMPUTE = Kind(
    "compute",
    "compute usage per project and user: usages, completed, CPU hours, peak memory",
    ("compute-resource-usage",),
    """
    WITH usages AS (
        SELECT usage_id, arg_max(project, t) AS project, arg_max(user, t) AS user,
               max(cpu_ms) AS cpu_ms, max(peak_memory_bytes) AS peak_memory_bytes,
               bool_or(msg_type = 'compute-resource-usage-complete') AS completed
        FROM events
        WHERE topic = 'compute-resource-usage' AND usage_id IS NOT NULL
        GROUP BY usage_id
    )
    SELECT coalesce(project, '(none)') AS project, coalesce(user, '(no user)') AS user,
           count(*) AS usages, count(*) FILTER (WHERE completed) AS completed,
           round(coalesce(sum(cpu_ms), 0) / 3600000, 3) AS cpu_hours,
           CAST(max(peak_memory_bytes) AS BIGINT) AS peak_memory_bytes
    FROM usages
    GROUP BY ALL
    ORDER BY cpu_hours DESC, project, user
    """,
)

FAILURES = Kind(
    "failures",
    "generic-failure events per msgType: count, users, the last one and its error",
    ("generic-failure",),
    """
    SELECT coalesce(msg_type, '(none)') AS msg_type, count(*) AS failures,
           count(DISTINCT user) AS users, max(t) AS last_time,
           arg_max(error_message, t) AS last_error
    FROM events WHERE topic = 'generic-failure'
    GROUP BY ALL
    ORDER BY failures DESC, msg_type
    """,
)

# A node's hours run from its first hour to the store's last one: an hour without any of its
# events is a gap (``gap`` true, no topic), so a node that went quiet shows even at the end.
VOLUME = Kind(
    "volume",
    "events per hour, node and topic; an hour in which a node sent nothing is flagged as a gap",
    None,
    """
    WITH per_hour AS (
        SELECT date_trunc('hour', t) AS hour, coalesce(node, '(unknown)') AS node, topic,
               count(*) AS events
        FROM events GROUP BY ALL
    ),
    spans AS (
        SELECT node, min(hour) AS first_hour, (SELECT max(hour) FROM per_hour) AS last_hour
        FROM per_hour GROUP BY node
    ),
    node_hours AS (
        SELECT node, unnest(generate_series(first_hour, last_hour, INTERVAL 1 HOUR)) AS hour FROM spans
    ),
    gaps AS (
        SELECT hour, node FROM node_hours
        ANTI JOIN (SELECT DISTINCT hour, node FROM per_hour) USING (hour, node)
    )
    SELECT hour, node, topic, events, false AS gap FROM per_hour
    UNION ALL
    SELECT hour, node, NULL, 0, true FROM gaps
    ORDER BY hour, node, gap DESC, topic
    """,
)

KINDS: dict[str, Kind] = {k.name: k for k in (LAST_ACTIVITY, LOGINS, API_USAGE, COMPUTE, FAILURES, VOLUME)}
