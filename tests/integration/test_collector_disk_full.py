"""The collector on a full disk (DESIGN.md §4-§5): ENOSPC never tears a line, loses or doubles an
acknowledged event, nor leaves debris in the store; ``/healthz`` says 503 while writes are refused.

Each test puts one of the collector's directories on its own small tmpfs and fills it with a
filler file:

- the staging disk (``state_dir``), while a client streams sequence-numbered NDJSON batches with
  ``X-Logbridge-Source`` + ``X-Logbridge-Range`` the way a shipper does (a 503 is retried with the
  same range, a duplicate or a 409 moves on). Batches are bigger than the space the filler leaves,
  so every refused batch fails part-way through its write and must be rolled back. Once the
  filler is gone the retries succeed; a SIGKILL and a restart follow (``durability: flush``), or
  a restart only if the collector asks for one (``durability: fsync``); after a clean stop the
  store holds the whole stream once, every line whole.
- the store, on another file system than the staging files, so that publication goes through
  the copy-then-rename branch: the copies fail with ENOSPC, and no partial hidden file may stay
  behind in the store, neither while the retries fail nor afterwards.

They mount file systems, so they need root (CI runs them as root); elsewhere they are skipped.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PAGE = 4096  # tmpfs hands out whole pages: free space moves in these steps
EVENTS = 2400
LINE_BYTES = 1000  # each client line is padded to about this size
# Lines per batch, cycling: 101-181 lines, about 100-180 KB a batch (some 115-215 KB once stored).
BATCH_PLAN = (101, 137, 113, 173, 107, 151, 127, 181)
SOURCE = "disk-full-test/design-node-1/audit.log"
FAST_ROLL = {"max_bytes": "64MiB", "max_age": "300ms"}
# Free staging space while "full": less than any batch, so each fails part-way through its write,
# yet more than a small probe write needs: the disk is full for batches, not for everything.
STAGING_LEFT = 24 * PAGE
REFUSED_WHILE_FULL = 6  # 503s the client must see before the filler goes
# How long the client holds back after a 503, with /healthz asked meanwhile (a shipper waits the
# whole Retry-After): over two maintenance ticks (0.5 s), whatever the collector re-checks on them.
HOLD_AFTER_503 = 1.5
HEALTHY_AGAIN_WITHIN = 5.0  # seconds after the filler goes


# ----------------------------------------------------------------------------------- file systems


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``small_tmpfs(name, size="2m")`` → a fresh tmpfs mounted at ``tmp_path / name``.

    Skips the test when this process cannot mount (not root, no CAP_SYS_ADMIN, no ``mount``).
    Unmounted in teardown, lazily if something still holds it. Ask for this fixture before
    ``collector``, so that the collectors are stopped before their file systems go away.
    """
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m") -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs (CI runs the disk-full tests as root)")
        target = tmp_path / name
        target.mkdir()
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot run mount to make a small tmpfs: {exc}")
        if done.returncode != 0:
            pytest.skip(
                f"mount is not permitted here (exit {done.returncode}: {' '.join(done.stderr.split())}); "
                "the disk-full tests need root with mount permission (CAP_SYS_ADMIN)"
            )
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class Filler:
    """A file that takes all but ``leave`` bytes of a file system's free space.

    `hold` keeps it so in a thread: whatever the collector frees (a published staging file) is
    taken again within milliseconds, so the disk stays full until `remove`.
    """

    def __init__(self, mount: Path, leave: int):
        self.mount = mount
        self.path = mount / "filler"
        self.leave = leave
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._zeros = b"\0" * (256 * 1024)

    def top_up(self) -> None:
        assert self._fd is not None
        excess = free_bytes(self.mount) - self.leave
        while excess >= PAGE:
            chunk = self._zeros[: min(len(self._zeros), excess - excess % PAGE)]
            try:
                written = os.write(self._fd, chunk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    return  # someone else took it meanwhile
                raise
            excess -= written

    def hold(self) -> None:
        self.top_up()

        def run() -> None:
            while not self._stop.wait(0.002):
                self.top_up()

        self._thread = threading.Thread(target=run, name="filler", daemon=True)
        self._thread.start()

    def remove(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


@pytest.fixture
def fillers() -> Iterator[Callable[[Path, int], Filler]]:
    """``fillers(mount, leave)`` → a `Filler`; every one is removed in teardown."""
    made: list[Filler] = []

    def make(mount: Path, leave: int) -> Filler:
        filler = Filler(mount, leave)
        made.append(filler)
        return filler

    yield make
    for filler in made:
        with contextlib.suppress(OSError):
            filler.remove()


# ----------------------------------------------------------------------------------------- client


def event_stream(events: int = EVENTS) -> tuple[bytes, list[int]]:
    """The client's NDJSON stream of log4j envelopes and the offset where each line starts (plus the end)."""
    lines = []
    for seq in range(events):
        head = orjson.dumps(
            {
                "severity": "INFO",
                "logger": "dku.audit.generic",
                "message": {"msgType": "login", "seq": seq, "pad": ""},
                "timestamp": "2020-02-19T16:05:02.441+0100",
            }
        )
        pad = (f"{seq:07d}-" * (LINE_BYTES // 8 + 1))[: LINE_BYTES - len(head)]
        lines.append(head.replace(b'"pad":""', f'"pad":"{pad}"'.encode()))
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    return b"\n".join(lines) + b"\n", offsets


@dataclass
class Pause:
    at: int  # the client stops once this many bytes of the stream are acknowledged ...
    reached: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)  # ... until this is set


@dataclass
class Answer:
    status: int  # 0: no answer (connection error)
    start: int
    end: int
    text: str = ""
    retry_after: str | None = None


@dataclass
class ShipperClient:
    """Sends the stream once in ranged batches, as a shipper does, through 503s and restarts."""

    url: str
    stream: bytes
    offsets: list[int]
    pauses: list[Pause] = field(default_factory=list)
    acked: int = 0  # bytes of the stream the collector has acknowledged
    accepted: int = 0
    answers: list[Answer] = field(default_factory=list)
    posts: int = 0  # requests sent (or being sent)
    may_send: threading.Event = field(default_factory=threading.Event)  # cleared: hold before the next post
    holding: threading.Event = field(default_factory=threading.Event)  # set while held back
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.may_send.set()
        try:
            self._send_all()
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            self.done.set()

    def statuses(self, since: int = 0) -> Counter[int]:
        return Counter(a.status for a in self.answers[since:])

    def _send_all(self) -> None:
        line_at = {offset: i for i, offset in enumerate(self.offsets)}
        pos = 0
        number = 0  # batch number: picks the batch size; a retry keeps its range
        end: int | None = None
        with httpx.Client(timeout=15.0) as client:
            while pos < len(self.stream) and not self.stop.is_set():
                if self.pauses and self.acked >= self.pauses[0].at:
                    pause = self.pauses.pop(0)
                    pause.reached.set()
                    if not pause.go.wait(timeout=60):
                        raise AssertionError("the test never let the client go on")
                if end is None:
                    first = line_at[pos]
                    end = self.offsets[
                        min(first + BATCH_PLAN[number % len(BATCH_PLAN)], len(self.offsets) - 1)
                    ]
                if not self.may_send.is_set():
                    self.holding.set()
                    if not self.may_send.wait(timeout=60):
                        raise AssertionError("the test never let the client send again")
                    self.holding.clear()
                self.posts += 1
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
                except httpx.TransportError as exc:
                    # The collector is down (killed, restarting): the batch may or may not be
                    # stored. Send the same range again; the collector knows.
                    self.answers.append(Answer(0, pos, end, repr(exc)))
                    self.stop.wait(0.02)
                    continue
                self.answers.append(
                    Answer(
                        response.status_code,
                        pos,
                        end,
                        response.text[:300],
                        response.headers.get("retry-after"),
                    )
                )
                if response.status_code == 200:
                    body = response.json()
                    assert body["invalid"] == 0, body
                    self.accepted += body["accepted"]
                    pos = self.acked = end
                    number += 1
                    end = None
                elif response.status_code == 409:
                    high_water = response.json()["high_water"]
                    assert pos < high_water <= end, (pos, end, response.text)
                    assert high_water in line_at, f"high_water {high_water} is not a line boundary"
                    pos = self.acked = high_water
                    number += 1
                    end = None
                elif response.status_code == 503:
                    # The same range again later (Retry-After, capped to keep the test short).
                    self.stop.wait(min(float(response.headers.get("retry-after") or "1"), 0.1))
                else:
                    raise AssertionError(
                        f"unexpected {response.status_code} for {pos}-{end}: {response.text}"
                    )


# ------------------------------------------------------------------------------------------ store


@dataclass
class StoreScan:
    seqs: Counter[int] = field(default_factory=Counter)
    torn: list[str] = field(default_factory=list)  # lines that are not whole stored events
    stray: list[str] = field(default_factory=list)  # anything but a published data file or manifest


def scan_store(root: Path) -> StoreScan:
    """Every line of every file in the store, and whatever should not be there (a running
    collector may be renaming files meanwhile: a file that vanishes is skipped)."""
    scan = StoreScan()
    if not root.exists():
        return scan
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        try:
            if not path.is_file() or "manifest" in path.name:
                continue
            if path.name.startswith(".") or not path.name.endswith(".ndjson"):
                scan.stray.append(f"{rel} ({path.stat().st_size} bytes)")
                continue
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        if data and not data.endswith(b"\n"):
            scan.torn.append(f"{rel}: does not end with a newline")
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                scan.seqs[orjson.loads(line)["clientEvent"]["seq"]] += 1
            except (orjson.JSONDecodeError, KeyError, TypeError):
                scan.torn.append(f"{rel} line {number} ({len(line)} bytes): {line[:50]!r}...{line[-30:]!r}")
    return scan


def sequence_problems(scan: StoreScan, events: int) -> list[str]:
    problems = []
    missing = [s for s in range(events) if scan.seqs[s] == 0]
    doubled = {s: n for s, n in scan.seqs.items() if n > 1}
    unknown = sorted(s for s in scan.seqs if not 0 <= s < events)
    if missing:
        problems.append(f"{len(missing)} acknowledged events missing from the store, e.g. seq {missing[:10]}")
    if doubled:
        problems.append(f"{len(doubled)} events stored more than once, e.g. {list(doubled.items())[:10]}")
    if unknown:
        problems.append(f"events nobody sent in the store: {unknown[:10]}")
    if scan.torn:
        problems.append(f"{len(scan.torn)} torn lines in the store: {scan.torn[:5]}")
    if scan.stray:
        problems.append(f"{len(scan.stray)} stray files in the store: {scan.stray[:8]}")
    return problems


def assert_store_holds_the_sequence(
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]], root: Path, events: int
) -> None:
    """Events 0 … events-1, each once, read the way the other integration tests read a store
    (which fails on any torn line or stray file too)."""
    files = read_local_store(root)
    seqs = sorted(line["clientEvent"]["seq"] for lines in files.values() for line in lines)
    assert seqs == list(range(events))


def healthz(c: Any) -> httpx.Response:
    return httpx.get(f"{c.base_url}/healthz", timeout=5.0)


def healthz_while_refused(
    c: Any, client: ShipperClient, since: int, hold: float = HOLD_AFTER_503
) -> tuple[list[tuple[float, int, str]], Answer]:
    """Once the client has a 503, hold it back for ``hold`` seconds (a shipper waits out the
    Retry-After) and ask ``GET /healthz`` all along; returns (seconds into the hold, status,
    body) of every answer, and the 503. Nothing is sent meanwhile, so the disk stays full; and
    the space left is more than a small probe write needs, so a probe cannot pass for health."""
    deadline = time.monotonic() + 30

    def wait(condition: Callable[[], bool]) -> None:
        while not condition():
            if client.done.is_set() or time.monotonic() > deadline:
                raise AssertionError(
                    f"no refused batch to compare /healthz with; client saw {dict(client.statuses(since))}"
                )
            time.sleep(0.01)

    wait(lambda: any(a.status == 503 for a in client.answers[since:]))
    client.may_send.clear()
    try:
        wait(client.holding.is_set)
        refused = [a for a in client.answers[since:] if a.status == 503][-1]
        held_at = time.monotonic()
        seen: list[tuple[float, int, str]] = []
        while time.monotonic() - held_at < hold:
            response = healthz(c)
            seen.append((round(time.monotonic() - held_at, 2), response.status_code, response.text[:200]))
            time.sleep(0.1)
        return seen, refused
    finally:
        client.may_send.set()


def staged_bytes(state_dir: Path) -> int:
    total = 0
    for path in (state_dir / "staging").rglob("*.ndjson"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def staging_files(state_dir: Path) -> list[str]:
    staging = state_dir / "staging"
    if not staging.exists():
        return []
    return sorted(
        f"{p.relative_to(staging).as_posix()} ({p.stat().st_size} bytes)"
        for p in staging.rglob("*")
        if p.is_file()
    )


# ------------------------------------------------------------------------- A and C: full staging


def full_staging_disk_scenario(
    small_tmpfs: Callable[..., Path],
    fillers: Callable[[Path, int], Filler],
    collector: Callable[..., Any],
    wait_for: Callable[..., Any],
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]],
    tmp_path: Path,
    durability: str,
) -> None:
    """Stream through a full staging disk; returns nothing, asserts everything (see the module doc)."""
    state_fs = small_tmpfs("staging-fs", "4m")
    state_dir = state_fs / "state"
    c = collector(
        durability=durability,
        state_dir=state_dir,
        destinations=[{"name": "store", "url": f"file://{tmp_path / 'store'}", "roll": FAST_ROLL}],
    )
    stream, offsets = event_stream()
    before_full = Pause(len(stream) // 4)  # the disk fills while the stream is a quarter through
    after_full = Pause(len(stream) * 2 // 3)  # SIGKILL here, once batches were taken after the full disk
    client = ShipperClient(c.events_url, stream, offsets, pauses=[before_full, after_full])
    thread = threading.Thread(target=client.run, name="shipper-client", daemon=True)
    problems: list[str] = []
    restarts: list[str] = []
    filler = fillers(state_fs, STAGING_LEFT)
    started = time.monotonic()
    thread.start()
    try:
        # ---- the disk fills in the middle of the stream
        assert before_full.reached.wait(timeout=30), f"client stuck before the disk filled: {client.error!r}"
        for _ in range(50):
            # Fill while a staging file holds acknowledged lines (not just after a publication):
            # the batch that fails must not cost the ones before it. Else one batch more.
            if staged_bytes(state_dir) > 0:
                break
            next_batch = Pause(client.acked + 1)
            client.pauses.insert(0, next_batch)
            before_full.go.set()
            before_full = next_batch
            assert before_full.reached.wait(timeout=30), f"client stuck: {client.error!r}"
        filler.hold()
        assert free_bytes(state_fs) <= STAGING_LEFT, free_bytes(state_fs)
        full_from = len(client.answers)
        before_full.go.set()
        seen, refused = healthz_while_refused(c, client, full_from)
        healthy = [(after, status, text) for after, status, text in seen if status != 503]
        if healthy:
            after, status, text = healthy[0]
            problems.append(
                f"GET /healthz answered {status} {text} {after}s into the client's wait after POST /events "
                f"was refused with 503 ({refused.text!r}); the staging disk still full "
                f"({free_bytes(state_fs)} bytes free, the smallest batch over {min(BATCH_PLAN) * LINE_BYTES} "
                f"bytes), no batch sent since; /healthz said {[st for _, st, _ in seen]}"
            )
        wait_for(
            lambda: client.statuses(full_from)[503] >= REFUSED_WHILE_FULL or client.done.is_set(),
            20,
            f"{REFUSED_WHILE_FULL} refused batches while the staging disk is full",
        )
        full_answers = client.answers[full_from:]
        refused_while_full = [a for a in full_answers if a.status == 503]
        assert len(refused_while_full) >= REFUSED_WHILE_FULL, (
            f"the full staging disk refused no batch: {dict(client.statuses(full_from))}"
        )
        no_retry_after = [a for a in refused_while_full if not a.retry_after]
        if no_retry_after:
            problems.append(f"{len(no_retry_after)} 503s without Retry-After, e.g. {no_retry_after[0]}")
        left_in_staging = staging_files(state_dir)
        # For the record: space a refused batch did not give back (the filler only ever grows).
        free_while_full = free_bytes(state_fs)

        # ---- space comes back: retries succeed, /healthz recovers
        filler.remove()
        space_back = len(client.answers)
        deadline = time.monotonic() + HEALTHY_AGAIN_WITHIN
        health = healthz(c)
        while health.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            health = healthz(c)

        def taken_since_space_back() -> bool:
            return any(a.status == 200 for a in client.answers[space_back:])

        with contextlib.suppress(AssertionError):
            wait_for(taken_since_space_back, max(deadline - time.monotonic(), 0.5), "a batch taken")
        if durability == "fsync" and not taken_since_space_back():
            # After ENOSPC an fsync collector may refuse writes until it is restarted (the kernel
            # may have dropped pages it could not write): then restart it, as an operator would.
            if health.status_code == 200:
                problems.append(
                    f"GET /healthz answered 200 while every batch is still refused: {client.answers[-1].text!r}"
                )
            restarts.append(f"refused after space came back: {client.answers[-1].text!r}")
            c.stop()
            c.start()
        elif health.status_code != 200:
            problems.append(
                f"GET /healthz still {health.status_code} {health.text} {HEALTHY_AGAIN_WITHIN}s after "
                f"space came back; client saw {dict(client.statuses(space_back))} since"
            )
        wait_for(
            lambda: after_full.reached.is_set() or client.done.is_set(),
            30,
            f"the client to get on after the full disk (it saw {dict(client.statuses(space_back))})",
        )
        assert taken_since_space_back(), dict(client.statuses(space_back))

        # ---- (flush) SIGKILL while the client sends, restart on the same state and store
        posts = client.posts
        after_full.go.set()
        if durability == "flush":
            wait_for(lambda: client.posts > posts or client.done.is_set(), 10, "the client's next batch")
            c.kill()
            restarts.append("SIGKILL")
            c.start()
        wait_for(client.done.is_set, 45, "the client to finish the stream")
    finally:
        client.stop.set()
        for pause in (before_full, after_full):
            pause.go.set()
        thread.join(timeout=20)
        filler.remove()
    assert client.error is None, f"client failed: {client.error!r}; answers {dict(client.statuses())}"
    assert client.acked == len(stream), (client.acked, len(stream))

    c.stop()
    scan = scan_store(c.store)
    problems.extend(sequence_problems(scan, EVENTS))
    leftover = staging_files(state_dir)
    if leftover:
        problems.append(f"staging files left after a clean stop (never published): {leftover[:8]}")
    if client.accepted > EVENTS:
        problems.append(f"the collector accepted {client.accepted} events of {EVENTS}")
    elapsed = time.monotonic() - started
    summary = (
        f"{durability}: {elapsed:.1f}s; answers {dict(client.statuses())}; while full "
        f"{dict(Counter(a.status for a in full_answers))}; restarts {restarts}; free staging space "
        f"at the end of the full phase {free_while_full} (the filler left {STAGING_LEFT}); staging files "
        f"then {left_in_staging[:6]}"
    )
    print(summary)
    assert not problems, "\n".join([*problems, summary])
    # What the other integration tests use: it fails on any torn line or stray file too.
    assert_store_holds_the_sequence(read_local_store, c.store, EVENTS)


def test_full_staging_disk_tears_no_line_and_loses_no_acknowledged_event(
    small_tmpfs: Callable[..., Path],
    fillers: Callable[[Path, int], Filler],
    collector: Callable[..., Any],
    wait_for: Callable[..., Any],
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]],
    tmp_path: Path,
) -> None:
    """A: ``durability: flush``; the staging disk fills mid-stream, batches fail part-way through
    their writes (503 + Retry-After, /healthz 503), space comes back, the retries succeed, a
    SIGKILL and a restart, a clean stop: the whole stream is in the store once, every line whole."""
    full_staging_disk_scenario(
        small_tmpfs, fillers, collector, wait_for, read_local_store, tmp_path, durability="flush"
    )


def test_full_staging_disk_under_fsync_loses_nothing_and_stores_nothing_twice(
    small_tmpfs: Callable[..., Path],
    fillers: Callable[[Path, int], Filler],
    collector: Callable[..., Any],
    wait_for: Callable[..., Any],
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]],
    tmp_path: Path,
) -> None:
    """C: the same with ``durability: fsync``, without a SIGKILL: the collector is restarted (a
    clean restart) only if it still refuses writes once space is back. A clean stop must then
    publish every acknowledged event, and nothing that was refused."""
    full_staging_disk_scenario(
        small_tmpfs, fillers, collector, wait_for, read_local_store, tmp_path, durability="fsync"
    )


# ------------------------------------------------------------------- B: full store, another fs


def publish_failures(c: Any) -> int:
    return sum(log.read_text(errors="replace").count("publish failed") for log in c.logs if log.exists())


def test_publish_to_a_full_store_on_another_file_system_leaves_no_debris(
    small_tmpfs: Callable[..., Path],
    fillers: Callable[[Path, int], Filler],
    collector: Callable[..., Any],
    wait_for: Callable[..., Any],
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]],
) -> None:
    """B: staging on the normal disk, the store on a nearly full tmpfs: every publication is a
    cross-file-system copy that fails with ENOSPC part-way. While the collector retries, the store
    holds no partial hidden file; once space is back everything is published, once, and only
    complete ``.ndjson`` files are in the store."""
    store_fs = small_tmpfs("store-fs", "2m")
    store = store_fs / "store"
    c = collector(destinations=[{"name": "store", "url": f"file://{store}", "roll": FAST_ROLL}])
    assert os.stat(c.home).st_dev != os.stat(store_fs).st_dev, "staging and store share a file system"
    filler = fillers(store_fs, 16 * PAGE)  # less than one staging file: the copy fails part-way
    filler.hold()

    events = 400
    stream, offsets = event_stream(events)
    batches = [(offsets[i], offsets[min(i + 100, events)]) for i in range(0, events, 100)]
    problems: list[str] = []
    refused: list[tuple[int, int]] = []
    with httpx.Client(timeout=15.0) as client:

        def post(start: int, end: int) -> httpx.Response:
            return client.post(
                c.events_url,
                content=stream[start:end],
                headers={"X-Logbridge-Source": SOURCE, "X-Logbridge-Range": f"{start}-{end}"},
            )

        for start, end in batches:
            response = post(start, end)
            if response.status_code == 503:  # publication already failing: the sender retries later
                refused.append((start, end))
                continue
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 100, response.text
        assert len(refused) < len(batches), "no batch taken before the first publication failed"

        wait_for(lambda: publish_failures(c) >= 3, 20, "three failed publish attempts")
        debris = scan_store(store).stray
        if debris:
            problems.append(
                f"after {publish_failures(c)} failed publications the store holds {len(debris)} "
                f"partial/temporary files: {debris[:8]}"
            )

        filler.remove()
        for start, end in refused:
            wait_for(lambda s=start, e=end: post(s, e).status_code == 200, 10, f"batch {start}-{end} taken")
        wait_for(
            lambda: sum(scan_store(store).seqs.values()) >= events,
            15,
            f"all {events} events published once space is back",
        )
    c.stop()
    scan = scan_store(store)
    problems.extend(sequence_problems(scan, events))
    leftover = staging_files(c.home / "state")
    if leftover:
        problems.append(f"staging files left after a clean stop: {leftover[:8]}")
    assert not problems, "\n".join(problems)
    assert_store_holds_the_sequence(read_local_store, store, events)


# ------------------------------------------- D: restarts while the store cannot take the files


def test_acknowledged_files_survive_restarts_while_the_store_is_full(
    small_tmpfs: Callable[..., Path],
    fillers: Callable[[Path, int], Filler],
    collector: Callable[..., Any],
    wait_for: Callable[..., Any],
    read_local_store: Callable[[Path], dict[str, list[dict[str, Any]]]],
) -> None:
    """D: staging files that cannot be published stay acknowledged through clean restarts and
    SIGKILLs: each start's recovery queues them and compacts the journal, their publication
    fails, and the next start must still know their acknowledged sizes (it used to cut them to
    nothing and delete them). Once space is back, every event is published once and its range is
    still a duplicate."""
    store_fs = small_tmpfs("store-fs", "2m")
    store = store_fs / "store"
    c = collector(destinations=[{"name": "store", "url": f"file://{store}", "roll": FAST_ROLL}])
    filler = fillers(store_fs, 16 * PAGE)
    filler.hold()
    events = 300
    stream, offsets = event_stream(events)
    headers = {"X-Logbridge-Source": SOURCE, "X-Logbridge-Range": f"0-{len(stream)}"}
    r = httpx.post(c.events_url, content=stream, headers=headers, timeout=15.0)
    assert r.status_code == 200 and r.json()["accepted"] == events, r.text
    wait_for(lambda: publish_failures(c) >= 2, 20, "failed publications")
    for restart in ("stop", "kill", "stop", "kill"):
        failures = publish_failures(c)
        c.stop() if restart == "stop" else c.kill()
        c.start(require_healthy=False)  # recovery ran before it answers; its publication fails after
        assert staging_files(c.home / "state"), f"acknowledged staging files gone after a {restart}"
        wait_for(lambda f=failures: publish_failures(c) > f, 20, f"a failed publication after a {restart}")
    filler.remove()
    wait_for(lambda: sum(scan_store(store).seqs.values()) >= events, 20, "the backlog published")
    again = httpx.post(c.events_url, content=stream, headers=headers, timeout=15.0)
    assert again.json() == {"accepted": 0, "invalid": 0, "duplicate": True}, again.text
    c.stop()
    assert_store_holds_the_sequence(read_local_store, store, events)
