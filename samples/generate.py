#!/usr/bin/env python3
"""Write the checked-in sample audit trail: what a few Dataiku DSS nodes leave in ``run/audit/``.

Deterministic for a given ``--seed``: running it again rewrites the same bytes, so the files under
``samples/`` can be regenerated and diffed. Standard library only (it runs before logbridge is
installed).

Each line is a log4j 1.x file envelope exactly as DESIGN.md §2.1 shows it::

    {"severity":"INFO","logger":"dku.audit.generic","message":{...},"mdc":{"apiCall":...,"user":...},
     "callTime":9,"timestamp":"2020-02-19T16:05:02.441+0100"}

Nodes and files (one file per topic, as the per-topic appenders of ``dku-log4j.properties`` write):

- ``design-node-1`` and ``automation-node-1``: ``audit.log`` (generic), ``generic-failure.log``,
  ``authfail.log``, ``compute-resource-usage.log``, ``apicalls.log``
- ``api-node-1`` and ``api-node-2``: ``apinode-query.log`` (routing key = the API service),
  ``apicalls.log``

Also ``bare-events.ndjson``: bare events, one log4j 2 JsonLayout line and one Event Server
envelope line, for the README's ``curl`` example.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

Event = dict[str, Any]

# DSS nodes in Europe/Paris write local time with a numeric offset; February is +01:00.
TZ = timezone(timedelta(hours=1))
START = datetime(2020, 2, 17, 0, 0, tzinfo=TZ)
DAYS = 3

USERS = ["admin", "alice.martin", "bob.chen", "carla.rossi", "dmitri.ivanov", "emma.schulz"]
# Automation nodes mostly act through API keys and scheduled scenarios.
AUTOMATION_USERS = ["svc-automation", "admin", "alice.martin"]
PROJECTS = ["CHURN_PREDICTION", "FRAUD_DETECTION", "SALES_FORECAST", "CUSTOMER_360", "SUPPLY_CHAIN"]
DATASETS = ["customers", "transactions", "web_logs", "orders_prepared", "scored_customers", "stores"]
SCENARIOS = ["daily_refresh", "retrain_model", "weekly_report", "data_quality_checks"]
CONNECTIONS = ["filesystem_managed", "postgres-dwh", "snowflake-prod", "s3-datalake"]
TEAMS = ["data-science", "analytics", "mlops"]
CLUSTERS = ["k8s-prod-eks", "k8s-dev-eks"]
API_SERVICES = {
    "churn-scoring": [("predict", "prediction-query")],
    "fraud-detection": [("score", "prediction-query"), ("explain", "prediction-query")],
    "customer-lookup": [("by-id", "dataset-lookup-query"), ("segment-sql", "sql-query")],
    "pricing": [("quote", "function-query")],
}
CLIENT_IPS = ["10.0.12.31", "10.0.12.47", "10.0.14.5", "192.168.1.20", "172.16.3.9"]

# Per node kind: which topic a generated event belongs to, and its weight.
DESIGN_MIX = [
    ("generic", 60),
    ("generic-failure", 4),
    ("authfail", 3),
    ("compute-resource-usage", 13),
    ("apicalls", 20),
]
AUTOMATION_MIX = [
    ("generic", 55),
    ("generic-failure", 6),
    ("authfail", 1),
    ("compute-resource-usage", 23),
    ("apicalls", 15),
]
API_MIX = [("apinode-query", 85), ("apicalls", 15)]

TOPIC_FILE = {
    "generic": "audit.log",
    "generic-failure": "generic-failure.log",
    "authfail": "authfail.log",
    "compute-resource-usage": "compute-resource-usage.log",
    "apicalls": "apicalls.log",
    "apinode-query": "apinode-query.log",
}


def iso(t: datetime) -> str:
    """``2020-02-19T16:05:02.441+0100``: milliseconds and a numeric offset, as log4j writes."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}" + t.strftime("%z")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class NodeWriter:
    """Generates one node's events; keeps the state that makes them coherent (sessions, jobs)."""

    def __init__(self, name: str, kind: str, rng: random.Random) -> None:
        self.name = name
        self.kind = kind
        self.rng = rng
        self.logged_in: set[str] = set()
        self.job_seq = 0
        self.running: list[Event] = []  # compute usages started and not yet complete

    # ----------------------------------------------------------------------------- one event

    def event(self, topic: str, t: datetime) -> tuple[Event, Event, str]:
        """(message, mdc, severity) of one event of ``topic`` at ``t``."""
        makers: dict[str, Callable[[datetime], tuple[Event, Event, str]]] = {
            "generic": self.generic,
            "generic-failure": self.generic_failure,
            "authfail": self.authfail,
            "compute-resource-usage": self.compute,
            "apicalls": self.apicall,
            "apinode-query": self.apinode_query,
        }
        return makers[topic](t)

    def user(self) -> str:
        users = AUTOMATION_USERS if self.kind == "automation" else USERS
        return self.rng.choice(users)

    def generic(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        user = self.user()
        project = rng.choice(PROJECTS)
        if user not in self.logged_in and self.kind == "design":
            self.logged_in.add(user)
            msg: Event = {
                "msgType": "login",
                "authUser": user,
                "authSource": rng.choice(["LOCAL", "LDAP", "SSO"]),
                "clientIP": rng.choice(CLIENT_IPS),
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/72.0",
            }
            return msg, {"apiCall": "/dip/api/login", "user": user}, "INFO"
        if self.kind == "design" and rng.random() < 0.04:
            self.logged_in.discard(user)
            return (
                {"msgType": "logout", "authUser": user},
                {"apiCall": "/dip/api/logout", "user": user},
                "INFO",
            )
        kind = rng.choices(
            [
                "dataset-read-data",
                "flow-job-start",
                "flow-job-done",
                "scenario-run",
                "project-export-download",
                "project-open",
                "recipe-save",
                "notebook-open",
                "dataset-write-data",
            ],
            weights=[30, 10, 10, 8, 3, 20, 8, 6, 5],
        )[0]
        msg = {"msgType": kind, "authUser": user, "projectKey": project}
        api = "/dip/api/projects/get-summary"
        if kind in ("dataset-read-data", "dataset-write-data"):
            msg["datasetName"] = rng.choice(DATASETS)
            msg["datasetType"] = rng.choice(["PostgreSQL", "Filesystem", "Snowflake", "S3"])
            api = (
                "/dip/api/datasets/get-preview" if kind == "dataset-read-data" else "/dip/api/datasets/write"
            )
        elif kind in ("flow-job-start", "flow-job-done"):
            self.job_seq += 1
            msg["jobId"] = f"Build_{rng.choice(DATASETS)}_{t:%Y-%m-%dT%H-%M-%S}.{self.job_seq:03d}"
            msg["triggeredFrom"] = rng.choice(["FLOW", "SCENARIO", "API"])
            if kind == "flow-job-done":
                msg["outcome"] = rng.choices(["SUCCESS", "FAILED", "ABORTED"], weights=[90, 7, 3])[0]
            api = "/dip/api/flow/jobs/start" if kind == "flow-job-start" else "/dip/api/flow/jobs/get-status"
        elif kind == "scenario-run":
            msg["scenarioId"] = rng.choice(SCENARIOS)
            msg["trigger"] = rng.choice(["manual", "time-based", "dataset-modified"])
            api = "/dip/api/scenarios/run"
        elif kind == "project-export-download":
            msg["exportId"] = f"{project}-{rng.randrange(16**8):08x}"
            msg["sizeBytes"] = rng.randrange(10**5, 10**9)
            api = "/dip/api/projects/export/download"
        elif kind == "recipe-save":
            msg["recipeName"] = f"compute_{rng.choice(DATASETS)}"
            msg["recipeType"] = rng.choice(["python", "sql_query", "prepare", "join", "grouping"])
            api = "/dip/api/flow/recipes/save"
        elif kind == "notebook-open":
            msg["notebookName"] = rng.choice(["EDA customers", "Model diagnostics", "Scratch"])
            api = "/dip/api/jupyter/get-notebook"
        return msg, {"apiCall": api, "user": user}, "INFO"

    def generic_failure(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        user = self.user()
        kind, reason = rng.choice(
            [
                ("dataset-read-data", "Connection refused: postgres-dwh:5432"),
                ("flow-job-start", "Job cannot start: dataset is being built by another job"),
                ("scenario-run", "Scenario step 'Build' failed: 1 activity failed"),
                ("project-export-download", "Export failed: not enough disk space on DATA_DIR"),
            ]
        )
        msg = {
            "msgType": kind,
            "authUser": user,
            "projectKey": rng.choice(PROJECTS),
            "success": False,
            "error": {"message": reason, "errorType": "com.dataiku.dip.exceptions.CodedException"},
        }
        return msg, {"apiCall": "/dip/api/flow/jobs/start", "user": user}, "WARN"

    def authfail(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        if rng.random() < 0.6:
            user = rng.choice([*USERS, "root", "guest"])
            msg = {
                "msgType": "login-failed",
                "authUser": user,
                "authSource": rng.choice(["LOCAL", "LDAP"]),
                "clientIP": rng.choice(CLIENT_IPS),
                "reason": "Invalid credentials",
            }
            return msg, {"apiCall": "/dip/api/login", "user": user}, "WARN"
        user = self.user()
        msg = {
            "msgType": "access-denied",
            "authUser": user,
            "projectKey": rng.choice(PROJECTS),
            "requiredPermission": rng.choice(["WRITE_CONF", "ADMIN", "EXPORT_DATASETS"]),
            "apiCall": "/dip/api/projects/export/download",
        }
        return msg, {"apiCall": "/dip/api/projects/export/download", "user": user}, "WARN"

    def apicall(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        if self.kind == "api":
            service = rng.choice(sorted(API_SERVICES))
            call = f"/admin/api/services/{service}/generations"
            user = "apinode-admin-key"
        else:
            call = rng.choice(
                [
                    "/public/api/projects/",
                    "/public/api/projects/{key}/datasets/",
                    "/public/api/projects/{key}/scenarios/{id}/run",
                    "/public/api/futures/{id}",
                ]
            )
            user = self.user()
        msg = {
            "msgType": "api-call",
            "authUser": user,
            "apiCall": call,
            "httpMethod": rng.choice(["GET", "GET", "POST"]),
            "httpStatus": rng.choices([200, 204, 403, 404, 500], weights=[85, 5, 4, 4, 2])[0],
            "clientIP": rng.choice(CLIENT_IPS),
            "authMethod": rng.choice(["API_KEY", "TICKET"]),
        }
        return msg, {"apiCall": call, "user": user}, "INFO"

    def compute(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        if self.kind == "design" and rng.random() < 0.15:
            cluster = rng.choice(CLUSTERS)
            nodes = rng.randrange(2, 9)
            msg = {
                "msgType": "kubernetes-cluster-usage-status",
                "clusterId": cluster,
                "clusterType": "EKS",
                "team": rng.choice(TEAMS),
                "status": {
                    "nodes": nodes,
                    "pods": rng.randrange(nodes, nodes * 12),
                    "cpuCapacity": nodes * 8,
                    "memoryCapacityBytes": nodes * 32 * 2**30,
                    "cpuRequested": round(rng.uniform(0.5, nodes * 7), 2),
                },
            }
            return msg, {"apiCall": "/dip/api/admin/clusters/monitor", "user": "dss-system"}, "INFO"
        usage: Event
        if self.running and rng.random() < 0.55:
            usage = self.running[0]
            usage["cpuTotalMs"] += rng.randrange(1_000, 600_000)
            usage["peakMemoryBytes"] = max(usage["peakMemoryBytes"], rng.randrange(2**27, 2**33))
            done = rng.random() < 0.45
            if done:
                self.running.pop(0)
            kind = "compute-resource-usage-complete" if done else "compute-resource-usage-update"
            msg = {
                "msgType": kind,
                "authUser": usage["authUser"],
                "usage": {k: v for k, v in usage.items() if k != "authUser"},
            }
            return msg, {"apiCall": "/dip/api/flow/jobs/get-status", "user": usage["authUser"]}, "INFO"
        user = self.user()
        project = rng.choice(PROJECTS)
        self.job_seq += 1
        kind = rng.choice(["LOCAL_PROCESS", "SQL_CONNECTION", "K8S_POD"])
        usage = {
            "id": f"{rng.randrange(16**12):012x}",
            "type": kind,
            "context": {
                "type": rng.choice(["JOB_ACTIVITY", "NOTEBOOK", "SCENARIO_STEP"]),
                "projectKey": project,
                "jobId": f"Build_{rng.choice(DATASETS)}.{self.job_seq:03d}",
            },
            "team": rng.choice(TEAMS),
            "cpuTotalMs": 0,
            "peakMemoryBytes": 0,
            "authUser": user,
        }
        if kind == "K8S_POD":
            usage["clusterId"] = rng.choice(CLUSTERS)
            usage["namespace"] = f"dss-{usage['team']}"
        elif kind == "SQL_CONNECTION":
            usage["connection"] = rng.choice(CONNECTIONS[1:])
        self.running.append(usage)
        msg = {
            "msgType": "compute-resource-usage-start",
            "authUser": user,
            "usage": {k: v for k, v in usage.items() if k != "authUser"},
        }
        return msg, {"apiCall": "/dip/api/flow/jobs/start", "user": user}, "INFO"

    def apinode_query(self, t: datetime) -> tuple[Event, Event, str]:
        rng = self.rng
        service = rng.choice(sorted(API_SERVICES))
        endpoint, kind = rng.choice(API_SERVICES[service])
        msg: Event = {
            "msgType": kind,
            "routingKey": service,
            "serviceId": service,
            "endpointId": endpoint,
            "deploymentId": f"{service}-on-{self.name}",
            "generation": f"v{rng.randrange(1, 6)}",
            "clientIP": rng.choice(CLIENT_IPS),
            "responseTimeMs": rng.randrange(2, 400),
        }
        if kind == "prediction-query":
            msg["query"] = {
                "features": {
                    "age": rng.randrange(18, 90),
                    "tenure_months": rng.randrange(0, 120),
                    "plan": rng.choice(["basic", "premium", "family"]),
                }
            }
            proba = round(rng.random(), 4)
            msg["response"] = {
                "prediction": "1" if proba > 0.5 else "0",
                "probas": {"0": round(1 - proba, 4), "1": proba},
            }
        elif kind == "sql-query":
            msg["query"] = {"parameters": {"segment": rng.choice(["gold", "silver", "bronze"])}}
            msg["response"] = {"rowCount": rng.randrange(0, 500)}
        elif kind == "dataset-lookup-query":
            msg["query"] = {"data": {"customer_id": f"C{rng.randrange(10**6):06d}"}}
            msg["response"] = {"found": rng.random() < 0.93}
        else:
            msg["query"] = {"params": {"sku": f"SKU-{rng.randrange(10**4):04d}", "qty": rng.randrange(1, 50)}}
            msg["response"] = {"price": round(rng.uniform(2, 900), 2), "currency": "EUR"}
        if msg["responseTimeMs"] % 97 == 0:
            # About 1% fail (drawn from the time already drawn, so the other events stay as they were).
            del msg["response"]
            msg["error"] = {
                "message": "Scoring failed: model server did not answer in time",
                "errorType": "com.dataiku.lambda.ScoringException",
                "httpStatus": 500,
            }
        if rng.random() < 0.97:
            msg["authUser"] = f"api-key:{service}-client"
        call = f"/public/api/v1/{service}/{endpoint}/{'predict' if kind == 'prediction-query' else 'run'}"
        return msg, {"apiCall": call, "user": msg.get("authUser", "anonymous")}, "INFO"


def hourly_volume(rng: random.Random, kind: str, hour: int, weekday: int) -> int:
    """Events in one hour: business hours busy, nights quiet, API nodes steadier."""
    if kind == "api":
        base = 14 if 7 <= hour <= 20 else 5
    elif kind == "automation":
        base = 18 if hour in (2, 3, 4) else 5  # nightly scenarios
    else:
        base = 26 if 8 <= hour <= 18 else 2
    if weekday >= 5:
        base //= 3
    return max(0, base + rng.randrange(-2, 3))


def node_events(
    name: str,
    kind: str,
    seed: int,
    start: datetime = START,
    days: int = DAYS,
    scale: float = 1.0,
) -> Iterator[tuple[str, datetime, Event]]:
    """(topic, time, log4j envelope) for every event of one node, in time order.

    ``scale`` multiplies the hourly volume (the store generator's knob); 1.0 draws exactly the
    random numbers the checked-in samples were made with."""
    rng = random.Random(f"{seed}/{name}")
    writer = NodeWriter(name, kind, rng)
    mix = {"design": DESIGN_MIX, "automation": AUTOMATION_MIX, "api": API_MIX}[kind]
    topics, weights = [t for t, _ in mix], [w for _, w in mix]
    for h in range(days * 24):
        hour_start = start + timedelta(hours=h)
        n = hourly_volume(rng, kind, hour_start.hour, hour_start.weekday())
        if scale != 1.0:
            exact = n * scale
            n = int(exact) + (rng.random() < exact - int(exact))
        offsets = sorted(rng.randrange(3_600_000) for _ in range(n))
        for ms in offsets:
            t = hour_start + timedelta(milliseconds=ms)
            topic = rng.choices(topics, weights=weights)[0]
            msg, mdc, severity = writer.event(topic, t)
            envelope = {
                "severity": severity,
                "logger": f"dku.audit.{topic}",
                "message": msg,
                "mdc": mdc,
                "callTime": rng.randrange(1, 250),
                "timestamp": iso(t),
            }
            yield topic, t, envelope


def node_lines(name: str, kind: str, seed: int) -> Iterator[tuple[str, str]]:
    """(file name, line) for every event of one node, in time order."""
    for topic, _, envelope in node_events(name, kind, seed):
        yield TOPIC_FILE[topic], dumps(envelope)


NODES = [
    ("design-node-1", "design"),
    ("automation-node-1", "automation"),
    ("api-node-1", "api"),
    ("api-node-2", "api"),
]


# The address each node's events arrive from (the stored line's origAddress).
NODE_ADDRESSES = {
    "design-node-1": "10.0.1.11",
    "automation-node-1": "10.0.1.21",
    "api-node-1": "10.0.2.31",
    "api-node-2": "10.0.2.32",
}


def stored_line(node: str, topic: str, t: datetime, envelope: Event) -> str:
    """The collector's stored line (DESIGN.md §2) for one log4j envelope sent by ``node``."""
    event = envelope["message"]
    line: Event = {
        "clientEvent": event,
        "origAddress": NODE_ADDRESSES.get(node, "10.0.9.9"),
        "serverTimestamp": iso((t + timedelta(milliseconds=40)).astimezone(UTC)),
        "topic": topic,
    }
    if "routingKey" in event:
        line["routingKey"] = event["routingKey"]
    line["node"] = node
    line["envelope"] = {k: v for k, v in envelope.items() if k != "message"}
    return dumps(line)


def write_node_store(
    root: Path, name: str, kind: str, seed: int, start: datetime, days: int, scale: float, gzipped: bool
) -> int:
    """One node's events as the collector publishes them: ``{topic}/{routing_key}/%Y/%m/%d/%H/``
    (UTC, the default path template), one file per partition and hour from this node."""
    import gzip

    count = 0
    pending: dict[str, list[str]] = {}
    current_hour: datetime | None = None

    def flush() -> None:
        for seq, (partition, lines) in enumerate(sorted(pending.items())):
            folder = root / partition
            folder.mkdir(parents=True, exist_ok=True)
            file_name = f"events-{name}-{current_hour:%Y%m%dT%H}-{seq:03d}.ndjson"
            data = ("\n".join(lines) + "\n").encode("utf-8")
            if gzipped:
                (folder / (file_name + ".gz")).write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
            else:
                (folder / file_name).write_bytes(data)
        pending.clear()

    for topic, t, envelope in node_events(name, kind, seed, start, days, scale):
        utc = t.astimezone(UTC)
        hour = utc.replace(minute=0, second=0, microsecond=0)
        if hour != current_hour:
            flush()
            current_hour = hour
        routing_key = envelope["message"].get("routingKey") or "default"
        pending.setdefault(f"{topic}/{routing_key}/{utc:%Y/%m/%d/%H}", []).append(
            stored_line(name, topic, t, envelope)
        )
        count += 1
    flush()
    return count


def _write_node_store_args(args: tuple[Any, ...]) -> int:
    return write_node_store(*args)


def write_store(
    root: Path,
    *,
    seed: int = 2020,
    start: datetime = START,
    days: int = DAYS,
    scale: float = 1.0,
    gzipped: bool = False,
    processes: int = 1,
) -> int:
    """A published store of the four sample nodes; the number of events written."""
    jobs = [(root, name, kind, seed, start, days, scale, gzipped) for name, kind in NODES]
    if processes > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            return sum(pool.map(_write_node_store_args, jobs))
    return sum(_write_node_store_args(job) for job in jobs)


def bare_events() -> list[str]:
    """The README's curl example: bare events, a log4j 2 JsonLayout line, an Event Server line."""
    lines: list[Event] = [
        {
            "msgType": "login",
            "authUser": "alice.martin",
            "authSource": "LDAP",
            "clientIP": "10.0.12.31",
            "timestamp": "2020-02-19T09:01:12.004+0100",
        },
        {
            "msgType": "dataset-read-data",
            "authUser": "alice.martin",
            "projectKey": "CHURN_PREDICTION",
            "datasetName": "customers",
            "timestamp": "2020-02-19T09:03:40.512+0100",
        },
        {
            "msgType": "scenario-run",
            "authUser": "bob.chen",
            "projectKey": "SALES_FORECAST",
            "scenarioId": "daily_refresh",
            "trigger": "manual",
            "timestamp": "2020-02-19T09:15:00.000+0100",
        },
        {
            "msgType": "project-export-download",
            "authUser": "carla.rossi",
            "projectKey": "FRAUD_DETECTION",
            "exportId": "FRAUD_DETECTION-1a2b3c4d",
            "timestamp": "2020-02-19T10:42:07.331+0100",
        },
        {"msgType": "logout", "authUser": "alice.martin", "timestamp": "2020-02-19T12:30:55.120+0100"},
        # log4j 2 JsonLayout, as a JVM HttpAppender posts it: message is a JSON *string*.
        {
            "instant": {"epochSecond": 1582106400, "nanoOfSecond": 250000000},
            "thread": "qtp-http-42",
            "level": "INFO",
            "loggerName": "dku.audit.generic",
            "message": dumps(
                {
                    "msgType": "flow-job-start",
                    "authUser": "dmitri.ivanov",
                    "projectKey": "CUSTOMER_360",
                    "jobId": "Build_orders_prepared.007",
                }
            ),
            "endOfBatch": False,
            "loggerFqcn": "org.apache.logging.log4j.spi.AbstractLogger",
            "contextMap": {"apiCall": "/dip/api/flow/jobs/start", "user": "dmitri.ivanov"},
            "threadId": 42,
            "threadPriority": 5,
        },
        # Event Server envelope from an upstream collector: kept as it came.
        {
            "clientEvent": {
                "msgType": "prediction-query",
                "routingKey": "churn-scoring",
                "serviceId": "churn-scoring",
                "endpointId": "predict",
                "authUser": "api-key:churn-scoring-client",
                "response": {"prediction": "0"},
            },
            "origAddress": "10.0.14.5",
            "serverTimestamp": "2020-03-17T19:15:30.609+0100",
        },
    ]
    return [dumps(e) for e in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="folder to write into (default: the folder of this script)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        help="write a published store (stored lines in hour partitions) into this folder instead",
    )
    parser.add_argument("--days", type=int, default=DAYS, help="with --store: days of events")
    parser.add_argument(
        "--start", default=START.date().isoformat(), help="with --store: first day (node-local time)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="with --store: hourly volume multiplier")
    parser.add_argument("--gzip", action="store_true", help="with --store: publish .ndjson.gz files")
    parser.add_argument("--processes", type=int, default=1, help="with --store: nodes written in parallel")
    args = parser.parse_args()
    if args.store is not None:
        first = datetime.fromisoformat(args.start).replace(tzinfo=TZ)
        n = write_store(
            args.store,
            seed=args.seed,
            start=first,
            days=args.days,
            scale=args.scale,
            gzipped=args.gzip,
            processes=args.processes,
        )
        print(f"{n} events in {args.store} (seed {args.seed})")
        return
    total = 0
    for name, kind in NODES:
        files: dict[str, list[str]] = {}
        for file_name, line in node_lines(name, kind, args.seed):
            files.setdefault(file_name, []).append(line)
        folder = args.out / name / "audit"
        folder.mkdir(parents=True, exist_ok=True)
        for file_name, lines in sorted(files.items()):
            (folder / file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
            total += len(lines)
            print(f"{name}/audit/{file_name}: {len(lines)} events")
    (args.out / "bare-events.ndjson").write_text("\n".join(bare_events()) + "\n", encoding="utf-8")
    print(f"{total} events (seed {args.seed})")


if __name__ == "__main__":
    main()
