"""Crash test (issue 2, item 8): SIGKILL the collector three times under load, lose nothing, store nothing twice.

A client thread streams 50,000 sequence-numbered events as one NDJSON byte stream, in batches
that carry ``X-Logbridge-Source`` (stable) and ``X-Logbridge-Range`` (the batch's byte range in
the stream), retrying through connection errors the way a shipper does. Meanwhile the test
SIGKILLs the collector three times at different points of the stream and restarts it on the
same state dir and store. After a final SIGTERM, which must publish everything, every event is
in the store exactly once, in the hour partition of its own time.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

EVENTS = 50_000
BATCH_LINES = 500
SOURCE = "crash-test/design-node-1/audit.log"
# Each SIGKILL: after this fraction of the stream is acknowledged, this far into a request (as a
# fraction of the median request time). Late kills land between "durable" and "answered", the
# window where a retry must come back as a duplicate or a 409, never as a second copy.
KILLS = ((0.15, 0.5), (0.40, 0.93), (0.65, 0.99))

TZ = timezone(timedelta(hours=1))
T0 = datetime(2020, 2, 19, 13, 0, tzinfo=TZ)


def event_stream() -> tuple[bytes, list[int]]:
    """The client's NDJSON stream and the byte offset where each line starts (plus the end).

    Log4j file envelopes, as a DSS node writes them; event times span three hours (+0100), so the
    store gets several hour partitions.
    """
    lines = []
    for seq in range(EVENTS):
        t = T0 + timedelta(milliseconds=seq * 200)
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0100"
        user = f"user{seq % 7}"
        lines.append(
            orjson.dumps(
                {
                    "severity": "INFO",
                    "logger": "dku.audit.generic",
                    "message": {
                        "msgType": "dataset-read-data",
                        "authUser": user,
                        "projectKey": "CHURN_PREDICTION",
                        "datasetName": "customers",
                        "seq": seq,
                    },
                    "mdc": {"apiCall": "/dip/api/datasets/get-preview", "user": user},
                    "callTime": seq % 97,
                    "timestamp": stamp,
                }
            )
        )
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return b"\n".join(lines) + b"\n", offsets


@dataclass
class StreamingClient:
    """Sends the stream once, resuming wherever the collector says, through any number of crashes."""

    url: str
    stream: bytes
    offsets: list[int]
    kill: Callable[[], None]  # SIGKILLs the collector (called from a timer thread)
    kills: list[tuple[float, float]] = field(default_factory=lambda: list(KILLS))
    killed: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    acked: int = 0  # bytes of the stream the collector has acknowledged
    latencies: list[float] = field(default_factory=list)
    accepted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        try:
            self._send_all()
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.done.set()

    def _kill(self) -> None:
        self.kill()
        self.killed.release()

    def _send_all(self) -> None:
        line_at = {offset: i for i, offset in enumerate(self.offsets)}
        pos = 0
        batch = BATCH_LINES
        with httpx.Client(timeout=10.0) as client:
            while pos < len(self.stream) and not self.stop.is_set():
                first = line_at[pos]
                end = self.offsets[min(first + batch, len(self.offsets) - 1)]
                if self.kills and self.acked >= self.kills[0][0] * len(self.stream):
                    # Crossing a kill point: SIGKILL the collector part-way through the request
                    # about to go out. Scheduled here, so a fast stream cannot outrun it.
                    _, into_request = self.kills.pop(0)
                    delay = into_request * statistics.median(self.latencies[-20:] or [0.01])
                    threading.Timer(delay, self._kill).start()
                sent_at = time.monotonic()
                try:
                    response = client.post(
                        self.url,
                        content=self.stream[pos:end],
                        headers={
                            "Content-Type": "application/x-ndjson",
                            "X-Logbridge-Source": SOURCE,
                            "X-Logbridge-Range": f"{pos}-{end}",
                        },
                    )
                except httpx.TransportError:
                    # The collector died (or is restarting) mid-request: the batch may or may not
                    # be stored. Retry with a different batch size, so a stored batch comes back
                    # as a partial overlap (409) rather than always as an exact duplicate.
                    self.statuses["connection-error"] += 1
                    batch = BATCH_LINES * 2 if batch == BATCH_LINES else BATCH_LINES
                    time.sleep(0.02)
                    continue
                self.latencies.append(time.monotonic() - sent_at)
                if response.status_code == 200:
                    body = response.json()
                    assert body["invalid"] == 0, body
                    self.statuses["duplicate" if body["duplicate"] else "stored"] += 1
                    self.accepted += body["accepted"]
                    pos = self.acked = end
                elif response.status_code == 409:
                    high_water = response.json()["high_water"]
                    self.statuses["409"] += 1
                    assert pos < high_water <= end, (pos, end, response.text)
                    assert high_water in line_at, f"high_water {high_water} is not a line boundary"
                    pos = self.acked = high_water
                elif response.status_code == 503:
                    self.statuses["503"] += 1
                    time.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
                else:
                    raise AssertionError(
                        f"unexpected {response.status_code} for {pos}-{end}: {response.text}"
                    )


def stored_seqs(files: dict[str, list[dict[str, Any]]]) -> tuple[Counter[int], list[str]]:
    """How often each sequence number is in the store, and any line in the wrong partition."""
    seen: Counter[int] = Counter()
    misplaced: list[str] = []
    for rel, lines in files.items():
        partition = rel.rsplit("/", 1)[0]
        for line in lines:
            seen[line["clientEvent"]["seq"]] += 1
            t = datetime.strptime(line["envelope"]["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
            if partition != f"generic/default/{t:%Y/%m/%d/%H}":
                misplaced.append(f"{rel}: seq {line['clientEvent']['seq']} at {t.isoformat()}")
    return seen, misplaced


@pytest.mark.parametrize("durability", ["flush", "fsync"])
def test_sigkill_three_times_while_streaming_loses_nothing_and_duplicates_nothing(
    collector: Any, wait_for: Any, read_local_store: Any, durability: str
) -> None:
    stream, offsets = event_stream()
    # Small, young files: staging files roll and publish all through the stream, so kills also
    # land between a roll and its publication.
    destination = {
        "name": "store",
        "type": "filesystem",
        "url": None,  # filled in below: the collector's own home
        "path": "{topic}/{routing_key}/%Y/%m/%d/%H",
        "roll": {"max_bytes": "512KiB", "max_age": "1s"},
    }
    c = collector(durability=durability)
    c.stop()
    destination["url"] = c.config["destinations"][0]["url"]
    c.config["destinations"] = [destination]
    c.start()
    up = threading.Event()  # the collector has been (re)started and answered /healthz
    up.set()

    def kill() -> None:
        assert up.wait(timeout=30)
        up.clear()
        c.kill()

    client = StreamingClient(c.events_url, stream, offsets, kill=kill)
    thread = threading.Thread(target=client.run, name="streaming-client", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        for number in range(1, len(KILLS) + 1):
            assert client.killed.acquire(timeout=30), f"kill {number} never came: {client.error!r}"
            c.start()  # on the same state dir and store
            up.set()
        wait_for(client.done.is_set, timeout=45, what="the client to finish the stream")
    finally:
        client.stop.set()
        thread.join(timeout=10)
    assert client.error is None, f"client failed: {client.error!r}; statuses {dict(client.statuses)}"
    assert client.acked == len(stream)

    # The high-water mark survived the kills: replays are recognised, a partial overlap is refused.
    last = offsets[-BATCH_LINES - 1]
    replay = httpx.post(
        c.events_url,
        content=stream[last:],
        headers={"X-Logbridge-Source": SOURCE, "X-Logbridge-Range": f"{last}-{len(stream)}"},
    )
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"accepted": 0, "invalid": 0, "duplicate": True}
    overlap_start = offsets[-3]
    extra = stream[: offsets[1]].replace(b'"seq":0', f'"seq":{EVENTS}'.encode())  # must not be stored
    overlap = httpx.post(
        c.events_url,
        content=stream[overlap_start:] + extra,
        headers={
            "X-Logbridge-Source": SOURCE,
            "X-Logbridge-Range": f"{overlap_start}-{len(stream) + len(extra)}",
        },
    )
    assert overlap.status_code == 409, overlap.text
    assert overlap.json()["high_water"] == len(stream)

    c.stop()
    elapsed = time.monotonic() - started

    seen, misplaced = stored_seqs(read_local_store(c.store))
    missing = [s for s in range(EVENTS) if seen[s] == 0]
    doubled = {s: n for s, n in seen.items() if n > 1}
    assert not missing, (
        f"{len(missing)} events lost, first {missing[:10]}; client saw {dict(client.statuses)}"
    )
    assert not doubled, f"{len(doubled)} events stored twice or more, e.g. {list(doubled.items())[:10]}"
    assert sorted(seen) == list(range(EVENTS))
    assert not misplaced, misplaced[:10]
    # A batch stored just before a kill is acknowledged later as a duplicate or a 409, never twice.
    assert client.accepted <= EVENTS, (client.accepted, dict(client.statuses))
    assert c.starts == 5
    assert elapsed < 80, f"crash test took {elapsed:.1f}s"
    # Every line was valid: nothing went to the dead letter.
    dead = [p for p in c.dead_letter.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert not dead, f"dead letter not empty: {dead[:5]}"
    # The staging area was emptied by the final clean shutdown.
    leftover = [p for p in (c.home / "state").rglob("*.ndjson*") if p.is_file()]
    assert not leftover, f"staging files left after SIGTERM: {leftover[:5]}"
    print(f"crash test ({durability}): {elapsed:.1f}s, client statuses {dict(client.statuses)}")


# ------------------------------------------------------------------ journal compaction under load

COMPACTION_CLIENTS = 8
COMPACTION_BATCHES = 400  # per client; with 300 partitions a batch, the journal passes 32 MiB ~3 times
HOURS = 300


def hourly_batch(client: int, number: int) -> bytes:
    """One event in each of 300 hour partitions: a batch whose journal record is large."""
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    lines = []
    for hour in range(HOURS):
        seq = (client * COMPACTION_BATCHES + number) * HOURS + hour
        stamp = (t0 + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        lines.append(
            orjson.dumps({"msgType": "login", "authUser": f"user{client}", "seq": seq, "timestamp": stamp})
        )
    return b"\n".join(lines) + b"\n"


def test_journal_compaction_under_concurrent_load_fails_no_request_and_duplicates_nothing(
    collector: Any, read_local_store: Any
) -> None:
    """Many concurrent batches, each touching 300 partitions, push the journal through several
    compactions. Every request must be answered 200 (or 409/503, which the sender handles), and
    with retries, a SIGKILL and a restart the store holds every event exactly once."""
    c = collector(default_topic="generic")
    statuses: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()

    def send(client: int) -> None:
        source = f"compaction-test/client-{client}"
        starts = [0]  # byte offset where each batch starts in this client's stream
        number = 0
        with httpx.Client(timeout=30.0) as http:
            while number < COMPACTION_BATCHES:
                body = hourly_batch(client, number)
                start = starts[number]
                end = start + len(body)
                for _attempt in range(20):
                    response = http.post(
                        c.events_url,
                        content=body,
                        headers={"X-Logbridge-Source": source, "X-Logbridge-Range": f"{start}-{end}"},
                    )
                    with lock:
                        statuses[str(response.status_code)] += 1
                        if response.status_code not in (200, 409):
                            failures.append(
                                f"{source} {start}-{end}: {response.status_code} {response.text[:200]}"
                            )
                    if response.status_code in (200, 409):
                        break
                    time.sleep(0.05)  # a shipper retries the same range
                else:
                    raise AssertionError(f"{source}: batch {number} never accepted")
                if response.status_code == 409:
                    assert response.json()["high_water"] == end, response.text
                starts.append(end)
                number += 1

    threads = [threading.Thread(target=send, args=(k,), daemon=True) for k in range(COMPACTION_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "clients still sending after 60 s"
    generations = sorted(p.name for p in (c.home / "state").glob("journal-*.wal"))

    c.kill()
    c.start()
    c.stop()
    seen: Counter[int] = Counter(
        line["clientEvent"]["seq"] for lines in read_local_store(c.store).values() for line in lines
    )
    total = COMPACTION_CLIENTS * COMPACTION_BATCHES * HOURS
    doubled = sum(1 for n in seen.values() if n > 1)
    missing = total - len(seen)
    assert generations and generations[-1] > "journal-00000002", f"no compaction happened: {generations}"
    assert not failures, (
        f"{len(failures)} requests failed during journal compaction ({dict(statuses)}), e.g. {failures[:3]}; "
        f"store: {missing} events missing, {doubled} stored more than once"
    )
    assert missing == 0 and doubled == 0, f"{missing} events missing, {doubled} stored more than once"
