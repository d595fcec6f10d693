"""The collector's Azure Blob (``az://``, adlfs on Azurite) and Google Cloud Storage (``gs://``,
gcsfs on fake-gcs-server) destinations, end to end, as test_collector_s3.py does for S3.

A real ``logbridge collect`` process publishes to a real emulator; the tests read the store
back through fsspec and count every event:

- the DSS samples land under ``{topic}/{routing_key}/%Y/%m/%d/%H/`` of each event's own time;
- the emulator stopped mid-stream, the collector seen trying to upload meanwhile: every post is
  answered 200 (staged) or 503 (resent later by its sender, as the shipper does) and, once the
  emulator is back, every acknowledged event is in the store once;
- a SIGKILL while uploads hang (the emulator frozen: it takes connections and answers nothing)
  leaves the staging files; the next start uploads them again under the same names, so every
  event is there once — whether the store had kept the cut upload or not.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from .dsssamples import PARTITION, PREFIX, expected_from_samples, post, sample_files, stored_counter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def destination(store: Any, **extra: Any) -> dict[str, Any]:
    dest = {
        "name": f"{store.protocol}-store",
        "url": store.url(PREFIX),
        "storage_options": store.storage_options(),
        "path": PARTITION,
        "roll": {"max_bytes": "64MiB", "max_age": "1s"},
    }
    dest.update(extra)
    return dest


class DeadPort:
    """The stopped emulator's port, held while it is down so that the test sees the collector
    try: each connection is reset as soon as it is taken (a store whose process is gone behind
    its address, as a load balancer with no backend answers), and counted. Polled, no thread."""

    def __init__(self, port: int):
        self.port = port
        self.count = 0

    def __enter__(self) -> DeadPort:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.setblocking(False)
        return self

    def attempts(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return self.count
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # RST
            self.count += 1

    def __exit__(self, *exc: object) -> None:
        self.attempts()  # reset what waits in the backlog too
        self.sock.close()


def metric(c: Any, name: str, **labels: str) -> float:
    """One sample of the collector's /metrics (0 when absent)."""
    text = httpx.get(f"{c.base_url}/metrics", timeout=10).text
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_samples_are_published_to_event_hour_partitions(
    collector: Any, object_store: Any, wait_for: Any
) -> None:
    files = sample_files()
    expected = expected_from_samples(files)
    c = collector(destinations=[destination(object_store)])
    for path in files:
        body = path.read_bytes()
        result = post(c.events_url, body, **{"X-Logbridge-Node": path.parts[-3]})
        assert result == {"accepted": body.count(b"\n"), "invalid": 0, "duplicate": False}, path

    # Rolled by age and published while the collector runs, not only at shutdown. Published
    # objects never change, so each poll reads only the new ones.
    total = sum(expected.values())
    seen: dict[str, int] = {}
    root = f"{object_store.bucket}/{PREFIX}"

    def published() -> int:
        fs = object_store.filesystem()
        for key, info in fs.find(root, detail=True).items():  # see read_store: files only
            if key not in seen and info["type"] == "file":
                seen[key] = fs.cat_file(key).count(b"\n")
        return sum(seen.values())

    wait_for(lambda: published() >= total, timeout=60, what=f"{total} events published while running")
    c.stop()

    stored_files = object_store.read_store(PREFIX)
    stored = stored_counter(stored_files)
    assert stored == expected, (
        f"missing {sum((expected - stored).values())}, unexpected {sum((stored - expected).values())}"
    )
    hours = {tuple(rel.split("/")[2:6]) for rel in stored_files}
    assert len(hours) > 48
    api_keys = {rel.split("/")[1] for rel in stored_files if rel.startswith("apinode-query/")}
    assert api_keys == {"churn-scoring", "fraud-detection", "customer-lookup", "pricing"}
    one = next(line for lines in stored_files.values() for line in lines if line["topic"] == "generic")
    assert list(one)[:3] == ["clientEvent", "origAddress", "serverTimestamp"]


# ------------------------------------------------------------------- a sender of numbered events


class Sender:
    """Posts numbered events as a shipper does: each batch a byte range of one source, a 503'd
    batch kept and resent with the same range (the collector stores a range once)."""

    def __init__(self, url: str, source: str, pad: int = 0):
        self.url = url
        self.source = source
        self.pad = "x" * pad
        self.offset = 0
        self.next_seq = 0
        self.acknowledged: list[int] = []
        self.refused: list[tuple[int, int, bytes, list[int]]] = []  # (start, end, body, seqs)
        self.statuses: Counter[int] = Counter()

    def batch(self, n: int, hour: int = 10) -> None:
        seqs = list(range(self.next_seq, self.next_seq + n))
        self.next_seq += n
        body = b"".join(
            orjson.dumps(
                {
                    "timestamp": f"2026-03-01T{hour:02d}:00:00.000+0000",
                    "logger": "dku.audit.generic",
                    "message": {"msgType": "test", "seq": seq, "pad": self.pad},
                }
            )
            + b"\n"
            for seq in seqs
        )
        start, self.offset = self.offset, self.offset + len(body)
        self._send(start, self.offset, body, seqs)

    def resend_refused(self) -> None:
        refused, self.refused = self.refused, []
        for start, end, body, seqs in refused:
            self._send(start, end, body, seqs)

    def _send(self, start: int, end: int, body: bytes, seqs: list[int]) -> None:
        response = httpx.post(
            self.url,
            content=body,
            headers={
                "Content-Type": "application/x-ndjson",
                "X-Logbridge-Source": self.source,
                "X-Logbridge-Range": f"{start}-{end}",
            },
            timeout=60,
        )
        self.statuses[response.status_code] += 1
        if response.status_code == 503:
            assert response.headers.get("retry-after"), "a 503 without Retry-After"
            self.refused.append((start, end, body, seqs))
            return
        assert response.status_code == 200, f"{response.status_code}: {response.text}"
        result = response.json()
        if not result["duplicate"]:
            assert result["accepted"] == len(seqs), result
        self.acknowledged.extend(seqs)


def stored_seqs(store: Any) -> Counter[int]:
    return Counter(
        line["clientEvent"]["seq"] for lines in store.read_store(PREFIX).values() for line in lines
    )


def assert_each_once(store: Any, seqs: list[int]) -> None:
    stored = stored_seqs(store)
    missing = sorted(set(seqs) - set(stored))
    doubled = sorted(seq for seq, n in stored.items() if n > 1)
    extra = sorted(set(stored) - set(seqs))
    assert not (missing or doubled or extra), (
        f"{len(missing)} missing {missing[:10]}, {len(doubled)} stored twice {doubled[:10]}, "
        f"{len(extra)} never acknowledged {extra[:10]}"
    )


# ------------------------------------------------------------------------------------- outage


@pytest.mark.parametrize("protocol", ["az", "gs"])
def test_an_emulator_stopped_mid_stream_loses_nothing(
    protocol: str, collector: Any, own_object_store: Any, wait_for: Any
) -> None:
    store = own_object_store(protocol)
    c = collector(destinations=[destination(store)])
    sender = Sender(c.events_url, f"outage-{protocol}")
    for _ in range(5):
        sender.batch(20)
    wait_for(lambda: sum(stored_seqs(store).values()) >= 100, 30, "the first events published")

    store.emulator.stop()
    with DeadPort(store.emulator.port) as dead:
        for hour in range(11, 16):  # a new hour partition per batch: a new file to publish each
            sender.batch(20, hour=hour)
        # The collector met the outage: it rolled files and tried to upload one while the store
        # was down (not only after it came back).
        wait_for(
            lambda: (
                dead.attempts() >= 1
                and metric(c, "logbridge_files_waiting", destination=f"{protocol}-store") >= 1
            ),
            60,
            "an upload tried during the outage",
            interval=0.1,
        )
    assert set(sender.statuses) <= {200, 503}, sender.statuses

    store.emulator.start()  # same port, same data
    # Refused batches are sent again until taken, as a shipper does (the destination stays
    # refused until one of its publications succeeds).
    wait_for(
        lambda: sender.resend_refused() or not sender.refused,
        90,
        "the refused batches taken once the store is back",
        interval=0.5,
    )
    for _ in range(5):
        sender.batch(20)
    wait_for(
        lambda: sender.resend_refused() or not sender.refused, 90, "the last batches taken", interval=0.5
    )
    total = sender.next_seq
    wait_for(lambda: sum(stored_seqs(store).values()) >= total, 90, f"all {total} events published")
    c.stop()
    assert sorted(sender.acknowledged) == list(range(total))
    assert_each_once(store, sender.acknowledged)


# ------------------------------------------------------------------- SIGKILL during an upload


def connections_to(pid: int, port: int) -> list[int]:
    """Bytes waiting to be sent (tx_queue) on each established TCP connection of process ``pid``
    to 127.0.0.1:``port``: an upload under way (the collector talks to the store for nothing else)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        match = re.fullmatch(r"socket:\[(\d+)\]", target)
        if match:
            inodes.add(match.group(1))
    queues = []
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, queue, inode = fields[2], fields[3], fields[4], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
            queues.append(int(queue.split(":")[0], 16))
    return queues


def staging_files(c: Any) -> list[str]:
    root = c.home / "state" / "staging"
    return sorted(p.name for p in root.rglob("*.ndjson") if "_dead-letter" not in p.parts)


@pytest.mark.parametrize("protocol", ["az", "gs"])
def test_an_upload_cut_by_sigkill_is_redone_at_start(
    protocol: str, collector: Any, own_object_store: Any, wait_for: Any
) -> None:
    store = own_object_store(protocol)
    c = collector(destinations=[destination(store)])
    store.emulator.freeze()  # takes connections, answers nothing: uploads hang mid-way
    sender = Sender(c.events_url, f"kill-{protocol}", pad=1000)
    hours = range(4)
    for hour in hours:  # ~2 MiB per hour partition: more than loopback's socket buffers hold
        for _ in range(2):
            sender.batch(1000, hour=hour)
    assert not sender.refused, sender.statuses
    staged = staging_files(c)  # a big batch is staged in a file of its own: two per hour here
    assert len(hours) <= len(staged) <= 8, staged  # 8: the uploads a destination runs at once
    assert c.process is not None
    pid = c.process.pid
    queued = wait_for(
        lambda: (q := connections_to(pid, store.emulator.port)) and len(q) >= len(staged) and q,
        30,
        "every file's upload under way",
        interval=0.1,
    )
    c.kill()
    assert staging_files(c) == staged, "the killed uploads' staging files must stay for the next start"
    # At least one upload was cut part-way (its body not all sent): the store must keep nothing
    # of it. The others sent everything and wait for an answer the store may still act on.
    assert any(q > 0 for q in queued), f"no upload was cut part-way: {queued}"

    store.emulator.thaw()
    c.start()
    total = sender.next_seq
    wait_for(lambda: sum(stored_seqs(store).values()) >= total, 60, f"all {total} events published")
    c.stop()
    assert staging_files(c) == []
    assert_each_once(store, list(range(total)))
    published = sorted(rel.rsplit("/", 1)[1] for rel in store.read_store(PREFIX))
    assert published == staged, "the redone uploads must reuse the staging files' names"
