"""One batch to the collector: POST, and decide what the answer means.

- any 2xx: stored (or already stored: ``{"duplicate": true}``) → the offset may advance;
- 409 ``{"high_water": N}``: the collector holds this source up to N → resume from N;
- network errors, 408, 429, 5xx, and 401/403 (a token problem an operator fixes; dead-lettering
  the whole trail meanwhile would be worse): retried forever, capped exponential backoff with
  full jitter, ``Retry-After`` honoured;
- any other 4xx (400, 413, 415, ...): the collector will never take this batch; it goes to the
  local dead-letter folder with the response (`deadletter`) and shipping continues.

One ``httpx.Client`` is kept for the process: keep-alive matters more than anything else here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import httpx
import orjson

from ..config import resolve_secret
from ..errors import Stopped as Stopped  # defined in the one tree; raised here
from ..retry import backoff_delay, retry_after
from .config import CollectorConfig

log = logging.getLogger("logbridge.shipper")

RETRYABLE_4XX = frozenset({401, 403, 408, 425, 429})


@dataclass(frozen=True, slots=True)
class Result:
    kind: Literal["stored", "duplicate", "high_water", "rejected"]
    high_water: int | None = None
    status: int = 0
    response: str = ""  # the collector's answer, for the dead letter


def build_client(cfg: CollectorConfig, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    # Plain HTTP needs no TLS context (building the default one loads the whole CA bundle).
    verify: ssl.SSLContext | bool = False
    if cfg.url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=cfg.tls.ca) if cfg.tls.ca else ssl.create_default_context()
        if cfg.tls.cert:
            ctx.load_cert_chain(cfg.tls.cert, cfg.tls.key)
        if not cfg.tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        verify = ctx
    return httpx.Client(
        verify=verify,
        timeout=httpx.Timeout(cfg.timeout),
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=60),
        transport=transport,
    )


class Forwarder:
    def __init__(
        self,
        cfg: CollectorConfig,
        node: str,
        stop: threading.Event,
        *,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        wait_slice: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
    ):
        self.cfg = cfg
        self.stop = stop
        self.client = build_client(cfg, transport)
        self.base_headers = {"Content-Type": "application/x-ndjson", "X-Logbridge-Node": node}
        if cfg.token_env or cfg.token_file:
            token = resolve_secret(env=cfg.token_env, file=cfg.token_file, what="collector token")
            self.base_headers["Authorization"] = f"Bearer {token}"
        if cfg.compression == "gzip":
            self.base_headers["Content-Encoding"] = "gzip"
        self.retries = 0  # read by metrics
        self.last_error: BaseException | None = None  # of the last failed attempt (for on_retry)
        self._on_retry = on_retry
        # Called every ``wait_slice`` while a backoff runs: the engine keeps discovering and
        # opening files during an outage (a file that appears and is deleted within one backoff
        # of up to ``retry.max`` is only readable if it was opened meanwhile).
        self._on_wait = on_wait
        self._wait_slice = wait_slice
        self._clock = clock
        self._sleep = sleep or stop.wait  # → True when shutdown was asked for

    def close(self) -> None:
        self.client.close()

    def _encode(self, body: bytes) -> bytes:
        if self.cfg.compression != "gzip":
            return body
        # wbits 31: a gzip member; zlib releases the GIL while it compresses.
        comp = zlib.compressobj(self.cfg.compression_level, zlib.DEFLATED, 31)
        return comp.compress(body) + comp.flush()

    def send(
        self,
        body: bytes,
        *,
        source: str,
        start: int,
        end: int,
        topic: str | None = None,
        routing_key: str | None = None,
    ) -> Result:
        """POST until the collector gives an answer that is final; `Stopped` on shutdown."""
        headers = dict(self.base_headers)
        headers["X-Logbridge-Source"] = source
        headers["X-Logbridge-Range"] = f"{start}-{end}"
        if topic:
            headers["X-Audit-Topic"] = topic
        if routing_key:
            headers["X-Audit-Routing-Key"] = routing_key
        payload = self._encode(body)
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Stopped("shutdown while a batch was being retried")
            wait: float | None = None
            self.last_error = None
            try:
                resp = self.client.post(self.cfg.url, content=payload, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                self.last_error = exc
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    duplicate = False
                    if status == 200 and resp.content[:1] == b"{":
                        try:
                            duplicate = bool(orjson.loads(resp.content).get("duplicate"))
                        except orjson.JSONDecodeError:
                            pass
                    return Result("duplicate" if duplicate else "stored", status=status)
                if status == 409:
                    high_water = _high_water(resp.content)
                    if high_water is not None:
                        return Result("high_water", high_water=high_water, status=status)
                if status < 500 and status not in RETRYABLE_4XX:
                    return Result("rejected", status=status, response=resp.text[:4096])
                problem = f"HTTP {status} {resp.text[:200]!r}"
                wait = retry_after(resp.headers.get("Retry-After"))
            attempt += 1
            self.retries += 1
            delay = (
                wait
                if wait is not None
                else backoff_delay(attempt, self.cfg.retry.initial, self.cfg.retry.max)
            )
            delay = min(delay, max(self.cfg.retry.max, 1.0) * 10)
            log.warning(
                "collector %s: %s; retry %d of range %d-%d of %s in %.1fs",
                self.cfg.url,
                problem,
                attempt,
                start,
                end,
                source,
                delay,
            )
            if self._on_retry is not None:
                self._on_retry()
            self._wait(delay)

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` (or until shutdown), calling ``on_wait`` every ``wait_slice``."""
        deadline = self._clock() + delay
        while not self.stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return
            if self._sleep(min(left, self._wait_slice)):
                return
            if self._on_wait is not None and self._clock() < deadline:
                self._on_wait()


def _high_water(content: bytes) -> int | None:
    try:
        value = orjson.loads(content).get("high_water")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
