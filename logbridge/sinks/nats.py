"""The ``nats`` destination: each request's lines published to NATS JetStream (docs/nats.md).

A request's lines are published as one message per partition group — never one per event —
and the request is answered 200 only once JetStream has acknowledged every message. What a
message is (the contract ``logbridge consume`` reads)::

    subject   the destination's ``subject`` template, e.g. audit.<topic>.<routing key>, each token
              made safe by `subjects.subject_token` (routing key absent: the store's placeholder)
    body      exactly the stored NDJSON lines a filesystem destination with the same partition
              keys appends to that partition for this request ("\\n" after each line)
    headers   Nats-Msg-Id            <mark key>:<range start>-<range end>:<group index> for a
                                     request with X-Logbridge-Source/-Range, else a random id
              Logbridge-Topic        the topic (`subjects.header_value`)
              Logbridge-Routing-Key  the routing key; absent when the lines have none
              Logbridge-Partition    the partition path, rendered as the filesystem sink does
              Logbridge-Events       how many lines the body holds
              Logbridge-Source, Logbridge-Range   the request's, when it had them
              Logbridge-Part         <first line>-<end line>/<lines in the group>, only when a
                                     group is too big for one message (its id then ends with
                                     :<first line>-<end line>)

Groups are numbered in the order the request first names them; a group of lines that carry no
readable time (partitioned at the receive time) is kept apart from the event-time groups, so a
retry — received at another time — is cut into the same groups and gets the same ids, and
JetStream drops it as a duplicate within the stream's ``duplicate_window``.

Errors are mapped at this seam: an unreachable server is `DestinationUnreachable`, a full stream
`DestinationFull`, a missing ack `DestinationTimeout`, anything else JetStream refuses a
`DestinationError`; a line that can never fit in a message is `BodyTooLarge` (413), found before
anything is sent. nats-py's ``publish_async`` is not used: its future never resolves when the
server answers "maximum bytes exceeded". Messages are published with a reply subject of ours,
every ack is read here (an error ack is an error, not a hang) and a request waits for its acks
at most ``publish_timeout``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import os
import random
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
import orjson
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from ..config import resolve_secret
from ..errors import (
    BodyTooLarge,
    ConfigError,
    DestinationError,
    DestinationFull,
    DestinationTimeout,
    DestinationUnreachable,
    LogbridgeError,
)
from .base import BatchOrigin, Published
from .config import NatsConnection, NatsDestination
from .fs import require_module
from .partition import PartitionPaths
from .subjects import SubjectTemplate, header_value, subject_token

log = structlog.get_logger("logbridge.sinks")

MSG_ID = "Nats-Msg-Id"
TOPIC = "Logbridge-Topic"
ROUTING_KEY = "Logbridge-Routing-Key"
PARTITION = "Logbridge-Partition"
EVENTS = "Logbridge-Events"
SOURCE = "Logbridge-Source"
RANGE = "Logbridge-Range"
PART = "Logbridge-Part"
EXPECTED_STREAM = "Nats-Expected-Stream"  # the stream refuses what another stream would take

# Reconnecting: the first attempt at once, then doubling waits up to the cap, with jitter (a
# cluster's collectors must not all knock at the same instant when a server comes back).
RECONNECT_FIRST_WAIT = 0.1
RECONNECT_MAX_WAIT = 2.0
# nats-py types this int but sleeps any number: a quick second try of each server at start.
_WAIT_BETWEEN_TRIES: dict[str, Any] = {"reconnect_time_wait": 0.05}
# A dead peer is noticed by missed pings when no TCP reset says so (a partition, a VM paused).
PING_INTERVAL = 10
MAX_OUTSTANDING_PINGS = 3
CLOSE_TIMEOUT = 2.0
# Headers and framing of one message, over the headers we count exactly (NATS/1.0 line, CRLFs,
# Nats-Expected-Stream added by nats-py).
HEADER_MARGIN = 256


# ------------------------------------------------------------------------------ partitions


@dataclass(frozen=True, slots=True)
class Group:
    """What a partition group's messages carry besides the lines."""

    subject: str
    topic: str  # header value
    routing_key: str | None  # header value; None when the lines have no routing key
    partition: str  # the filesystem sink's partition path


class NatsGroups:
    """The `Partitioner` of a nats destination: a partition *key* per (topic, routing key,
    partition path, receive-time or not), from which `group` gives the subject and headers.

    The path is the filesystem sink's (`PartitionPaths`, the same keys), so a writer stores the
    message where a filesystem destination of the collector would have. Keys are ``repr`` of
    that tuple: unique, and read back when the cache was cleared meanwhile. Thread-safe as the
    other partitioners are (plain dicts; a lost cache entry is recomputed)."""

    def __init__(self, paths: PartitionPaths, template: SubjectTemplate, placeholder: str):
        self.paths = paths
        self.template = template
        self.placeholder_token = subject_token(placeholder)
        self._keys: dict[tuple[str, str | None, str, bool], str] = {}
        self._groups: dict[str, Group] = {}

    @property
    def grain(self) -> int:
        return self.paths.grain

    def render(self, topic: str, routing_key: str | None, epoch: float) -> str:
        return self._key(topic, routing_key, self.paths.render(topic, routing_key, epoch), False)

    def render_received(self, topic: str, routing_key: str | None, received: float) -> str:
        return self._key(topic, routing_key, self.paths.render(topic, routing_key, received), True)

    def _key(self, topic: str, routing_key: str | None, path: str, received: bool) -> str:
        whole = (topic, routing_key, path, received)
        key = self._keys.get(whole)
        if key is None:
            if len(self._keys) > 50_000:
                self._keys.clear()
                self._groups.clear()
            key = repr(whole)
            self._groups[key] = self._describe(topic, routing_key, path)
            self._keys[whole] = key
        return key

    def group(self, key: str) -> Group:
        group = self._groups.get(key)
        if group is None:
            topic, routing_key, path, _ = ast.literal_eval(key)
            group = self._describe(topic, routing_key, path)
        return group

    def _describe(self, topic: str, routing_key: str | None, path: str) -> Group:
        rk_token = subject_token(routing_key) if routing_key is not None else self.placeholder_token
        return Group(
            subject=self.template.render(subject_token(topic), rk_token),
            topic=header_value(topic),
            routing_key=header_value(routing_key) if routing_key is not None else None,
            partition=_partition_header(path),
        )


def _partition_header(path: str) -> str:
    """The path as a header value: rendered paths are ASCII already (`sanitize_segment`); a
    literal part of the template outside printable ASCII is %-encoded."""
    if path.isascii() and path.isprintable():
        return path
    return "".join(c if c.isascii() and c.isprintable() else _percent(c) for c in path)


def _percent(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


# ------------------------------------------------------------------------------ connection


def redact(server: str) -> str:
    """A server URL without the user and password it may carry, for messages and logs."""
    url = urlsplit(server if "://" in server else f"nats://{server}")
    host = url.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{url.port}" if url.port else ""
    except ValueError:
        port = ""
    return f"{url.scheme}://{host}{port}"


def _needs_tls(dest: NatsConnection) -> bool:
    return dest.tls is not None or any(s.split("://", 1)[0] in ("tls", "wss") for s in dest.servers)


def tls_context(dest: NatsConnection, key: str) -> ssl.SSLContext:
    """The TLS context of ``dest.tls`` (the system's CAs when it names none). `ConfigError`
    naming the key for a file that cannot be loaded."""
    tls = dest.tls
    ca = tls.ca if tls else None
    try:
        ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        if tls is not None and tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        given = [f"tls.{n}" for n in ("ca", "cert", "key") if tls is not None and getattr(tls, n)]
        raise ConfigError(f"{key}: cannot load {'/'.join(given) or 'the system CAs'}: {exc}") from None
    return ctx


def connect_options(dest: NatsConnection, key: str, client_name: str | None = None) -> dict[str, Any]:
    """nats-py ``connect`` options for ``dest`` (a destination, or a writer's ``nats`` section):
    credentials read now (a missing variable or file is a `ConfigError` naming the key; no
    value is ever logged), TLS loaded."""
    if client_name is None:
        client_name = f"logbridge collector ({getattr(dest, 'name', '?')})"
    options: dict[str, Any] = {
        "servers": list(dest.servers),
        "name": client_name,
        "connect_timeout": dest.connect_timeout,
        "ping_interval": PING_INTERVAL,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
        "dont_randomize": False,
    }
    if dest.token_env:
        options["token"] = resolve_secret(env=dest.token_env, file=None, what=f"{key}.token_env")
    if dest.user:
        options["user"] = dest.user
        options["password"] = resolve_secret(env=dest.password_env, file=None, what=f"{key}.password_env")
    if dest.creds_file:
        path = Path(dest.creds_file).expanduser()
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{key}.creds_file: cannot read {path}: {exc.strerror}") from None
        # nats-py signs the server's nonce with the creds file's seed through nkeys.
        require_module("nkeys", "nats", what=f"{key}.creds_file")
        options["user_credentials"] = str(path)
    if _needs_tls(dest):
        options["tls"] = tls_context(dest, key)
    return options


def _credentials_hint(dest: NatsConnection) -> str:
    if dest.creds_file:
        return f"check creds_file ({dest.creds_file})"
    if dest.token_env:
        return f"check the token in {dest.token_env} (token_env)"
    if dest.user:
        return f"check user {dest.user!r} and the password in {dest.password_env} (password_env)"
    return "the server wants credentials: set creds_file, token_env, or user + password_env"


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, nats.js.errors.APIError):
        text = exc.description or type(exc).__name__
    elif isinstance(exc, ssl.SSLError):  # its errno is OpenSSL's, not the OS's
        detail = getattr(exc, "verify_message", None)
        text = f"{exc.reason}: {detail}" if exc.reason and detail else (exc.reason or str(exc))
    elif isinstance(exc, OSError) and exc.errno:
        text = os.strerror(exc.errno)  # asyncio's "Connect call failed (…)" says less
    elif isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if text.startswith("nats: "):
        text = text[len("nats: ") :]
    return text.strip("'") or type(exc).__name__


def _is_auth_error(exc: BaseException) -> bool:
    if isinstance(exc, nats.errors.AuthorizationError):
        return True
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text or "user authentication" in text


def connect_failure(dest: NatsConnection, key: str, exc: BaseException, seen: list[BaseException]) -> str:
    """One line for a failed connection at start, naming what to check."""
    servers = ", ".join(redact(s) for s in dest.servers)
    causes = [exc, *reversed(seen)]
    for cause in causes:
        if _is_auth_error(cause):
            return f"{key}: the NATS server at {servers} refused the credentials: {_credentials_hint(dest)}"
    for cause in causes:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return f"{key}: TLS with the NATS server at {servers} failed: {describe_error(cause)}; check tls and servers"
    last = next((c for c in causes if not isinstance(c, nats.errors.NoServersError)), exc)
    if isinstance(last, TimeoutError):
        reason = f"no answer within connect_timeout ({dest.connect_timeout:g}s)"
    else:
        reason = describe_error(last)
    return f"{key}: cannot reach NATS at {servers}: {reason}; is nats-server running there? (check servers)"


# ---------------------------------------------------------------------------------- stream


def stream_config(dest: NatsDestination) -> StreamConfig:
    """The stream this destination creates: file storage, discard new (a full stream refuses
    new messages, never drops unconsumed ones), limits retention, the configured limits."""
    return StreamConfig(
        name=dest.stream,
        subjects=[SubjectTemplate(dest.subject).stream_subject],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        num_replicas=dest.replicas,
        max_bytes=dest.max_bytes if dest.max_bytes is not None else -1,
        max_age=dest.max_age or 0.0,
        duplicate_window=dest.duplicate_window,
    )


def stream_conflicts(existing: StreamConfig, dest: NatsDestination) -> list[str]:
    """Why an existing stream cannot be this destination's (settings whose meaning differs;
    limits are not conflicts, `ensure_stream` updates them)."""
    from .subjects import subject_matches

    ours = SubjectTemplate(dest.subject).stream_subject
    problems = []
    subjects = list(existing.subjects or [])
    if not any(subject_matches(s, ours) for s in subjects):
        problems.append(
            f"its subjects {subjects} do not take {ours!r} (this destination's subject {dest.subject!r})"
        )
    if _value(existing.storage) != "file":
        problems.append(f"storage {_value(existing.storage)} (expected file)")
    if _value(existing.discard) != "new":
        problems.append(
            f"discard {_value(existing.discard)} (expected new: a full stream must refuse new events, "
            "never drop unconsumed ones)"
        )
    if _value(existing.retention) == "interest":
        problems.append("retention interest (messages nobody consumes yet would be dropped; expected limits)")
    if (existing.num_replicas or 1) != dest.replicas:
        problems.append(f"replicas {existing.num_replicas or 1} (config says {dest.replicas})")
    if existing.sealed:
        problems.append("it is sealed (it takes no new messages)")
    if existing.no_ack:
        problems.append("no_ack is set (publishes would get no ack, so nothing could be answered)")
    if existing.mirror is not None:
        problems.append("it is a mirror (it takes no publishes)")
    return problems


def _value(setting: Any) -> str:
    return str(getattr(setting, "value", setting))


def _limits_of(config: StreamConfig) -> tuple[int, float, float]:
    return (config.max_bytes or -1, float(config.max_age or 0.0), float(config.duplicate_window or 0.0))


async def ensure_stream(js: Any, dest: NatsDestination, key: str) -> tuple[str, int]:
    """Create ``dest.stream``, or check it: ("created" | "updated" (limits set to the config's)
    | "checked", the stream's max_msg_size or -1). Raises `ConfigError` naming every conflicting
    setting, or nats-py's errors when the server does not answer (the caller maps them)."""
    wanted = stream_config(dest)
    try:
        info = await js.stream_info(dest.stream)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(wanted)
        except nats.js.errors.BadRequestError as exc:
            raise ConfigError(
                f"{key}: cannot create stream {dest.stream!r} with subjects {wanted.subjects}: "
                f"{exc.description}; change subject or stream"
            ) from None
        log.info("stream created", destination=dest.name, stream=dest.stream, subjects=wanted.subjects)
        return "created", -1
    existing: StreamConfig = info.config
    problems = stream_conflicts(existing, dest)
    if problems:
        raise ConfigError(
            f"{key}: stream {dest.stream!r} exists with settings that conflict with this destination: "
            + "; ".join(problems)
            + f"; use another stream name or change the stream (nats stream edit {dest.stream})"
        )
    max_msg_size = existing.max_msg_size or -1
    if _limits_of(existing) == _limits_of(wanted):
        return "checked", max_msg_size
    updated = StreamConfig.from_response(existing.as_dict())
    updated.max_bytes = wanted.max_bytes
    updated.max_age = wanted.max_age
    updated.duplicate_window = wanted.duplicate_window
    try:
        await js.update_stream(updated)
    except nats.js.errors.APIError as exc:
        raise ConfigError(
            f"{key}: stream {dest.stream!r} has other limits than the config "
            f"(max_bytes, max_age, duplicate_window) and cannot be updated: {exc.description}"
        ) from None
    log.warning(
        "stream limits updated to the config's",
        destination=dest.name,
        stream=dest.stream,
        was=dict(zip(("max_bytes", "max_age", "duplicate_window"), _limits_of(existing), strict=True)),
        now=dict(zip(("max_bytes", "max_age", "duplicate_window"), _limits_of(wanted), strict=True)),
    )
    return "updated", max_msg_size


# ------------------------------------------------------------------------------- preflight


def check_destination(dest: NatsDestination, key: str) -> tuple[str, int]:
    """At start, before the collector serves: connect once, check JetStream, create or check
    the stream. Raises `ConfigError` with one line naming the key and what to check."""
    return asyncio.run(_check_destination(dest, key))


async def _check_destination(dest: NatsDestination, key: str) -> tuple[str, int]:
    options = connect_options(dest, key)
    seen: list[BaseException] = []

    async def on_error(exc: Exception) -> None:  # nats-py's default prints tracebacks
        seen.append(exc)

    nc = Client()
    try:
        await nc.connect(
            **options,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # each server twice
            error_cb=on_error,
            **_WAIT_BETWEEN_TRIES,
        )
    except Exception as exc:
        await _close_quietly(nc)
        raise ConfigError(connect_failure(dest, key, exc, seen)) from None
    try:
        js = nc.jetstream(timeout=dest.connect_timeout)
        try:
            await js.account_info()
        except (TimeoutError, nats.errors.Error):
            servers = ", ".join(redact(s) for s in dest.servers)
            raise ConfigError(
                f"{key}: JetStream does not answer on the NATS server at {servers}: "
                "start nats-server with -js (and enable JetStream for this account)"
            ) from None
        try:
            return await ensure_stream(js, dest, key)
        except (TimeoutError, nats.errors.Error) as exc:
            raise ConfigError(
                f"{key}: cannot create or check stream {dest.stream!r}: {describe_error(exc)}"
            ) from None
    finally:
        await _close_quietly(nc)


async def _close_quietly(nc: Client) -> None:
    """Close, bounded: after a failed TLS handshake nats-py's close waits for a transport that
    never reports closed."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.close(), CLOSE_TIMEOUT)


# ------------------------------------------------------------------------------------ sink


@dataclass(slots=True)
class _Message:
    subject: str
    payload: bytes
    headers: dict[str, str]


class NatsSink:
    """A `Publisher` for one ``nats`` destination. Lives on the collector's event loop."""

    def __init__(self, dest: NatsDestination, *, key: str):
        self.dest = dest
        self.name = dest.name
        self.key = key
        self.event_time = dest.partition_time == "event"
        template = SubjectTemplate(dest.subject)
        self.partitions = NatsGroups(
            PartitionPaths(
                dest.path_template(), timezone=dest.timezone, placeholder=dest.routing_key_placeholder
            ),
            template,
            dest.routing_key_placeholder,
        )
        self.servers = [redact(s) for s in dest.servers]
        # The largest message (headers + body): the server's max_payload once connected, or the
        # stream's max_msg_size when that is smaller.
        self.max_payload = 1024 * 1024
        self._server_max_payload = self.max_payload
        self._stream_max_msg_size = -1
        self._nc: Client | None = None
        self._js: Any = None
        self._connector: asyncio.Task[None] | None = None
        self._stream_checker: asyncio.Task[None] | None = None
        self._stream_ready = False
        self._stream_problem: str | None = None
        self._last_error: str | None = None
        self._logged_error = False
        self._closed = False
        # Acks: reply subject → the future of the request waiting for it.
        self._ack_prefix: str | None = None
        self._ack_ids = itertools.count()
        self._waiting: dict[str, asyncio.Future[Msg]] = {}

    @classmethod
    def from_config(cls, dest: NatsDestination, staging_dir: Path, *, key: str) -> NatsSink:
        return cls(dest, key=key)  # nothing staged: staging_dir is not used

    def __repr__(self) -> str:
        return f"NatsSink({self.name!r}, {self.servers}, stream={self.dest.stream!r})"

    # ---------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect, waiting up to ``connect_timeout``; past it the connection goes on being
        tried in the background (``/healthz`` answers 503 meanwhile)."""
        options = connect_options(self.dest, self.key)
        nc = Client()
        self._nc = nc
        self._connector = asyncio.create_task(self._connect(nc, options))
        try:
            await asyncio.wait_for(asyncio.shield(self._connector), self.dest.connect_timeout)
        except TimeoutError:
            log.warning(
                "NATS not reachable at start; retrying in the background",
                destination=self.name,
                servers=self.servers,
                error=self._last_error,
            )

    async def _connect(self, nc: Client, options: dict[str, Any]) -> None:
        await nc.connect(
            **options,
            allow_reconnect=True,
            max_reconnect_attempts=-1,  # forever
            # Only for the first connection (later ones wait as `reconnect_backoff` says).
            reconnect_time_wait=int(RECONNECT_MAX_WAIT),
            reconnect_to_server_handler=reconnect_backoff,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._js = nc.jetstream(timeout=self.dest.publish_timeout)
        # One subscription takes every ack (nats-py subscribes it again after a reconnection).
        prefix = nc.new_inbox() + "."
        await nc.subscribe(prefix + "*", cb=self._on_ack)
        self._ack_prefix = prefix
        self._set_max_payload(server=nc.max_payload)
        self._last_error = None
        url = nc.connected_url
        log.info("connected to NATS", destination=self.name, server=redact(url.geturl()) if url else None)
        await self._check_stream()

    async def _check_stream(self) -> None:
        """Create or check the stream after every (re)connection — a server restarted on an
        empty store has lost it — retrying until it passes (a conflict the operator fixes)."""
        self._stream_ready = False
        wait = 0.5
        while not self._closed:
            try:
                _, max_msg_size = await ensure_stream(self._js, self.dest, self.key)
            except ConfigError as exc:
                self._stream_problem = str(exc)
                log.error("stream conflicts with the destination", destination=self.name, error=str(exc))
            except (TimeoutError, nats.errors.Error) as exc:
                self._stream_problem = f"cannot check stream {self.dest.stream!r}: {describe_error(exc)}"
            else:
                self._set_max_payload(stream=max_msg_size)
                self._stream_problem = None
                self._stream_ready = True
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, 30.0)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = describe_error(exc)
        if not self._logged_error:  # once per outage: a retry every two seconds is not news
            self._logged_error = True
            log.warning("NATS connection error", destination=self.name, error=self._last_error)

    async def _on_disconnected(self) -> None:
        # Acks due on the lost connection will not come: answer their requests now, not at the
        # timeout. (What was sent may have been stored; a retry's ids say so.)
        lost = DestinationUnreachable(f"destination {self.name!r}: NATS connection lost while publishing")
        for ack in list(self._waiting.values()):
            if not ack.done():
                ack.set_exception(lost)
        if not self._closed:
            log.warning("NATS connection lost; reconnecting", destination=self.name, servers=self.servers)

    async def _on_reconnected(self) -> None:
        nc = self._nc
        assert nc is not None
        self._set_max_payload(server=nc.max_payload)
        self._last_error = None
        self._logged_error = False
        log.info("reconnected to NATS", destination=self.name)
        if self._stream_checker is not None:
            self._stream_checker.cancel()
        self._stream_ready = False
        self._stream_checker = asyncio.create_task(self._check_stream())

    def _set_max_payload(self, *, server: int | None = None, stream: int | None = None) -> None:
        if server is not None:
            self._server_max_payload = server
        if stream is not None:
            self._stream_max_msg_size = stream
        limits = [self._server_max_payload]
        if self._stream_max_msg_size > 0:
            limits.append(self._stream_max_msg_size)
        self.max_payload = min(limits)

    async def close(self) -> None:
        self._closed = True
        for task in (self._stream_checker, self._connector):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        nc = self._nc
        if nc is not None and not nc.is_closed:
            await _close_quietly(nc)

    # ------------------------------------------------------------------------ health

    def problem(self) -> str | None:
        if self._closed:
            return f"destination {self.name!r}: closed"
        nc = self._nc
        if nc is None or not nc.is_connected or self._js is None:
            why = f" (last error: {self._last_error})" if self._last_error else ""
            return (
                f"destination {self.name!r}: NATS unreachable at {', '.join(self.servers)}, reconnecting{why}"
            )
        if self._stream_problem:
            return f"destination {self.name!r}: {self._stream_problem}"
        if not self._stream_ready:
            return f"destination {self.name!r}: checking stream {self.dest.stream!r}"
        return None

    # ---------------------------------------------------------------------- publish

    async def publish_batch(self, groups: Sequence[tuple[str, bytes]], origin: BatchOrigin) -> Published:
        """Publish every message, then wait — once, for all of them, at most ``publish_timeout``
        — for JetStream's acks, each read here (an error ack included: nats-py's
        ``publish_async`` would leave its future unresolved on "maximum bytes exceeded").

        Each message is a plain publish whose reply subject is ours, rather than one
        ``js.publish`` request each: a request's messages share one wait, and an ack costs a
        dict lookup and a small JSON parse — half the CPU per message."""
        problem = self.problem()
        if problem is not None or self._ack_prefix is None:
            raise DestinationUnreachable(problem or f"destination {self.name!r}: not connected yet")
        messages = self.messages(groups, origin)
        nc = self._nc
        assert nc is not None
        loop = asyncio.get_running_loop()
        waiting = self._waiting
        replies: list[str] = []
        acks: list[asyncio.Future[Msg]] = []
        try:
            for message in messages:
                reply = f"{self._ack_prefix}{next(self._ack_ids)}"
                ack: asyncio.Future[Msg] = loop.create_future()
                waiting[reply] = ack
                replies.append(reply)
                acks.append(ack)
                message.headers[EXPECTED_STREAM] = self.dest.stream
                await nc.publish(message.subject, message.payload, reply=reply, headers=message.headers)
            _, late = await asyncio.wait(acks, timeout=self.dest.publish_timeout)
        except (nats.errors.Error, OSError) as exc:
            raise self._map_error(exc) from exc
        finally:
            for reply in replies:  # answered, timed out or cancelled: nobody waits for it any more
                waiting.pop(reply, None)
        if late:
            for ack in late:
                ack.cancel()
            raise DestinationTimeout(
                f"destination {self.name!r}: no publish ack from NATS within publish_timeout "
                f"({self.dest.publish_timeout:g}s)"
            )
        # Every future's outcome is taken (an exception nobody retrieves is logged at exit).
        failures = [failure for failure in (ack.exception() for ack in acks) if failure is not None]
        if failures:
            raise failures[0]
        duplicates = sum(self._read_ack(ack.result()) for ack in acks)
        return Published(len(messages), duplicates)

    async def _on_ack(self, msg: Msg) -> None:
        ack = self._waiting.pop(msg.subject, None)
        if ack is not None and not ack.done():
            ack.set_result(msg)

    def _read_ack(self, msg: Msg) -> bool:
        """Whether the ack says the stream held the message already; raises what it refuses."""
        where = f"destination {self.name!r}"
        if not msg.data:
            status = (msg.headers or {}).get("Status")
            if status == "503":  # no responders: no stream listens on the subject
                raise DestinationError(
                    f"{where}: no stream takes the subject (was stream {self.dest.stream!r} deleted?)"
                )
            raise DestinationError(f"{where}: JetStream answered with status {status} and no ack")
        try:
            ack = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            raise DestinationError(f"{where}: unreadable publish ack {msg.data[:200]!r}") from None
        error = ack.get("error") if isinstance(ack, dict) else None
        if error:
            description = str(error.get("description") or error)
            if (
                error.get("code") == 503
                or "exceeded" in description
                or "insufficient resources" in description
            ):
                raise DestinationFull(
                    f"{where}: stream {self.dest.stream!r} is full ({description}); "
                    "it takes events again once writers drain it"
                )
            raise DestinationError(f"{where}: JetStream refused the message: {description}")
        if not isinstance(ack, dict) or "seq" not in ack:
            raise DestinationError(f"{where}: unexpected publish ack {msg.data[:200]!r}")
        return bool(ack.get("duplicate"))

    def messages(self, groups: Sequence[tuple[str, bytes]], origin: BatchOrigin) -> list[_Message]:
        """The messages of one request's groups. `BodyTooLarge` before anything is sent when a
        single line cannot fit in a message under the server's max_payload."""
        if origin.mark_key is not None and origin.range_start is not None and origin.range_end is not None:
            prefix = f"{header_value(origin.mark_key)}:{origin.range_start}-{origin.range_end}"
        else:
            prefix = secrets.token_hex(12)  # no range, no dedupe: unique per request
        common: dict[str, str] = {}
        if origin.source is not None:
            common[SOURCE] = header_value(origin.source)
        if origin.range_start is not None and origin.range_end is not None:
            common[RANGE] = f"{origin.range_start}-{origin.range_end}"
        out = []
        for index, (key, data) in enumerate(groups):
            group = self.partitions.group(key)
            headers = {MSG_ID: f"{prefix}:{index}", TOPIC: group.topic}
            if group.routing_key is not None:
                headers[ROUTING_KEY] = group.routing_key
            headers[PARTITION] = group.partition
            headers.update(common)
            lines = data.count(b"\n")
            headers[EVENTS] = str(lines)
            budget = self.max_payload - _headers_size(headers) - HEADER_MARGIN
            if len(data) <= budget:
                out.append(_Message(group.subject, data, headers))
                continue
            # Too big for one message: cut at line ends, each piece named by its lines, so a
            # retry cut the same way has the same ids (and one cut otherwise never loses lines).
            budget -= 64  # the Logbridge-Part header and the longer id
            for first, end, piece in self._pieces(data, budget):
                part = dict(headers)
                part[MSG_ID] = f"{prefix}:{index}:{first}-{end}"
                part[EVENTS] = str(end - first)
                part[PART] = f"{first}-{end}/{lines}"
                out.append(_Message(group.subject, piece, part))
        return out

    def _pieces(self, data: bytes, budget: int) -> list[tuple[int, int, bytes]]:
        pieces = []
        pos = line = 0
        size = len(data)
        while pos < size:
            if size - pos <= budget:
                cut = size
            else:
                newline = data.rfind(b"\n", pos, pos + budget)
                if newline == -1:
                    end = data.find(b"\n", pos)
                    length = (end if end != -1 else size) - pos + 1
                    raise BodyTooLarge(
                        f"destination {self.name!r}: a stored line of {length} bytes does not fit in one "
                        f"NATS message (at most {self.max_payload} bytes: the server's max_payload or the "
                        "stream's max_msg_size): send smaller events, or raise that limit"
                    )
                cut = newline + 1
            piece = data[pos:cut]
            count = piece.count(b"\n")
            pieces.append((line, line + count, piece))
            line += count
            pos = cut
        return pieces

    def _map_error(self, exc: BaseException) -> LogbridgeError:
        """nats-py's errors while sending."""
        where = f"destination {self.name!r}"
        if isinstance(exc, nats.errors.MaxPayloadError):  # the server lowered max_payload meanwhile
            return DestinationError(
                f"{where}: a message is over the server's max_payload; send the batch again"
            )
        if isinstance(exc, LogbridgeError):
            return exc
        return DestinationUnreachable(
            f"{where}: NATS connection lost while publishing ({describe_error(exc)})"
        )


def _headers_size(headers: dict[str, str]) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items())


def reconnect_backoff(servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
    """nats-py's ``reconnect_to_server_handler``: the least-tried server, after a wait that
    doubles with its failed attempts (none for the first), capped, with jitter."""
    server = min(servers, key=lambda s: s.reconnects)
    tries = server.reconnects
    if tries == 0:
        return server, 0.0
    wait = min(RECONNECT_MAX_WAIT, RECONNECT_FIRST_WAIT * 2 ** (tries - 1))
    return server, wait * random.uniform(0.5, 1.0)
