"""The collector's S3 destination (issue 2, item 5) against moto in server mode, through s3fs.

The samples of four DSS nodes are posted to a real collector process whose destination is
``s3://audit-store/audit``; the objects must appear under ``{topic}/{routing_key}/%Y/%m/%d/%H/``
of each event's own time (UTC), hold every event once, and keep the envelope around it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from .dsssamples import PARTITION, PREFIX, SAMPLES, expected_from_samples, post, sample_files, stored_counter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def s3_destination(s3: Any, **extra: Any) -> dict[str, Any]:
    destination = {
        "name": "s3-store",
        "type": "filesystem",
        "url": f"s3://{s3.bucket}/{PREFIX}",
        "storage_options": s3.storage_options(),
        "topics": "all",
        "routing_keys": "all",
        "path": PARTITION,
        "roll": {"max_bytes": "64MiB", "max_age": "5m"},
    }
    destination.update(extra)
    return destination


def test_samples_are_uploaded_to_event_hour_partitions(collector: Any, s3_server: Any, wait_for: Any) -> None:
    files = sample_files()
    expected = expected_from_samples(files)
    c = collector(
        destinations=[s3_destination(s3_server, roll={"max_bytes": "64MiB", "max_age": "1s"})],
        env=s3_server.env(),
    )
    for path in files:
        body = path.read_bytes()
        result = post(c.events_url, body, **{"X-Logbridge-Node": path.parts[-3]})
        assert result == {"accepted": body.count(b"\n"), "invalid": 0, "duplicate": False}, path

    # Rolled by age and uploaded while the collector runs, not only at shutdown. Published
    # objects never change, so each poll reads only the new ones.
    total = sum(expected.values())
    seen: dict[str, int] = {}

    def uploaded() -> int:
        fs = s3_server.filesystem()
        # detail: s3fs's find of a prefix with nothing under it yet answers the prefix itself
        # when the first objects land between its listing and its look-up of that path.
        for key, info in fs.find(f"{s3_server.bucket}/{PREFIX}", detail=True).items():
            if key not in seen and info["type"] == "file":
                seen[key] = fs.cat_file(key).count(b"\n")
        return sum(seen.values())

    wait_for(
        lambda: uploaded() >= total, timeout=60, what=f"{total} events uploaded while running", interval=0.5
    )
    c.stop()

    stored_files = s3_server.read_store(PREFIX)
    stored = stored_counter(stored_files)
    assert stored == expected, (
        f"missing {sum((expected - stored).values())}, unexpected {sum((stored - expected).values())}: "
        f"{list((expected - stored).items())[:2]} / {list((stored - expected).items())[:2]}"
    )
    by_topic = Counter(topic for (_, topic, _), n in stored.items() for _ in range(n))
    assert set(by_topic) == {
        "generic",
        "generic-failure",
        "authfail",
        "apinode-query",
        "compute-resource-usage",
        "apicalls",
    }
    # API-node queries are partitioned by their service; nothing else has a routing key.
    api_keys = {rel.split("/")[1] for rel in stored_files if rel.startswith("apinode-query/")}
    assert api_keys == {"churn-scoring", "fraud-detection", "customer-lookup", "pricing"}
    assert {rel.split("/")[1] for rel in stored_files if not rel.startswith("apinode-query/")} == {"default"}
    # Three days of hours, each file in exactly one hour partition.
    hours = {tuple(rel.split("/")[2:6]) for rel in stored_files}
    assert {h[:3] for h in hours} >= {
        ("2020", "02", "16"),
        ("2020", "02", "17"),
        ("2020", "02", "18"),
        ("2020", "02", "19"),
    }
    assert len(hours) > 48

    # The stored line is lossless: the log4j envelope around each event is kept.
    one = next(line for lines in stored_files.values() for line in lines if line["topic"] == "generic")
    assert list(one)[:3] == ["clientEvent", "origAddress", "serverTimestamp"]
    assert one["origAddress"] == "127.0.0.1"
    assert {"severity", "logger", "mdc", "callTime", "timestamp"} <= set(one["envelope"])
    assert one["envelope"]["mdc"]["user"] == one["clientEvent"]["authUser"]


def test_bare_log4j2_and_chained_events_reach_s3(collector: Any, s3_server: Any) -> None:
    """The README's curl example: bare events take the header's topic, the other envelopes their own."""
    c = collector(destinations=[s3_destination(s3_server)], env=s3_server.env())
    body = (SAMPLES / "bare-events.ndjson").read_bytes()
    result = post(c.events_url, body, **{"X-Audit-Topic": "generic"})
    assert result == {"accepted": 7, "invalid": 0, "duplicate": False}
    c.stop()

    stored = s3_server.read_store(PREFIX)
    lines = {line["clientEvent"]["msgType"]: (rel, line) for rel, ls in stored.items() for line in ls}
    assert sorted(lines) == sorted(
        [
            "login",
            "dataset-read-data",
            "scenario-run",
            "project-export-download",
            "logout",
            "flow-job-start",
            "prediction-query",
        ]
    )
    rel, login = lines["login"]
    assert rel.startswith("generic/default/2020/02/19/08/")  # 09:01 +0100
    rel, job = lines[
        "flow-job-start"
    ]  # log4j 2: topic from loggerName, time from instant, message was a string
    assert rel.startswith("generic/default/2020/02/19/10/")  # epochSecond 1582106400 = 10:00 UTC
    assert job["envelope"]["thread"] == "qtp-http-42"
    assert job["envelope"]["contextMap"]["user"] == "dmitri.ivanov"
    rel, chained = lines["prediction-query"]  # Event Server envelope: its own fields kept
    assert rel.startswith("generic/churn-scoring/2020/03/17/18/")
    assert chained["origAddress"] == "10.0.14.5"
    assert chained["serverTimestamp"] == "2020-03-17T19:15:30.609+0100"


def test_staging_left_by_sigkill_is_uploaded_after_restart(
    collector: Any, s3_server: Any, wait_for: Any
) -> None:
    """Acknowledged events staged on local disk survive a SIGKILL and reach S3 (gzip) after restart."""
    path = SAMPLES / "api-node-1" / "audit" / "apinode-query.log"
    body = path.read_bytes()
    expected = expected_from_samples([path])
    c = collector(destinations=[s3_destination(s3_server, compression="gzip")], env=s3_server.env())
    result = post(
        c.events_url,
        body,
        **{"X-Logbridge-Source": "api-node-1/apinode-query.log", "X-Logbridge-Range": f"0-{len(body)}"},
    )
    assert result["accepted"] == sum(expected.values())
    c.kill()
    assert s3_server.read_store(PREFIX) == {}, "nothing should be uploaded before max_age or shutdown"

    c.start()
    # The retry of the acknowledged batch after the crash is a duplicate, not a second copy.
    again = post(
        c.events_url,
        body,
        **{"X-Logbridge-Source": "api-node-1/apinode-query.log", "X-Logbridge-Range": f"0-{len(body)}"},
    )
    assert again == {"accepted": 0, "invalid": 0, "duplicate": True}
    c.stop()

    stored_files = s3_server.read_store(PREFIX)
    assert stored_files and all(rel.endswith(".ndjson.gz") for rel in stored_files), sorted(stored_files)[:5]
    assert stored_counter(stored_files) == expected


def test_dss_style_day_partitions_without_routing_key_folders(
    collector: Any, s3_server: Any, read_local_store: Any
) -> None:
    """DSS parity keys on an object store: ``partitioning: day``, ``folder_by_routing_key: false``,
    and a destination that only takes API-node queries of two services."""
    destination = s3_destination(
        s3_server, partitioning="day", folder_by_routing_key=False, routing_keys=["churn-scoring", "pricing"]
    )
    del destination["path"]
    c = collector(destinations=[destination], env=s3_server.env())
    path = SAMPLES / "api-node-2" / "audit" / "apinode-query.log"
    body = path.read_bytes()
    post(c.events_url, body)
    c.stop()

    stored = s3_server.read_store(PREFIX)
    wanted = {"churn-scoring", "pricing"}
    expected: Counter[tuple[str, bytes]] = Counter()
    for raw in body.splitlines():
        line = orjson.loads(raw)
        if line["message"]["routingKey"] in wanted:
            t = datetime.strptime(line["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
            expected[
                (f"apinode-query/{t:%Y/%m/%d}", orjson.dumps(line["message"], option=orjson.OPT_SORT_KEYS))
            ] += 1
    got: Counter[tuple[str, bytes]] = Counter(
        (rel.rsplit("/", 1)[0], orjson.dumps(line["clientEvent"], option=orjson.OPT_SORT_KEYS))
        for rel, lines in stored.items()
        for line in lines
    )
    assert got == expected
    assert {rel.rsplit("/", 1)[0] for rel in stored} == {
        "apinode-query/2020/02/16",
        "apinode-query/2020/02/17",
        "apinode-query/2020/02/18",
        "apinode-query/2020/02/19",
    }
    # The other services' queries: no destination takes them, so the dead letter has them, with why.
    dead = [line for lines in read_local_store(c.dead_letter).values() for line in lines]
    assert len(dead) == body.count(b"\n") - sum(expected.values())
    assert {line["reason"] for line in dead} == {"unrouted"}
    assert {line["storedLine"]["routingKey"] for line in dead} == {"fraud-detection", "customer-lookup"}


def test_objects_roll_at_max_bytes(collector: Any, s3_server: Any) -> None:
    """``roll.max_bytes`` bounds object size: once a staging file has reached it, the next batch
    goes to a new file. (A batch is never split, so a file may pass the limit by one batch.)"""
    limit = 64 * 1024
    c = collector(
        destinations=[s3_destination(s3_server, roll={"max_bytes": "64KiB", "max_age": "5m"})],
        env=s3_server.env(),
    )
    lines = (SAMPLES / "design-node-1" / "audit" / "audit.log").read_bytes().splitlines(keepends=True)
    # Twenty batches of ~16 KiB of stored lines into one hour partition, sent back to back.
    template = orjson.loads(lines[0])
    largest_batch = 0
    for batch in range(20):
        body = b""
        for i in range(40):
            template["message"]["seq"] = batch * 40 + i
            template["timestamp"] = "2020-02-19T10:15:00.000+0100"
            body += orjson.dumps(template) + b"\n"
        largest_batch = max(largest_batch, len(body))
        assert post(c.events_url, body)["accepted"] == 40
    c.stop()

    stored = s3_server.read_store(PREFIX)
    sizes = {rel: sum(len(orjson.dumps(line)) + 1 for line in lines) for rel, lines in stored.items()}
    assert sum(len(lines) for lines in stored.values()) == 800
    # Each stored line is bigger than the incoming one (envelope, server fields): allow 2x a batch.
    too_big = {rel: size for rel, size in sizes.items() if size > limit + 2 * largest_batch}
    assert not too_big, f"objects over max_bytes ({limit}) by more than a batch: {too_big}"
    assert len(stored) >= sum(sizes.values()) // (limit + 2 * largest_batch)
