"""`CollectorClient`: POST a batch to ``logbridge collect`` until its answer is final.

The policy, the same for every sender:

- any 2xx: stored (or already stored: ``{"duplicate": true}``);
- 409 ``{"high_water": N}``: the collector holds this source up to N → the caller resumes at N;
- network errors, 401, 403, 408, 425, 429 and 5xx: retried forever (a token or a certificate is
  something an operator fixes; dead-lettering the whole trail meanwhile would be worse), each
  wait ``Retry-After`` if the collector said, else capped exponential backoff with full jitter;
- 413 on a batch of several lines: split at a line boundary into two halves sent one after the
  other, each under its own sub-range (``s-m`` and ``m-e`` of ``s-e``): the collector's
  high-water mark moves to ``m`` then ``e`` as if the batch had been cut smaller in the first
  place, and a resend after a crash finds either half already stored. Only a single line that
  is still too large is refused;
- any other 4xx (and a 409 without a usable mark): the collector will never take these lines;
  they come back as `Rejected` pieces for the caller's dead letter, and sending goes on.

With several URLs (``urls``), a failed attempt moves the same batch to the next collector at
once and the backoff runs only once every collector has failed in a row; the first URL is gone
back to after ``failback`` (`logbridge.client.failover` states the whole policy).

One ``httpx.Client`` with one keep-alive connection is kept per sender (to the current
collector): keep-alive matters more than anything else here.

Waiting is the caller's to shape: ``sleep(seconds) → True to stop`` (default: ``stop.wait``),
``clock``, ``on_wait`` (called every ``wait_slice`` of a backoff: the shipper keeps finding
files during an outage), ``on_retry`` (after each failed attempt, while ``url`` still names the
collector that failed) and ``on_switch(old, new)`` (after each change of collector, with the URLs
as logs show them). Asked to stop while retrying, `send` raises `Stopped`: the batch was not
acknowledged and goes again later.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx
import orjson

from ..config import resolve_secret
from ..errors import Stopped
from ..retry import backoff_delay, retry_after
from .failover import DEFAULT_FAILBACK, Collectors
from .target import CollectorTarget
from .tls import tls_context

RETRYABLE_4XX = frozenset({401, 403, 408, 425, 429})

Kind = Literal["stored", "duplicate", "high_water", "rejected"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Lines the collector refused for good, for the dead letter."""

    body: bytes  # as sent (before compression)
    start: int | None  # their byte range in the source, when the batch had one
    end: int | None
    lines: int
    status: int
    response: str  # the collector's answer (at most 4 KiB)

    @property
    def reason(self) -> str:
        return f"HTTP {self.status}: {self.response[:500]}"


@dataclass(frozen=True, slots=True)
class Result:
    """The final answer for a whole batch.

    ``kind``: ``stored`` (at least part of it was stored, the rest already was or is in
    ``rejected``), ``duplicate`` (all of it was already stored), ``rejected`` (all of it is in
    ``rejected``), ``high_water`` (resume at ``high_water``; pieces before it may be in
    ``rejected``). Whatever the kind, every piece in ``rejected`` is for the dead letter."""

    kind: Kind
    high_water: int | None = None
    status: int = 0
    response: str = ""
    rejected: tuple[Rejected, ...] = ()


@dataclass(frozen=True, slots=True)
class _Piece:
    body: bytes
    start: int | None
    end: int | None
    # Source offset after each body line (when the body is not the source's bytes as they are).
    line_ends: Sequence[int] | None

    @property
    def lines(self) -> int:
        return self.body.count(b"\n") + (1 if self.body and not self.body.endswith(b"\n") else 0)

    def halves(self) -> tuple[_Piece, _Piece] | None:
        """Split after the middle line; None for a single line."""
        lines = self.lines
        if lines < 2:
            return None
        k = lines // 2
        cut = -1
        for _ in range(k):
            cut = self.body.index(b"\n", cut + 1)
        cut += 1
        mid: int | None = None
        left_ends = right_ends = None
        if self.start is not None and self.end is not None:
            if self.line_ends is not None:
                mid = self.line_ends[k - 1]
                left_ends, right_ends = self.line_ends[:k], self.line_ends[k:]
            else:  # the body is the source's bytes (a last line may have had a newline added)
                mid = min(self.start + cut, self.end)
        return (
            _Piece(self.body[:cut], self.start, mid, left_ends),
            _Piece(self.body[cut:], mid, self.end, right_ends),
        )


class CollectorClient:
    """One sender's connection to its collectors (one at a time). Not thread-safe: one sending
    thread each."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        node: str | None = None,
        headers: Mapping[str, str] | None = None,
        compression: Literal["gzip", "none"] = "gzip",
        compression_level: int = 1,
        timeout: float = 30.0,
        verify: object = False,
        retry_initial: float = 0.2,
        retry_max: float = 30.0,
        stop: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[], None] | None = None,
        on_wait: Callable[[], None] | None = None,
        on_switch: Callable[[str, str], None] | None = None,
        failback: float | None = DEFAULT_FAILBACK,
        wait_slice: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
        logger: logging.Logger | None = None,
        retry_log_level: int = logging.WARNING,
    ):
        """``url``: one collector's URL, or several in order of preference. ``verify``: what
        `tls_context` built (False for plain HTTP)."""
        self.collectors = Collectors((url,) if isinstance(url, str) else url, failback)
        self.stop = stop or threading.Event()
        self.client = httpx.Client(
            verify=verify,  # type: ignore[arg-type]
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=60),
            transport=transport,
        )
        self.base_headers = {"Content-Type": "application/x-ndjson"}
        if node:
            self.base_headers["X-Logbridge-Node"] = node
        if token:
            self.base_headers["Authorization"] = f"Bearer {token}"
        if compression == "gzip":
            self.base_headers["Content-Encoding"] = "gzip"
        self.base_headers.update(headers or {})
        self.compression = compression
        self.compression_level = compression_level
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.retries = 0  # read by metrics and stats
        self.last_error: BaseException | None = None  # of the last failed attempt (for on_retry)
        self.last_problem = ""  # what the last failed attempt got, in words
        # True once every collector failed in a row (the client then waits); False at the next answer.
        self.all_failed = False
        self._on_retry = on_retry
        self._on_switch = on_switch
        self._on_wait = on_wait
        self._wait_slice = wait_slice
        self._clock = clock
        self._sleep = sleep or self.stop.wait  # → True when shutdown was asked for
        self._log = logger or logging.getLogger("logbridge.client")
        self._retry_log_level = retry_log_level

    @classmethod
    def from_target(cls, target: CollectorTarget, node: str, **options: object) -> CollectorClient:
        """A client for a validated `CollectorTarget` (its token read now); ``options`` as above."""
        token = None
        if target.token_env or target.token_file:
            token = resolve_secret(env=target.token_env, file=target.token_file, what="collector token")
        tls = target.tls
        urls = target.endpoints
        # One context for every https URL of the list (plain http ones ignore it).
        secure = next((url for url in urls if url.startswith("https://")), urls[0])
        verify = tls_context(secure, ca=tls.ca, cert=tls.cert, key=tls.key, verify=tls.verify)
        return cls(
            urls,
            token=token,
            node=node,
            compression=target.compression,
            compression_level=target.compression_level,
            timeout=target.timeout,
            verify=verify,
            retry_initial=target.retry.initial,
            retry_max=target.retry.max,
            failback=target.failback,
            **options,  # type: ignore[arg-type]
        )

    @property
    def url(self) -> str:
        """The collector batches go to now."""
        return self.collectors.url

    @property
    def urls(self) -> tuple[str, ...]:
        return self.collectors.urls

    @property
    def switches(self) -> int:
        """How many times the client changed collector (failover and failback)."""
        return self.collectors.switches

    def close(self) -> None:
        self.client.close()

    # -------------------------------------------------------------------------------- send

    def send(
        self,
        body: bytes,
        *,
        source: str | None = None,
        start: int | None = None,
        end: int | None = None,
        topic: str | None = None,
        routing_key: str | None = None,
        line_ends: Sequence[int] | None = None,
    ) -> Result:
        """Deliver ``body`` (NDJSON, whole lines) until every part of it has a final answer.

        ``source``/``start``/``end``: the idempotence headers. ``line_ends``: the source
        offset after each line of ``body``, needed to split a batch whose body is not the
        source's bytes as they are (rewritten lines); without it, line ``i`` of the body is
        taken to end at ``start`` + its end in the body. `Stopped` on shutdown."""
        headers = dict(self.base_headers)
        if source is not None:
            headers["X-Logbridge-Source"] = source
        if topic:
            headers["X-Audit-Topic"] = topic
        if routing_key:
            headers["X-Audit-Routing-Key"] = routing_key
        ranged = source is not None and start is not None and end is not None
        piece = _Piece(body, start if ranged else None, end if ranged else None, line_ends)
        return self._deliver(piece, headers, source)

    def _deliver(self, piece: _Piece, headers: dict[str, str], source: str | None) -> Result:
        if piece.start is not None:
            headers = {**headers, "X-Logbridge-Range": f"{piece.start}-{piece.end}"}
        status, content, text = self._post(piece, headers, source)
        if 200 <= status < 300:
            duplicate = status == 200 and _field(content, "duplicate") is True
            return Result("duplicate" if duplicate else "stored", status=status)
        if status == 409:
            high_water = _field(content, "high_water")
            if isinstance(high_water, int) and not isinstance(high_water, bool) and high_water >= 0:
                return Result("high_water", high_water=high_water, status=status)
        if status == 413:
            halves = piece.halves()
            if halves is not None:
                self._log.info(
                    "collector %s: a batch of %d lines is too large (HTTP 413); sending it in two halves",
                    self.collectors.name,
                    piece.lines,
                )
                return self._deliver_halves(halves, headers, source, text)
        refused = Rejected(piece.body, piece.start, piece.end, piece.lines, status, text[:4096])
        return Result("rejected", status=status, response=refused.response, rejected=(refused,))

    def _deliver_halves(
        self, halves: tuple[_Piece, _Piece], headers: dict[str, str], source: str | None, text: str
    ) -> Result:
        results: list[Result] = []
        for half in halves:
            result = self._deliver(half, headers, source)
            results.append(result)
            if result.kind == "high_water":
                break
        rejected = tuple(piece for result in results for piece in result.rejected)
        kinds = {result.kind for result in results}
        kind: Kind
        if results[-1].kind == "high_water":
            return Result("high_water", results[-1].high_water, 409, rejected=rejected)
        if kinds == {"duplicate"}:
            kind = "duplicate"
        elif kinds == {"rejected"}:
            kind = "rejected"
        else:
            kind = "stored"
        return Result(kind, status=413, response=text[:4096], rejected=rejected)

    def _post(self, piece: _Piece, headers: dict[str, str], source: str | None) -> tuple[int, bytes, str]:
        """POST until an answer that retrying cannot change: (status, body, text).

        Each failure moves the batch to the next collector not yet tried in this round; once
        every collector has failed, it waits (see `logbridge.client.failover`)."""
        payload = self._encode(piece.body)
        pool = self.collectors
        what = f"range {piece.start}-{piece.end} of {source}" if piece.start is not None else "a batch"
        probe_from = self._failback(what)
        rounds = 0
        # This round's failed collectors → the Retry-After each gave (None: it gave none).
        failed: dict[int, float | None] = {}
        while True:
            if self.stop.is_set():
                raise Stopped("shutdown while a batch was being retried")
            index = pool.current
            wait: float | None = None
            self.last_error = None
            try:
                resp = self.client.post(pool.urls[index], content=payload, headers=headers)
            except httpx.TransportError as exc:
                self.last_problem = f"{type(exc).__name__}: {exc}"
                self.last_error = exc
            else:
                status = resp.status_code
                if status < 500 and status not in RETRYABLE_4XX:
                    self.all_failed = False
                    return status, resp.content, resp.text
                self.last_problem = f"HTTP {status} {resp.text[:200]!r}"
                wait = retry_after(resp.headers.get("Retry-After"))
            self.retries += 1
            pool.failed(index, self.last_problem)
            failed[index] = wait
            if probe_from is not None:
                # The preferred collector still fails: straight back to the one that worked.
                self.all_failed = False
                self._retried()
                self._switch(probe_from, f"still {self.last_problem}", what, logging.WARNING)
                probe_from = None
                continue
            untried = [i for i in pool.after(index) if i not in failed]
            if untried:
                self.all_failed = False
                self._retried()
                # Loud for the first failover; quiet while an outage of every collector goes on.
                level = logging.WARNING if rounds == 0 else self._retry_log_level
                self._switch(untried[0], self.last_problem, what, level)
                continue
            # Every collector failed in this round: wait, then begin with the one that may be
            # tried soonest (its Retry-After, else the backoff), round-robin order on a tie.
            rounds += 1
            backoff = backoff_delay(rounds, self.retry_initial, self.retry_max)
            order = pool.after(index)
            delays = [backoff if (said := failed[i]) is None else said for i in order]
            best = min(range(len(order)), key=lambda k: (delays[k], k))
            delay = min(delays[best], max(self.retry_max, 1.0) * 10)  # a Retry-After of a day is a typo
            following = order[best]
            failed = {}
            self.all_failed = True
            if len(pool) == 1:
                self._log.log(
                    self._retry_log_level,
                    "collector %s: %s; retry %d of %s in %.1fs",
                    pool.name,
                    self.last_problem,
                    rounds,
                    what,
                    delay,
                )
            else:
                self._log.log(
                    self._retry_log_level,
                    "collector %s: %s; all %d collectors failed (%s); retry %d of %s on %s in %.1fs",
                    pool.name,
                    self.last_problem,
                    len(pool),
                    "; ".join(f"{pool.names[i]}: {pool.problems[i]}" for i in order if i != index),
                    rounds,
                    what,
                    pool.names[following],
                    delay,
                )
            self._retried()
            self._switch(following, None, what, None)
            if self._wait(delay):
                raise Stopped("shutdown while a batch was being retried")

    def _failback(self, what: str) -> int | None:
        """Moves to the first collector when it is time to try it again; returns the index left
        (to come back to if it still fails), else None."""
        pool = self.collectors
        if not pool.failback_due(self._clock()):
            return None
        left = pool.current
        self._log.info(
            "collector %s: trying the preferred collector %s again for %s (failback after %.0fs)",
            pool.name,
            pool.names[0],
            what,
            self._clock() - (pool.away_since or 0.0),
        )
        self._switch(0, None, what, None)
        return left

    def _switch(self, index: int, why: str | None, what: str, level: int | None) -> None:
        """Moves to collector ``index``: counted, told to ``on_switch``, logged at ``level``
        (None: the caller has logged it)."""
        pool = self.collectors
        old = pool.name
        if index == pool.current:
            return
        pool.move(index, self._clock())
        if level is not None:
            self._log.log(level, "collector %s: %s; switching to %s for %s", old, why, pool.name, what)
        if self._on_switch is not None:
            self._on_switch(old, pool.name)

    def _retried(self) -> None:
        if self._on_retry is not None:
            self._on_retry()

    def _encode(self, body: bytes) -> bytes:
        if self.compression != "gzip":
            return body
        # wbits 31: a gzip member; zlib releases the GIL while it compresses.
        comp = zlib.compressobj(self.compression_level, zlib.DEFLATED, 31)
        return comp.compress(body) + comp.flush()

    def _wait(self, delay: float) -> bool:
        """Sleep ``delay``, calling ``on_wait`` every ``wait_slice``; True if asked to stop."""
        deadline = self._clock() + delay
        while not self.stop.is_set():
            left = deadline - self._clock()
            if left <= 0:
                return False
            if self._sleep(min(left, self._wait_slice)):
                return True
            if self._on_wait is not None and self._clock() < deadline:
                self._on_wait()
        return True


def _field(content: bytes, key: str) -> object:
    """``key`` of a JSON object answer, or None."""
    if content[:1] != b"{":
        return None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return data.get(key) if isinstance(data, dict) else None
