"""logbridge against real log4j 1.2.17, one properties file at a time (tests/log4j/cases/).

For each case, log4j (through harness/Harness.java) and logbridge read the same file and receive
the same events; the test compares, byte for byte: every logger's level, additivity and the
appenders its events reach; which events are logged; the ``log4j:`` messages printed while
configuring; what reached stdout and stderr; and every file written, rolled files included.

A case can steer the run with ``# @`` comment lines:
``# @loggers a, b.c`` (more loggers), ``# @repeat N`` (the event list N times),
``# @pad N`` (messages padded to N chars), ``# @mdc k=v,...`` (more MDC keys), ``# @precreate NAME ISO-TIME`` (a file that exists
before configuration, with that modification time).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logbridge.log4j.properties import load_properties

from .reference import EXTRA_VARIABLES, Event, assert_same_messages, run_java, run_python, standard_events

CASES = sorted((Path(__file__).parent / "cases").glob("*.properties"))
# The sample shipped in config/ is checked like any case.
CASES.append(Path(__file__).parents[2] / "config" / "dku-log4j.properties")

pytestmark = pytest.mark.java


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith("# @"):
            key, _, rest = line[3:].partition(" ")
            out.setdefault(key, []).append(rest.strip())
    return out


def _loggers(path: Path, d: dict[str, list[str]]) -> list[str]:
    if path.name == "dku-log4j.properties":
        d.setdefault("json-lines", [""])
    props = load_properties(path)
    names = ["root"]
    for key in props.names():
        for prefix in ("log4j.logger.", "log4j.category."):
            if key.startswith(prefix) and key[len(prefix) :]:
                name = key[len(prefix) :]
                names += [name, name + ".child"]
    for extra in d.get("loggers", []):
        names += [n.strip() for n in extra.split(",") if n.strip()]
    names.append("unconfigured.logger")
    return list(dict.fromkeys(names))


def _events(loggers: list[str], d: dict[str, list[str]]) -> list[Event]:
    repeat = int(d.get("repeat", ["1"])[0])
    pad = int(d.get("pad", ["0"])[0])
    extra_mdc = dict(kv.split("=", 1) for spec in d.get("mdc", []) for kv in spec.split(","))
    events: list[Event] = []
    for r in range(repeat):
        for e in standard_events(loggers, base_ms=1582124702441 + r * 100_000):
            if pad:
                e.message = e.message.ljust(pad, "x")
            if e.mdc:
                e.mdc.update(extra_mdc)
            events.append(e)
    return events


def _precreate(out_dir: Path, d: dict[str, list[str]]) -> None:
    for spec in d.get("precreate", []):
        name, when = spec.split()
        p = out_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("line written before configuration\n", encoding="utf-8")
        ts = dt.datetime.fromisoformat(when).timestamp()
        os.utime(p, (ts, ts))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_same_as_log4j(case: Path, log4j_harness: Path, tmp_path: Path, paris_tz: None) -> None:
    d = _directives(case)
    loggers = _loggers(case, d)
    events = _events(loggers, d)
    _precreate(tmp_path / "java", d)
    _precreate(tmp_path / "py", d)
    with _syslog_listener() as packets:
        java = run_java(log4j_harness, case, loggers, events, tmp_path / "java")
        java_packets = packets()
        py = run_python(case, loggers, events, tmp_path / "py")
        py_packets = packets()

    assert py_packets == java_packets
    assert_same_messages(py, java)
    assert py.threshold == java.threshold
    assert py.loggers == java.loggers
    assert py.enabled == java.enabled
    assert py.stdout == java.stdout
    assert py.stderr == java.stderr
    assert sorted(py.files) == sorted(java.files)
    for name in java.files:
        if "json-lines" in d or name.endswith(("generic.log", "authfail.log")):
            # JSONAuditLayout files: the Java side is a stand-in, compare the envelopes' content.
            assert _json_lines(py.files[name]) == _json_lines(java.files[name]), f"{name} differs"
        else:
            assert py.files[name] == java.files[name], f"{name} differs"


@contextlib.contextmanager
def _syslog_listener() -> Iterator[Callable[[], list[bytes]]]:
    """A UDP socket on loopback, offered to the cases as ${syslog.port}. Datagrams sent on
    loopback are queued by the time sendto() returns, so draining after a run is complete."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    EXTRA_VARIABLES["syslog.port"] = str(sock.getsockname()[1])

    def drain() -> list[bytes]:
        out = []
        while True:
            try:
                out.append(sock.recv(65536))
            except BlockingIOError:
                return out

    try:
        yield drain
    finally:
        EXTRA_VARIABLES.pop("syslog.port", None)
        sock.close()


def _json_lines(data: bytes) -> list[object]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


_PATTERN_ALPHABET = [
    "%", "%", "%", "-", ".", "1", "2", "5", "0", "{", "}", "c", "C", "d", "F", "l", "L", "m", "M",
    "n", "p", "r", "t", "x", "X", "q", " ", "|", "user", "{1}", "{2}", "{user}", "{ISO8601}",
    "{HH:mm:ss}", "{yyyy-MM-dd'T'HH:mm:ss.SSSZ}", "{ABSOLUTE}", "sn", "level", "logger", "{1.}", "{-1}",
    "{UTC}", "throwable", "_", "é",
]  # fmt: skip


@pytest.mark.parametrize("layout", ["PatternLayout", "EnhancedPatternLayout"])
def test_random_conversion_patterns_same_as_log4j(
    layout: str, log4j_harness: Path, tmp_path: Path, paris_tz: None
) -> None:
    """80 generated patterns, odd ones included, each on its own file appender."""
    import random

    rng = random.Random(int(os.environ.get("LOGBRIDGE_PATTERN_SEED", "20200219")) + len(layout))
    lines = ["log4j.rootLogger=TRACE, " + ", ".join(f"P{i}" for i in range(80))]
    for i in range(80):
        pattern = "".join(rng.choice(_PATTERN_ALPHABET) for _ in range(rng.randint(1, 14)))
        lines += [
            f"log4j.appender.P{i}=org.apache.log4j.FileAppender",
            f"log4j.appender.P{i}.File=${{dir}}/p{i}.log",
            f"log4j.appender.P{i}.layout=org.apache.log4j.{layout}",
            f"log4j.appender.P{i}.layout.ConversionPattern={pattern.replace(chr(92), chr(92) * 2)}|%n",
        ]
    case = tmp_path / "random.properties"
    case.write_text("\n".join(lines) + "\n", encoding="latin-1")
    loggers = ["root", "com.example.deep.Service"]
    events = standard_events(loggers)
    java = run_java(log4j_harness, case, loggers, events, tmp_path / "java")
    py = run_python(case, loggers, events, tmp_path / "py")
    assert_same_messages(py, java)
    assert sorted(py.files) == sorted(java.files)
    for name in java.files:
        assert py.files[name].decode() == java.files[name].decode(), (name, lines)


_DATE_ALPHABET = list("GyMdkHmsSEDFwWahKzZYuXL") + ["yyyy", "MM", "MMM", "MMMM", "dd", "HH", "SSS", "EEEE",
                                                     "''", "'T'", "'o''clock'", " ", "-", ":", ",", "."]  # fmt: skip
# Year ends (week-year edges), DST switches in Paris, midnight, noon, a leap day, a 1990s date.
_INSTANTS = [
    1577833199999, 1577833200000, 1609455600000, 1609541999123, 1585443599000, 1585443600000,
    1603588500000, 1603591200000, 1582930800007, 1583017200999, 1582124702441, 820454400000,
    1230764400000, 1262300399000, 1293836400000,
]  # fmt: skip


def test_random_date_patterns_same_as_log4j(log4j_harness: Path, tmp_path: Path, paris_tz: None) -> None:
    """60 generated SimpleDateFormat patterns over instants chosen for their edges."""
    import random

    rng = random.Random(int(os.environ.get("LOGBRIDGE_PATTERN_SEED", "20200219")))
    n = 60
    lines = ["log4j.rootLogger=INFO, " + ", ".join(f"D{i}" for i in range(n))]
    for i in range(n):
        pattern = "".join(rng.choice(_DATE_ALPHABET) for _ in range(rng.randint(1, 8)))
        lines += [
            f"log4j.appender.D{i}=org.apache.log4j.FileAppender",
            f"log4j.appender.D{i}.File=${{dir}}/d{i}.log",
            f"log4j.appender.D{i}.layout=org.apache.log4j.PatternLayout",
            f"log4j.appender.D{i}.layout.ConversionPattern=%d{{{pattern}}}|%n",
        ]
    case = tmp_path / "dates.properties"
    case.write_text("\n".join(lines) + "\n", encoding="latin-1")
    events = [Event("root", "INFO", ms, "m") for ms in _INSTANTS]
    java = run_java(log4j_harness, case, ["root"], events, tmp_path / "java")
    py = run_python(case, ["root"], events, tmp_path / "py")
    assert_same_messages(py, java)
    for name in java.files:
        assert py.files[name].decode() == java.files[name].decode(), (name, lines)
