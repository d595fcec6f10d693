"""Collector start-up refusals (DESIGN.md §3, §4, §6): one process per state_dir, a port in use, bad set-ups.

A second ``logbridge collect`` that cannot run must say why in one line and exit 2 *before* it
touches anything: no start-up recovery (which publishes staging files and compacts the journal)
on a state dir another process owns, nor on its own when it cannot serve. The running collector
must not notice: every event it acknowledged is stored exactly once, through a SIGKILL and a
restart, and every replayed batch comes back as a duplicate.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logbridge.collector.local import free_port

from .collectorproc import collect_cmd, collector_config, refusal_lines, run_refused_start, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EVENTS = 8_000
BATCH_LINES = 200
BATCHES = EVENTS // BATCH_LINES
SOURCE = "startup-test/node-1/audit.log"
EXIT_WITHIN = 10.0  # seconds for a refused start (a Python start-up plus imports is well under 2 s)


# ------------------------------------------------------------------------------------- helpers


def event_stream(count: int = EVENTS) -> tuple[bytes, list[tuple[int, int]]]:
    """An NDJSON stream of log4j envelopes numbered by ``seq``, and each batch's byte range."""
    lines = [
        orjson.dumps(
            {
                "severity": "INFO",
                "logger": "dku.audit.generic",
                "message": {"msgType": "login", "seq": seq},
                "timestamp": "2020-02-19T16:05:02.441+0100",
            }
        )
        + b"\n"
        for seq in range(count)
    ]
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    ranges = [(offsets[i], offsets[min(i + BATCH_LINES, count)]) for i in range(0, count, BATCH_LINES)]
    return b"".join(lines), ranges


def post_range(client: httpx.Client, url: str, stream: bytes, rng: tuple[int, int]) -> httpx.Response:
    start, end = rng
    return client.post(
        url,
        content=stream[start:end],
        headers={
            "Content-Type": "application/x-ndjson",
            "X-Logbridge-Source": SOURCE,
            "X-Logbridge-Range": f"{start}-{end}",
        },
    )


def files_under(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every regular file under ``root`` (empty if there is no ``root``)."""
    if not root.is_dir():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def recovery_state(state_dir: Path) -> dict[str, str]:
    """What start-up recovery rewrites in a state dir: staging files, journals, the snapshot.

    (Anything else, a lock file for one, is the implementation's business.)"""
    staging = {f"staging/{rel}": digest for rel, digest in files_under(state_dir / "staging").items()}
    return staging | {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state_dir.glob("*"))
        if p.is_file() and (p.name == "state.json" or p.name.startswith("journal-"))
    }


def stored_seqs(
    store: Path, read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]]
) -> Counter[int]:
    return Counter(line["clientEvent"]["seq"] for lines in read_local_store(store).values() for line in lines)


def once_problems(seen: Counter[int], count: int) -> list[str]:
    missing = [s for s in range(count) if seen[s] == 0]
    doubled = {s: n for s, n in seen.items() if n > 1}
    extra = sorted(set(seen) - set(range(count)))
    problems = []
    if missing:
        problems.append(f"{len(missing)} acknowledged events missing from the store, first {missing[:10]}")
    if doubled:
        problems.append(f"{len(doubled)} events stored more than once, e.g. {sorted(doubled.items())[:10]}")
    if extra:
        problems.append(f"unexpected events in the store: {extra[:10]}")
    return problems


# ------------------------------------------------------------------- one collector per state_dir


def test_second_collector_on_the_same_state_dir_exits_2_and_leaves_the_first_unharmed(
    collector: Any, read_local_store: Any
) -> None:
    """A collector streams acknowledged batches (staging files live: max_age 5m); midway, a second
    process starts on the very same config. It must exit 2 naming the state dir and A's pid, and
    must not recover, publish or compact anything of A's: after a SIGKILL and a restart of A,
    every batch replays as a duplicate and the store holds each event exactly once."""
    c = collector(max_age="5m")
    assert c.process is not None
    state = Path(c.config["state_dir"])
    stream, ranges = event_stream()
    half, three_quarters = BATCHES // 2, BATCHES * 3 // 4
    problems: list[str] = []

    with httpx.Client(timeout=10.0) as client:
        for rng in ranges[:half]:
            r = post_range(client, c.events_url, stream, rng)
            assert r.status_code == 200 and r.json()["accepted"] == BATCH_LINES, (rng, r.status_code, r.text)
        staging_before = files_under(state / "staging")
        journals_before = sorted(p.name for p in state.glob("journal-*"))
        snapshot_before = (state / "state.json").read_bytes() if (state / "state.json").exists() else None
        # Preconditions: the acknowledged half sits in live staging files, nothing is published yet.
        assert staging_before, f"no staging files under {state / 'staging'} after {half} batches"
        assert journals_before, f"no journal in {state}"
        assert not files_under(c.store), "files published already, with roll max_age 5m"

        started = time.monotonic()
        intruder = subprocess.Popen(
            collect_cmd(c.config_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=c.env,
            cwd=c.home,
        )
        try:
            # A keeps serving while the intruder starts and fails.
            for rng in ranges[half:three_quarters]:
                r = post_range(client, c.events_url, stream, rng)
                assert r.status_code == 200 and r.json()["accepted"] == BATCH_LINES, (
                    rng,
                    r.status_code,
                    r.text,
                )
            try:
                _, stderr = intruder.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                intruder.kill()
                _, stderr = intruder.communicate(timeout=10)
                problems.append("second collector still running after 30 s (killed)")
        finally:
            if intruder.poll() is None:
                intruder.kill()
                intruder.wait(timeout=10)
        elapsed = time.monotonic() - started
        # ...and after it is gone: these batches' journal records must survive A's SIGKILL.
        for rng in ranges[three_quarters:]:
            r = post_range(client, c.events_url, stream, rng)
            assert r.status_code == 200 and r.json()["accepted"] == BATCH_LINES, (rng, r.status_code, r.text)

        if intruder.returncode != 2:
            problems.append(
                f"second collector on the same state_dir exited {intruder.returncode}, expected 2"
            )
        if elapsed > EXIT_WITHIN:
            problems.append(f"second collector took {elapsed:.1f}s to exit")
        lines, stderr_problems = refusal_lines(stderr, "second collector")
        problems += stderr_problems
        pid = c.process.pid
        if not any(
            (str(state) in line or str(state.resolve()) in line) and re.search(rf"\b{pid}\b", line)
            for line in lines
        ):
            problems.append(f"no line of its stderr names both the state_dir {state} and A's pid {pid}")

        # A's state, as A left it: the intruder published nothing and compacted nothing.
        published = files_under(c.store)
        if published:
            problems.append(f"A's staging files were published while A ran: {sorted(published)[:5]}")
        staging_gone = sorted(set(staging_before) - set(files_under(state / "staging")))
        if staging_gone:
            problems.append(f"A's live staging files were removed: {staging_gone[:5]}")
        journals_gone = sorted(set(journals_before) - {p.name for p in state.glob("journal-*")})
        if journals_gone:
            problems.append(f"A's journal was compacted away: {journals_gone} gone")
        snapshot_after = (state / "state.json").read_bytes() if (state / "state.json").exists() else None
        if snapshot_after != snapshot_before:
            problems.append("A's state.json was rewritten")

        c.kill()
        c.start()
        accepted_again = []
        for i, rng in enumerate(ranges):
            r = post_range(client, c.events_url, stream, rng)
            if r.status_code != 200 or r.json() != {"accepted": 0, "invalid": 0, "duplicate": True}:
                accepted_again.append(f"batch {i} {rng[0]}-{rng[1]}: {r.status_code} {r.text}")
        if accepted_again:
            problems.append(
                f"{len(accepted_again)} of {BATCHES} acknowledged batches were not duplicates after the "
                f"restart, e.g. {accepted_again[:3]}"
            )
    c.stop()
    problems += once_problems(stored_seqs(c.store, read_local_store), EVENTS)
    assert not problems, "\n".join(["", *problems, "second collector's stderr:", stderr])


# ------------------------------------------------------------------------------- port in use


def test_second_collector_on_a_port_in_use_exits_2_before_recovering_its_own_state(
    collector: Any, read_local_store: Any
) -> None:
    """B's own state dir holds what a SIGKILL left (a live staging file, its journal). Started on
    A's port, B must exit 2 naming the address, without running start-up recovery on that state;
    A keeps answering, and B later recovers its state on its own port."""
    a = collector()
    b = collector(max_age="5m")
    stream, ranges = event_stream(BATCH_LINES)
    (rng,) = ranges
    with httpx.Client(timeout=10.0) as client:
        r = post_range(client, b.events_url, stream, rng)
        assert r.status_code == 200 and r.json()["accepted"] == BATCH_LINES, r.text
    b.kill()
    b_state = Path(b.config["state_dir"])
    before = recovery_state(b_state)
    assert any(rel.startswith("staging/") for rel in before), f"no staging file left in {b_state}: {before}"

    clash = write_config(
        b.home / "port-clash.yaml", {**b.config, "listen": {"host": "127.0.0.1", "port": a.port}}
    )
    started = time.monotonic()
    try:
        proc = subprocess.run(
            collect_cmd(clash), capture_output=True, text=True, timeout=30, env=b.env, cwd=b.home
        )
        returncode, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode = None
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    elapsed = time.monotonic() - started

    problems: list[str] = []
    if returncode != 2:
        problems.append(f"collector on a port in use exited {returncode}, expected 2")
    if elapsed > EXIT_WITHIN:
        problems.append(f"it took {elapsed:.1f}s to exit")
    lines, stderr_problems = refusal_lines(stderr, "collector on a port in use")
    problems += stderr_problems
    if not any(f"127.0.0.1:{a.port}" in line and "in use" in line.lower() for line in lines):
        problems.append(f"no line of its stderr says 127.0.0.1:{a.port} is in use")
    after = recovery_state(b_state)
    if after != before:
        changed = sorted(
            set(before) ^ set(after) | {k for k in before.keys() & after.keys() if before[k] != after[k]}
        )
        problems.append(f"start-up recovery ran on B's state dir: changed {changed[:6]}")
    published = files_under(b.store)
    if published:
        problems.append(f"B's staging files were published: {sorted(published)[:5]}")
    health = httpx.get(f"{a.base_url}/healthz", timeout=5.0)
    if health.status_code != 200:
        problems.append(f"A's /healthz answered {health.status_code} {health.text}")
    assert not problems, "\n".join(["", *problems, "stderr:", stderr])

    # A still takes events, and B, on its own port, still has everything it acknowledged.
    r = httpx.post(a.events_url, content=stream[:200], timeout=10.0)
    assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
    b.start()
    with httpx.Client(timeout=10.0) as client:
        r = post_range(client, b.events_url, stream, rng)
    assert r.json() == {"accepted": 0, "invalid": 0, "duplicate": True}, r.text
    b.stop()
    seen = stored_seqs(b.store, read_local_store)
    assert not once_problems(seen, BATCH_LINES), once_problems(seen, BATCH_LINES)


# -------------------------------------------------------------------------------- bad set-ups


def _state_dir_is_file(f: Path) -> dict[str, Any]:
    return {"state_dir": str(f)}


def _state_dir_under_file(f: Path) -> dict[str, Any]:
    return {"state_dir": str(f / "sub")}


def _dead_letter_is_file(f: Path) -> dict[str, Any]:
    return {"dead_letter": f"file://{f}"}


def _dead_letter_under_file(f: Path) -> dict[str, Any]:
    return {"dead_letter": f"file://{f}/sub"}


def _destination(url: str) -> dict[str, Any]:
    return {"destinations": [{"name": "store", "type": "filesystem", "url": url}]}


SETUPS: dict[str, tuple[Callable[[Path], dict[str, Any]], tuple[str, ...]]] = {
    # id: (config overrides given an existing regular file, keys the message may name)
    "state_dir-is-a-file": (_state_dir_is_file, ("state_dir",)),
    "state_dir-under-a-file": (_state_dir_under_file, ("state_dir",)),
    "dead_letter-is-a-file": (_dead_letter_is_file, ("dead_letter",)),
    "dead_letter-under-a-file": (_dead_letter_under_file, ("dead_letter",)),
    "destination-url-is-a-file": (lambda f: _destination(f"file://{f}"), ("destinations[0].url",)),
    "destination-url-under-a-file": (lambda f: _destination(f"file://{f}/sub"), ("destinations[0].url",)),
}


@pytest.mark.parametrize("setup", list(SETUPS))
def test_bad_setup_exits_2_with_one_message_naming_the_key(tmp_path: Path, setup: str) -> None:
    make_overrides, keys = SETUPS[setup]
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("a regular file\n")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    config_path = write_config(
        home / "collector.yaml", collector_config(home, port, **make_overrides(not_a_dir))
    )

    returncode, stderr = run_refused_start(config_path, port)

    assert returncode == 2, f"exit code {returncode}, expected 2; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    named = [
        line
        for line in stderr.splitlines()
        if str(not_a_dir) in line
        and any(
            key in line or ("[" in key and all(part in line for part in key.rsplit(".", 1))) for key in keys
        )
    ]
    assert named, f"no line names {' or '.join(keys)} together with {not_a_dir}:\n{stderr}"
