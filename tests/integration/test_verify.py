"""``logbridge verify`` against a store written by a real collector, then tampered with.

One collector run (module scope) writes a signed store: small roll sizes give several files in
each stream. Each test copies that store, applies one mutation an attacker with write access
could make, and runs ``logbridge verify --format json`` as a process: the change must be named
(kind, file, line) and the exit code must be 1; the untouched copy must verify with exit 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbridge.collector.local import free_port
from logbridge.store import manifest as mf
from logbridge.store.digest import line_digests

from .collectorproc import Collector, collector_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_ENV = "LB_TEST_MANIFEST_KEY"
KEY = "a-test-signing-key-0123456789"
MANIFESTS = ".logbridge/manifests"


def event(seq: int, when: float, topic: str = "generic") -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(when))
    return orjson.dumps(
        {
            "severity": "INFO",
            "logger": f"dku.audit.{topic}",
            "message": {
                "msgType": "dataset-read-data",
                "authUser": f"user{seq % 7}",
                "seq": seq,
                "pad": "x" * 200,
            },
            "timestamp": stamp,
        }
    )


def post(url: str, lines: list[bytes]) -> None:
    response = httpx.post(url, content=b"\n".join(lines) + b"\n", timeout=10)
    assert response.status_code == 200, response.text


def start_collector(home: Path, **destination: Any) -> Collector:
    home.mkdir(parents=True)
    config = collector_config(home, free_port())
    config["destinations"][0].update(destination)
    c = Collector(home, config, dict(os.environ) | {KEY_ENV: KEY})
    c.start()
    return c


@pytest.fixture(scope="module")
def sealed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 3 topics × several files each, every file sealed and signed."""
    c = start_collector(
        tmp_path_factory.mktemp("verify") / "collector",
        roll={"max_bytes": "4KiB", "max_age": "5m"},
        manifest={"sign_key_env": KEY_ENV},
    )
    now = time.time()
    try:
        seq = 0
        for _ in range(6):  # each batch is over 4 KiB: a file of its own in each stream
            for topic in ("generic", "authfail", "apicalls"):
                post(c.events_url, [event(seq + i, now, topic) for i in range(20)])
                seq += 20
    finally:
        c.stop()
    return c.store


def run_verify(url: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "logbridge", "verify", url, "--format", "json", *args],
        capture_output=True,
        env=dict(os.environ) | (env or {}),
        timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode()
    return proc.returncode, orjson.loads(proc.stdout)


def verify_local(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    return run_verify(f"file://{root}", "--key-env", KEY_ENV, *args, env={KEY_ENV: KEY})


def stream_files(root: Path, topic: str = "generic") -> list[str]:
    """The data files of one topic's stream, in sequence order (relative paths)."""
    found = []
    for path in (root / MANIFESTS).rglob("*.manifest"):
        m = mf.parse(path.read_bytes())
        if m.get("file").startswith(topic + "/"):
            found.append((m.seq, m.get("file")))
    return [name for _, name in sorted(found)]


def lines_of(root: Path, rel: str) -> list[bytes]:
    return (root / rel).read_bytes().splitlines(keepends=True)


def write_lines(root: Path, rel: str, lines: list[bytes]) -> None:
    (root / rel).write_bytes(b"".join(lines))


def manifest_of(root: Path, rel: str) -> Path:
    return root / MANIFESTS / f"{rel}.manifest"


# ------------------------------------------------------------------------------ mutations
# Each takes the store root and the generic stream's files (seq order), mutates, and returns
# the findings verify must report: (kind, file, line, original_line), None meaning "any".

Expected = list[tuple[str, str | None, int | None, int | None]]


def one_byte(root: Path, files: list[str]) -> Expected:
    data = bytearray((root / files[1]).read_bytes())
    third = len(b"".join(lines_of(root, files[1])[:2]))
    at = data.index(b"user", third) + 4
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    (root / files[1]).write_bytes(bytes(data))
    return [("edited-line", files[1], 3, 3)]


def line_removed(root: Path, files: list[str]) -> Expected:
    lines = lines_of(root, files[1])
    write_lines(root, files[1], lines[:4] + lines[5:])
    return [("removed-line", files[1], None, 5)]


def line_added(root: Path, files: list[str]) -> Expected:
    lines = lines_of(root, files[1])
    forged = (
        lines[0]
        .replace(b'"authUser":"user', b'"authUser":"mallory')
        .replace(b"dataset-read", b"dataset-dele")
    )
    write_lines(root, files[1], lines[:7] + [forged] + lines[7:])
    return [("inserted-line", files[1], 8, None)]


def lines_swapped(root: Path, files: list[str]) -> Expected:
    lines = lines_of(root, files[1])
    lines[9], lines[10] = lines[10], lines[9]
    write_lines(root, files[1], lines)
    return [("reordered-line", files[1], None, None)]


def file_removed(root: Path, files: list[str]) -> Expected:
    (root / files[2]).unlink()
    return [("removed-file", files[2], None, None)]


def file_and_manifest_removed(root: Path, files: list[str]) -> Expected:
    (root / files[2]).unlink()
    manifest_of(root, files[2]).unlink()
    return [("removed-file", files[2], None, None)]


def file_renamed(root: Path, files: list[str]) -> Expected:
    (root / files[2]).rename(root / (files[2] + ".old"))
    return [("renamed-file", files[2], None, None)]


def file_added(root: Path, files: list[str]) -> Expected:
    extra = files[1].rsplit("/", 1)[0] + "/events-forged.ndjson"
    shutil.copyfile(root / files[1], root / extra)
    return [("unmanifested-file", extra, None, None)]


def manifest_edited_without_key(root: Path, files: list[str]) -> Expected:
    path = manifest_of(root, files[1])
    m = mf.parse(path.read_bytes())
    m.header["first_event_time"] = "2001-01-01T00:00:00.000+0000"
    path.write_bytes(mf.serialize(mf.Manifest(m.header, m.digests)))
    return [("bad-signature", files[1], None, None), ("broken-chain", files[2], None, None)]


def manifest_edited_with_key(root: Path, files: list[str]) -> Expected:
    """The attacker holds the key: edits a line, re-seals and re-signs the file's manifest."""
    lines = lines_of(root, files[1])
    lines[2] = lines[2].replace(b'"authUser":"user', b'"authUser":"nobody')
    data = b"".join(lines)
    write_lines(root, files[1], lines)
    path = manifest_of(root, files[1])
    m = mf.parse(path.read_bytes())
    digests = line_digests(data)
    header = dict(m.header)
    header |= {
        "sha256": __import__("hashlib").sha256(data).hexdigest(),
        "size": len(data),
        "line_digests": {
            "algorithm": mf.LINE_DIGEST,
            "sha256": __import__("hashlib").sha256(digests).hexdigest(),
        },
    }
    path.write_bytes(mf.serialize(mf.Manifest(mf.sign(header, KEY.encode()), digests)))
    return [("broken-chain", files[2], None, None)]


def manifest_deleted(root: Path, files: list[str]) -> Expected:
    manifest_of(root, files[1]).unlink()
    return [("missing-manifest", files[1], None, None)]


MUTATIONS: dict[str, Callable[[Path, list[str]], Expected]] = {
    f.__name__: f
    for f in (
        one_byte,
        line_removed,
        line_added,
        lines_swapped,
        file_removed,
        file_and_manifest_removed,
        file_renamed,
        file_added,
        manifest_edited_without_key,
        manifest_edited_with_key,
        manifest_deleted,
    )
}


def test_the_untouched_store_verifies(sealed_store: Path, tmp_path: Path) -> None:
    files = stream_files(sealed_store)
    assert len(files) >= 4, files
    code, report = verify_local(sealed_store)
    assert code == 0 and report["ok"], report["findings"]
    assert report["checked"] == report["files"] == report["manifests"] >= 12
    assert not report["findings"]
    # Without the key the signatures are not checked, and verify says so.
    code, report = run_verify(f"file://{sealed_store}")
    assert code == 0
    assert [f["kind"] for f in report["findings"]] == ["signatures-not-checked"]
    # With the wrong key, every manifest's signature is bad.
    code, report = run_verify(f"file://{sealed_store}", "--key-env", KEY_ENV, env={KEY_ENV: "wrong"})
    assert code == 1
    assert report["counts"] == {"bad-signature": report["manifests"]}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_verify_names_each_change(sealed_store: Path, tmp_path: Path, mutation: str) -> None:
    root = tmp_path / "store"
    shutil.copytree(sealed_store, root)
    expected = MUTATIONS[mutation](root, stream_files(root))
    code, report = verify_local(root)
    assert code == 1, report
    findings = report["findings"]
    for kind, file, line, original in expected:
        matches = [
            f
            for f in findings
            if f["kind"] == kind
            and (file is None or f.get("file") == file)
            and (line is None or f.get("line") == line)
            and (original is None or f.get("original_line") == original)
        ]
        assert matches, f"{mutation}: no {kind} {file} line {line}/{original} in {findings}"
    # Nothing is reported about the files that were not touched.
    touched = {file for _, file, _, _ in expected} | {None}
    others = [f for f in findings if f.get("file") not in touched and not f.get("file", "").endswith(".old")]
    assert not others, others


def test_retention_prunes_old_partitions_on_the_record(tmp_path: Path, wait_for: Any) -> None:
    c = start_collector(
        tmp_path / "collector",
        roll={"max_bytes": "4KiB", "max_age": "1s"},
        manifest={"sign_key_env": KEY_ENV},
        retention="400d",
        retention_check="1s",
    )
    now = time.time()
    old = now - 800 * 86400
    try:
        post(c.events_url, [event(i, now) for i in range(20)])
        post(c.events_url, [event(100 + i, old) for i in range(20)])  # a backfill past the window
        post(c.events_url, [event(200 + i, now) for i in range(20)])
        old_year = time.strftime("%Y", time.gmtime(old))

        def pruned() -> bool:
            records = list((c.store / ".logbridge" / "retention").glob("*.manifest"))
            return bool(records) and not (c.store / "generic" / "default" / old_year).exists()

        wait_for(pruned, timeout=30, what="the old partition pruned and recorded")
    finally:
        c.stop()
    code, report = verify_local(c.store)
    assert code == 0, report["findings"]
    assert report["retention_records"] == 1
    assert [f["kind"] for f in report["findings"]] == ["pruned-by-retention"]
    # The same deletion without its record is tampering.
    records = list((c.store / ".logbridge" / "retention").glob("*.manifest"))
    for record in records:
        record.unlink()
    code, report = verify_local(c.store)
    assert code == 1
    assert "removed-file" in report["counts"], report["findings"]


def test_retention_prunes_an_idle_destination(tmp_path: Path, wait_for: Any) -> None:
    """A partition that passes the window while nothing arrives is pruned all the same: the
    publisher's round runs for a due retention check, not only for files waiting."""
    c = start_collector(
        tmp_path / "collector",
        path="{topic}/%Y/%m/%d/%H/%M/%S",  # one-second partitions: one passes the window soon
        roll={"max_bytes": "4KiB", "max_age": "1s"},
        manifest={"sign_key_env": KEY_ENV},
        retention="1h",
        retention_check="1s",
    )
    when = time.time() - 3600 + 15  # its second's window passes the hour ~15 s from now
    try:
        post(c.events_url, [event(i, when) for i in range(5)])
        data = c.store / "generic"

        def data_files() -> list[str]:
            # os.walk, not rglob: retention deletes folders while the walk goes (its errors are skipped)
            return [f for _, _, files in os.walk(data) for f in files if f.endswith(".ndjson")]

        def published() -> bool:  # (or published and pruned at once: the assert below says so)
            return bool(data_files()) or (c.store / ".logbridge" / "retention").exists()

        wait_for(published, timeout=30, what="the events published")
        assert time.time() < when + 3600 - 1, "too slow to see the partition before its window passed"
        # Nothing more arrives: the destination is idle from now on.

        def pruned() -> bool:
            return not data_files()

        wait_for(pruned, timeout=30, what="the partition pruned while the destination is idle")
        assert list((c.store / ".logbridge" / "retention").glob("*.manifest"))
    finally:
        c.stop()
    code, report = verify_local(c.store)
    assert code == 0, report["findings"]
    assert [f["kind"] for f in report["findings"]] == ["pruned-by-retention"]


def test_verify_reads_an_s3_store(s3_server: Any, tmp_path: Path, wait_for: Any) -> None:
    prefix = f"verify-{os.getpid()}"
    home = tmp_path / "collector"
    home.mkdir()
    config = collector_config(home, free_port())
    config["destinations"][0].update(
        url=f"s3://{s3_server.bucket}/{prefix}",
        storage_options=s3_server.storage_options(),
        roll={"max_bytes": "4KiB", "max_age": "5m"},
    )
    c = Collector(home, config, dict(os.environ) | s3_server.env())
    c.start()
    try:
        for batch in range(3):
            post(c.events_url, [event(batch * 20 + i, time.time()) for i in range(20)])
    finally:
        c.stop()
    options = [f"-o{k}={v}" for k, v in s3_server.storage_options().items()]
    url = f"s3://{s3_server.bucket}/{prefix}"
    code, report = run_verify(url, *options)
    assert code == 0 and report["checked"] == 3, report
    fs = s3_server.filesystem()
    data = sorted(k for k in fs.find(f"{s3_server.bucket}/{prefix}") if "/.logbridge/" not in k)
    lines = fs.cat_file(data[0]).splitlines(keepends=True)
    lines[1] = lines[1].replace(b"dataset-read-data", b"dataset-READ-data")
    fs.pipe_file(data[0], b"".join(lines))
    code, report = run_verify(url, *options)
    assert code == 1
    assert [(f["kind"], f["line"]) for f in report["findings"]] == [("edited-line", 2)]


def test_two_consume_writers_one_sigkilled_leave_a_store_that_verifies(
    collector: Any, nats_server: Any, tmp_path: Path, wait_for: Any
) -> None:
    """Each ``logbridge consume`` writer seals its own streams; a writer SIGKILLed mid-stream
    resumes them (the files it had sealed keep their manifests): the store verifies clean."""
    pytest.importorskip("nats")
    from .writerproc import Writer, seqs_in, writer_config

    bus = collector(
        destinations=[{"name": "bus", "type": "nats", "servers": [nats_server.url], "stream": "AUDIT"}]
    )
    store = tmp_path / "store"
    destination = {
        "name": "store",
        "url": f"file://{store}",
        "roll": {"max_bytes": "8KiB", "max_age": "1s"},
        "manifest": {"sign_key_env": KEY_ENV},
    }
    w1, w2 = (
        Writer(
            tmp_path / name,
            writer_config(tmp_path / name, nats_server.url, store, destinations=[destination]),
        )
        for name in ("w1", "w2")
    )
    env = {KEY_ENV: KEY}
    w1.start(env)
    w2.start(env)
    try:
        sent = 0
        for kill in range(3):
            for _ in range(4):
                post(bus.events_url, [event(sent + i, time.time()) for i in range(40)])
                sent += 40
            wait_for(lambda n=sent: len(seqs_in(store)) >= n // 2, 60, f"progress before kill {kill + 1}")
            w1.kill()
            w1.start(env)
        wait_for(lambda: len(set(seqs_in(store))) >= sent, 90, "every event in the store")
    finally:
        for w in (w1, w2):
            if w.running:
                w.stop()
    code, report = verify_local(store)
    assert code == 0, report["findings"]
    seqs = [mf.parse(p.read_bytes()).seq for p in (store / MANIFESTS).rglob("*.manifest")]
    assert max(seqs) > w1.starts, "a stream continued across the writer's restarts"


def test_a_collector_sigkilled_mid_stream_leaves_a_store_that_verifies(tmp_path: Path) -> None:
    """Files sealed but not yet published when the collector dies are published after the restart
    with the manifests they were sealed with, and each stream goes on where it stopped."""
    c = start_collector(
        tmp_path / "collector",
        roll={"max_bytes": "4KiB", "max_age": "5m"},
        manifest={"sign_key_env": KEY_ENV},
    )
    seq = 0
    try:
        for _ in range(3):
            for _ in range(4):
                post(c.events_url, [event(seq + i, time.time()) for i in range(20)])
                seq += 20
            c.kill()
            c.start()
    finally:
        c.stop()
    code, report = verify_local(c.store)
    assert code == 0, report["findings"]
    assert report["files"] >= 11
    seqs = sorted(mf.parse(p.read_bytes()).seq for p in (c.store / MANIFESTS).rglob("*.manifest"))
    assert seqs == list(range(1, len(seqs) + 1))
