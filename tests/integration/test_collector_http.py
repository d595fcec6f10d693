"""The collector over real sockets, as a real process: DESIGN.md §4 end to end."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import zstandard

LOG4J_LINE = (
    '{"severity":"INFO","logger":"dku.audit.generic","message":{"msgType":"login","authUser":"admin"},'
    '"mdc":{"apiCall":"/api/projects/get-summary","user":"admin"},"callTime":9,'
    '"timestamp":"2020-02-19T16:05:02.441+0100"}'
)
FAST_ROLL = {"max_bytes": "64MiB", "max_age": "300ms"}


def dest(home_url: str, **kw: Any) -> dict[str, Any]:
    return {"name": "store", "url": home_url, "roll": FAST_ROLL, **kw}


def all_lines(files: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [line for lines in files.values() for line in lines]


@pytest.fixture
def fast(collector: Callable[..., Any], tmp_path: Path) -> Any:
    """A collector that publishes within a fraction of a second."""
    return collector(destinations=[dest(f"file://{tmp_path / 'fast-store'}")])


def test_ndjson_log4j_lands_in_event_hour_partition(fast: Any, wait_for: Any, read_local_store: Any) -> None:
    r = httpx.post(
        fast.events_url,
        content=(LOG4J_LINE + "\n") * 3,
        headers={"content-type": "application/x-ndjson", "x-logbridge-node": "design-1"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 3, "invalid": 0, "duplicate": False}
    files = wait_for(lambda: read_local_store(fast.store), 10, "a published file")
    (path,) = files
    assert path.startswith("generic/default/2020/02/19/15/")  # event time, in UTC
    line = files[path][0]
    assert line["clientEvent"] == {"msgType": "login", "authUser": "admin"}
    assert line["envelope"]["mdc"]["user"] == "admin" and line["envelope"]["callTime"] == 9
    assert line["origAddress"] == "127.0.0.1"
    assert line["node"] == "design-1"  # X-Logbridge-Node, for per-node reports


def test_log4j2_style_post_json_crlf_charset_and_gzip_zstd(
    fast: Any, wait_for: Any, read_local_store: Any
) -> None:
    l2 = {
        "loggerName": "dku.audit.apinode-query",
        "level": "INFO",
        "thread": "main",
        "timeMillis": 1584468930609,
        "contextMap": {},
        "message": json.dumps({"msgType": "prediction-query", "routingKey": "churn"}),
    }
    pretty = json.dumps(l2, indent=2).replace("\n", "\r\n").encode()
    r = httpx.post(
        fast.events_url, content=pretty, headers={"content-type": "application/json; charset=UTF-8"}
    )
    assert r.json()["accepted"] == 1, r.text
    body = (LOG4J_LINE + "\r\n").encode() * 2
    r = httpx.post(fast.events_url, content=gzip.compress(body), headers={"content-encoding": "gzip"})
    assert r.json()["accepted"] == 2
    r = httpx.post(
        fast.events_url,
        content=zstandard.ZstdCompressor().compress(body),
        headers={"content-encoding": "zstd"},
    )
    assert r.json()["accepted"] == 2
    r = httpx.post(fast.events_url, content=json.dumps([json.loads(LOG4J_LINE)] * 2))
    assert r.json()["accepted"] == 2
    files = wait_for(
        lambda: (f := read_local_store(fast.store)) and len(all_lines(f)) == 7 and f, 10, "7 lines"
    )
    api = [p for p in files if p.startswith("apinode-query/churn/2020/03/17/")]
    assert api, sorted(files)


def test_bad_lines_go_to_dead_letter_and_good_ones_are_stored(
    collector: Callable[..., Any], tmp_path: Path, wait_for: Any, read_local_store: Any
) -> None:
    c = collector(destinations=[dest(f"file://{tmp_path / 's'}")], limits={"max_event_bytes": "2KiB"})
    deep = '{"a":' * 80 + "1" + "}" * 80
    body = "\n".join(
        [
            LOG4J_LINE,
            "{not json",
            deep,
            '{"msgType":"no-topic-anywhere"}',
            '{"msgType":"x","topic":"generic","pad":"' + "x" * 3000 + '"}',
            "[1,2]",
            LOG4J_LINE,
        ]
    ).encode()
    body += b'\n{"msgType":"\xff\xfe","topic":"generic"}\n'
    r = httpx.post(c.events_url, content=body)
    assert r.status_code == 200
    answer = r.json()
    assert answer["accepted"] == 2 and answer["invalid"] == 6
    assert answer["reasons"] == {
        "invalid-json": 1,
        "too-deep": 1,
        "no-topic": 1,
        "too-large": 1,
        "not-an-object": 1,
        "invalid-utf8": 1,
    }
    c.stop()
    dead = all_lines(read_local_store(c.dead_letter))
    assert sorted(d["reason"] for d in dead) == sorted(answer["reasons"])
    utf8 = next(d for d in dead if d["reason"] == "invalid-utf8")
    assert "rawBase64" in utf8  # the bytes are kept exactly
    assert len(all_lines(read_local_store(c.store))) == 2


def test_auth_401_writes_authfail_event_and_never_logs_token(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = collector(
        auth={"tokens": [{"name": "node-a", "token_env": "LB_TEST_TOKEN"}]},
        env={"LB_TEST_TOKEN": "tok-SECRET-123"},
        destinations=[dest(f"file://{tmp_path / 's'}")],
    )
    assert httpx.post(c.events_url, content=LOG4J_LINE).status_code == 401
    r = httpx.post(c.events_url, content=LOG4J_LINE, headers={"authorization": "Bearer wrong-SECRET-456"})
    assert r.status_code == 401
    r = httpx.post(c.events_url, content=LOG4J_LINE, headers={"authorization": "Bearer tok-SECRET-123"})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    c.stop()
    lines = all_lines(read_local_store(c.store))
    fails = [line for line in lines if line["topic"] == "authfail"]
    assert sorted(f["clientEvent"]["reason"] for f in fails) == ["bad-token", "missing-token"]
    everything = "".join(
        p.read_text() for p in c.home.rglob("*") if p.is_file() and p.suffix in (".log", ".ndjson")
    )
    assert "SECRET" not in everything


def test_limits_413_and_415(collector: Callable[..., Any], tmp_path: Path) -> None:
    c = collector(destinations=[dest(f"file://{tmp_path / 's'}")], limits={"max_body_bytes": "64KiB"})
    r = httpx.post(c.events_url, content=(LOG4J_LINE + "\n").encode() * 400)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    bomb = gzip.compress(b"\n" * (50 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    r = httpx.post(c.events_url, content=bomb, headers={"content-encoding": "gzip"})
    assert r.status_code == 413
    r = httpx.post(c.events_url, content=b"xx", headers={"content-encoding": "br"})
    assert r.status_code == 415
    assert httpx.get(c.base_url + "/events").status_code == 405


def test_idempotent_ranges_survive_restart(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = collector(destinations=[dest(f"file://{tmp_path / 's'}")])
    hdr = {"x-logbridge-source": "node-a:file-1"}
    body = (LOG4J_LINE + "\n").encode()
    assert httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "0-100"}).json() == {
        "accepted": 1,
        "invalid": 0,
        "duplicate": False,
    }
    dup = httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "0-100"})
    assert dup.status_code == 200 and dup.json() == {"accepted": 0, "invalid": 0, "duplicate": True}
    c.kill()
    c.start()
    assert httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "0-100"}).json()[
        "duplicate"
    ]
    overlap = httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "50-150"})
    assert overlap.status_code == 409 and overlap.json()["high_water"] == 100
    assert (
        httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "100-200"}).json()[
            "accepted"
        ]
        == 1
    )
    bad = httpx.post(c.events_url, content=body, headers={**hdr, "x-logbridge-range": "9-1"})
    assert bad.status_code == 400
    c.stop()
    assert len(all_lines(read_local_store(c.store))) == 2


def test_routing_filters_several_destinations_and_unrouted(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = collector(
        destinations=[
            dest(f"file://{tmp_path / 'api'}", name="api", topics=["apinode-query"], routing_keys=["churn"]),
            dest(f"file://{tmp_path / 'all'}", name="all", topics=["apinode-query", "generic"]),
            dest(
                f"file://{tmp_path / 'daily'}",
                name="daily",
                partitioning="day",
                folder_by_routing_key=False,
                compression="gzip",
                partition_time="server",
            ),
        ]
    )
    events = [
        {"msgType": "prediction-query", "topic": "apinode-query", "routingKey": "churn"},
        {"msgType": "prediction-query", "topic": "apinode-query", "routingKey": "fraud"},
        {"msgType": "login", "topic": "generic"},
    ]
    r = httpx.post(c.events_url, content=b"\n".join(orjson.dumps(e) for e in events))
    assert r.json()["accepted"] == 3
    r = httpx.post(
        c.events_url, content=b'{"msgType":"x"}', headers={"x-audit-topic": "compute-resource-usage"}
    )
    assert r.json()["accepted"] == 1  # the 'daily' destination takes every topic
    c.stop()
    api = read_local_store(tmp_path / "api")
    assert [line["routingKey"] for line in all_lines(api)] == ["churn"]
    assert len(all_lines(read_local_store(tmp_path / "all"))) == 3
    daily = read_local_store(tmp_path / "daily")
    today = time.strftime("%Y/%m/%d", time.gmtime())
    assert all(p.endswith(".ndjson.gz") and p.split("/", 1)[1].startswith(today) for p in daily), daily
    assert len(all_lines(daily)) == 4


def test_event_no_destination_takes_goes_to_dead_letter(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = collector(destinations=[dest(f"file://{tmp_path / 's'}", topics=["generic"])])
    r = httpx.post(c.events_url, content=b'{"msgType":"x","topic":"authfail"}')
    assert r.json()["accepted"] == 0 or r.json()["accepted"] == 1
    c.stop()
    dead = all_lines(read_local_store(c.dead_letter))
    assert [d["reason"] for d in dead] == ["unrouted"]
    assert dead[0]["storedLine"]["clientEvent"]["msgType"] == "x"


def test_hostile_topics_stay_inside_the_store(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    root = tmp_path / "jail" / "store"
    c = collector(destinations=[dest(f"file://{root}")])
    hostile = ["..", "../../etc", "/abs", "a\\b", "nul\0byte", "ctl\x01\n", ".hidden", "..\\..\\x"]
    body = b"\n".join(orjson.dumps({"msgType": "x", "topic": t, "routingKey": t}) for t in hostile)
    assert httpx.post(c.events_url, content=body).json()["accepted"] == len(hostile)
    c.stop()
    outside = [p for p in (tmp_path / "jail").rglob("*") if p.is_file() and root not in p.parents]
    assert outside == []
    stored = all_lines(read_local_store(root))
    assert sorted(line["topic"] for line in stored) == sorted(hostile)  # the real topic is kept in the line


def test_storage_failure_is_503_with_retry_after_and_nothing_lost(
    collector: Callable[..., Any], tmp_path: Path, wait_for: Any, read_local_store: Any
) -> None:
    root = tmp_path / "s"
    c = collector(destinations=[dest(f"file://{root}")])
    root.parent.mkdir(exist_ok=True)
    # The store root becomes a plain file: publishing fails, even for root (chmod would not stop root).
    if root.exists():
        shutil.rmtree(root)
    root.write_text("not a directory")
    assert httpx.post(c.events_url, content=LOG4J_LINE).status_code == 200  # durable in staging
    r = wait_for(
        lambda: (x := httpx.post(c.events_url, content=LOG4J_LINE)).status_code == 503 and x,
        10,
        "503 once publishing fails",
    )
    assert r.headers["retry-after"]
    assert httpx.get(c.base_url + "/healthz").status_code == 503
    root.unlink()
    wait_for(lambda: httpx.post(c.events_url, content=LOG4J_LINE).status_code == 200, 10, "recovery")
    c.stop()
    n = len(all_lines(read_local_store(root)))
    assert n >= 2  # every acknowledged event is there: the first, and the one after recovery


def test_staging_failure_is_503(collector: Callable[..., Any], tmp_path: Path) -> None:
    c = collector(destinations=[dest(f"file://{tmp_path / 's'}")])
    staging = c.home / "state" / "staging" / "store"
    shutil.rmtree(staging)
    staging.write_text("blocks the staging directory")
    r = httpx.post(c.events_url, content=LOG4J_LINE)
    assert r.status_code == 503 and r.headers["retry-after"]
    staging.unlink()
    assert httpx.post(c.events_url, content=LOG4J_LINE).status_code == 200


def test_fsync_durability_and_metrics(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    c = collector(durability="fsync", destinations=[dest(f"file://{tmp_path / 's'}")])
    with httpx.Client() as client:
        for i in range(20):
            r = client.post(
                c.events_url, content=orjson.dumps({"msgType": "m", "topic": "generic", "seq": i})
            )
            assert r.json()["accepted"] == 1
        metrics = client.get(c.base_url + "/metrics").text
    assert 'logbridge_events_in_total{topic="generic"} 20.0' in metrics
    assert "logbridge_request_seconds_bucket" in metrics
    c.kill()  # acknowledged under fsync: a SIGKILL loses nothing
    c.start()
    c.stop()
    assert sorted(line["clientEvent"]["seq"] for line in all_lines(read_local_store(c.store))) == list(
        range(20)
    )


def test_group_commit_serves_concurrent_requests_with_shared_fsyncs(
    collector: Callable[..., Any], tmp_path: Path, read_local_store: Any
) -> None:
    import asyncio
    import re

    c = collector(durability="fsync", destinations=[dest(f"file://{tmp_path / 's'}")])

    async def send_all() -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as client:

            async def one(i: int) -> int:
                body = orjson.dumps({"msgType": "m", "topic": "generic", "seq": i})
                return (await client.post(c.events_url, content=body)).json()["accepted"]

            return await asyncio.gather(*(one(i) for i in range(400)))

    assert sum(asyncio.run(send_all())) == 400
    metrics = httpx.get(c.base_url + "/metrics").text
    rounds = float(re.search(r"^logbridge_fsync_rounds_total (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert 1 <= rounds < 400  # several requests shared each fsync
    c.stop()
    assert len(all_lines(read_local_store(c.store))) == 400
