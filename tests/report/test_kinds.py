"""Every report kind on a generated store, against the same questions answered in plain Python
over the stored lines, and against facts read straight from samples/*/audit (exact last times)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from .conftest import SAMPLES, event_time, iso, read_lines


def report_json(run_report: Any, store: Path, kind: str, *args: str) -> list[dict[str, Any]]:
    result = run_report(str(store), kind, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = orjson.loads(result.stdout)
    return rows


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q) - 1)]


def test_last_activity_matches_the_sample_logs(run_report: Any, sample_store: Path) -> None:
    # Straight from the checked-in sample files: each user's last event and its node.
    last: dict[str, tuple[str, str, str, str]] = {}
    for path in sorted(SAMPLES.glob("*/audit/*.log")):
        node = path.parts[-3]
        for raw in path.read_bytes().splitlines():
            line = orjson.loads(raw)
            user = line["message"].get("authUser")
            if user is None:
                continue
            t = iso(
                event_time({"clientEvent": line["message"], "envelope": {"timestamp": line["timestamp"]}})
            )
            topic = line["logger"].removeprefix("dku.audit.")
            if user not in last or t > last[user][0]:
                last[user] = (t, line["message"]["msgType"], topic, node)
    rows = report_json(run_report, sample_store, "last-activity", "--until", "2020-02-20")
    got = {r["user"]: (r["last_time"], r["msg_type"], r["topic"], r["node"]) for r in rows}
    extra_users = {"log4j2.user", "bare.user", "no.time", "evil\u001b[2J\nuser"}
    assert {u: v for u, v in got.items() if u not in extra_users} == last
    assert got["log4j2.user"][0] == "2020-02-18T10:00:05.250Z"  # envelope.instant
    assert got["bare.user"][0] == "2020-02-18T10:30:00.500Z"  # the event's own timestamp, +01:00
    assert got["no.time"] == ("2020-02-18T10:45:00.123Z", "project-open", "generic", "10.9.0.3")
    assert got["evil\u001b[2J\nuser"][0] == "2020-02-18T10:50:00.000Z"  # envelope.timeMillis
    # Newest first.
    assert [r["last_time"] for r in rows] == sorted((r["last_time"] for r in rows), reverse=True)


def test_last_activity_inactive_since_lists_only_quiet_users(run_report: Any, sample_store: Path) -> None:
    lines = read_lines(sample_store)
    last: dict[str, Any] = {}
    for line in lines:
        user = line["clientEvent"].get("authUser")
        if isinstance(user, str):
            last[user] = max(last.get(user, event_time(line)), event_time(line))
    cutoff = "2020-02-19T12:00:00+00:00"
    rows = report_json(run_report, sample_store, "last-activity", "--inactive-since", cutoff)
    expected = sorted(u for u, t in last.items() if iso(t) < "2020-02-19T12:00:00.000Z")
    assert expected and sorted(r["user"] for r in rows) == expected


def test_logins_per_user_per_day(run_report: Any, sample_store: Path) -> None:
    expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for line in read_lines(sample_store):
        event, topic = line["clientEvent"], line["topic"]
        key = (event_time(line).date().isoformat(), event.get("authUser") or "(no user)")
        if topic == "generic" and event.get("msgType") == "login":
            expected[key][0] += 1
        elif topic == "authfail":
            expected[key][1 if str(event.get("msgType", "")).startswith("login") else 2] += 1
    rows = report_json(run_report, sample_store, "logins")
    got = {(r["day"], r["user"]): [r["successes"], r["failures"], r["denied"]] for r in rows}
    assert got == dict(expected)
    assert sum(v[1] for v in got.values()) > 0 and sum(v[0] for v in got.values()) > 0
    assert [(r["day"], r["user"]) for r in rows] == sorted(got)


def test_api_usage_calls_errors_and_percentiles(run_report: Any, sample_store: Path) -> None:
    calls: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    errors: Counter[tuple[str, str, str]] = Counter()
    for line in read_lines(sample_store):
        if line["topic"] != "apinode-query":
            continue
        event = line["clientEvent"]
        key = (line["node"], event["serviceId"], event["endpointId"])
        calls[key].append(float(event["responseTimeMs"]))
        errors[key] += "error" in event
    rows = report_json(run_report, sample_store, "api-usage")
    assert len(rows) == len(calls) >= 8
    for row in rows:
        key = (row["node"], row["service"], row["endpoint"])
        assert row["calls"] == len(calls[key]), key
        assert row["errors"] == errors[key], key
        for q, column in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
            assert row[column] == nearest_rank(calls[key], q), (key, column)
    assert sum(errors.values()) > 0, "the samples carry some failed API queries"


def test_compute_per_project_and_user(run_report: Any, sample_store: Path) -> None:
    usages: dict[str, dict[str, Any]] = {}
    for line in sorted(
        (ln for ln in read_lines(sample_store) if ln["topic"] == "compute-resource-usage"), key=event_time
    ):
        usage = line["clientEvent"].get("usage")
        if not usage:
            continue  # kubernetes-cluster-usage-status
        u = usages.setdefault(usage["id"], {"cpu": 0, "mem": 0, "done": False})
        u["project"] = usage["context"]["projectKey"]
        u["user"] = line["clientEvent"]["authUser"]
        u["cpu"] = max(u["cpu"], usage["cpuTotalMs"])
        u["mem"] = max(u["mem"], usage["peakMemoryBytes"])
        u["done"] |= line["clientEvent"]["msgType"] == "compute-resource-usage-complete"
    expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0])
    for u in usages.values():
        e = expected[(u["project"], u["user"])]
        e[0] += 1
        e[1] += u["done"]
        e[2] += u["cpu"]
        e[3] = max(e[3], u["mem"])
    rows = report_json(run_report, sample_store, "compute")
    got = {(r["project"], r["user"]): r for r in rows}
    assert set(got) == set(expected)
    for key, (n, done, cpu_ms, mem) in expected.items():
        row = got[key]
        assert (row["usages"], row["completed"], row["peak_memory_bytes"]) == (n, done, mem), key
        assert row["cpu_hours"] == pytest.approx(cpu_ms / 3_600_000, abs=0.0005), key
    assert [r["cpu_hours"] for r in rows] == sorted((r["cpu_hours"] for r in rows), reverse=True)


def test_failures_by_msg_type(run_report: Any, sample_store: Path) -> None:
    per_type: dict[str, list[Any]] = {}
    for line in read_lines(sample_store):
        if line["topic"] != "generic-failure":
            continue
        event, t = line["clientEvent"], event_time(line)
        entry = per_type.setdefault(event["msgType"], [0, set(), t, None])
        entry[0] += 1
        entry[1].add(event["authUser"])
        if t >= entry[2]:
            entry[2], entry[3] = t, event["error"]["message"]
    rows = report_json(run_report, sample_store, "failures")
    got = {r["msg_type"]: (r["failures"], r["users"], r["last_time"], r["last_error"]) for r in rows}
    assert got == {k: (n, len(users), iso(t), error) for k, (n, users, t, error) in per_type.items()}


def test_volume_counts_every_event_and_flags_quiet_hours(run_report: Any, sample_store: Path) -> None:
    lines = read_lines(sample_store)
    per_hour: Counter[tuple[str, str, str]] = Counter()
    for line in lines:
        hour = event_time(line).replace(minute=0, second=0, microsecond=0)
        per_hour[(iso(hour), line.get("node") or line["origAddress"], line["topic"])] += 1
    rows = report_json(run_report, sample_store, "volume")
    counted = {(r["hour"], r["node"], r["topic"]): r["events"] for r in rows if not r["gap"]}
    assert counted == dict(per_hour)
    assert sum(counted.values()) == len(lines) == 2859 + 4  # the samples' count, and the extra lines

    # Gaps: a node's hours from its first to the store's last hour, where it sent nothing.
    last_hour = max(h for h, _, _ in per_hour)
    expected_gaps = set()
    for node in {n for _, n, _ in per_hour}:
        seen = {h for h, n, _ in per_hour if n == node}
        hour = min(seen)
        while hour <= last_hour:
            if hour not in seen:
                expected_gaps.add((hour, node))
            hour = iso(event_time({"clientEvent": {}, "serverTimestamp": hour}) + timedelta(hours=1))
    gaps = {(r["hour"], r["node"]) for r in rows if r["gap"]}
    assert gaps == expected_gaps
    # design-node-1 is quiet on some night hours, and the one-off nodes of the extra lines after theirs.
    assert any(n == "design-node-1" for _, n in gaps) and any(n == "jvm-node" for _, n in gaps)


def test_filters_narrow_every_kind(run_report: Any, sample_store: Path) -> None:
    rows = report_json(
        run_report,
        sample_store,
        "volume",
        "--since",
        "2020-02-18T06:00",
        "--until",
        "2020-02-18T09:00",
        "--node",
        "api-node-2",
        "--topic",
        "apinode-query",
        "--routing-key",
        "pricing",
    )
    expected = Counter(
        iso(event_time(ln).replace(minute=0, second=0, microsecond=0))
        for ln in read_lines(sample_store)
        if ln.get("node") == "api-node-2"
        and ln.get("routingKey") == "pricing"
        and "2020-02-18T06" <= iso(event_time(ln)) < "2020-02-18T09"
    )
    assert {r["hour"]: r["events"] for r in rows} == dict(expected) and len(expected) >= 2
    users = report_json(run_report, sample_store, "last-activity", "--user", "bob.chen", "--user", "admin")
    assert sorted(r["user"] for r in users) == ["admin", "bob.chen"]


def test_text_table_and_csv(run_report: Any, sample_store: Path) -> None:
    result = run_report(str(sample_store), "failures")
    assert result.exit_code == 0
    header, rule, *body = result.stdout.splitlines()
    assert header.split() == ["msg_type", "failures", "users", "last_time", "last_error"]
    assert set(rule.replace(" ", "")) == {"-"} and len(body) == 4
    assert "rows from" in result.stderr and "files" in result.stderr
    # A hostile user name cannot reach the terminal as control characters.
    text = run_report(str(sample_store), "last-activity").stdout
    assert "\x1b" not in text and "evil\\x1b[2J\\nuser" in text
    csv = run_report(str(sample_store), "logins", "--format", "csv", "--user", "bob.chen").stdout
    assert csv.splitlines()[0] == "day,user,successes,failures,denied"
    assert all(line.split(",")[1] == "bob.chen" for line in csv.splitlines()[1:])
