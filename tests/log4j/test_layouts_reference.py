"""XMLLayout, HTMLLayout, time zone options, unknown locations and ConsoleAppender ``Encoding``
against real log4j 1.2.17 (issue 12, points 1, 2, 4, 5), through the harness of `reference`.

The layouts are compared byte for byte on generated events (`random_events`: messages, NDCs,
thread and logger names and MDC entries that hold markup, ``]]>``, CR/LF, tabs, non-ASCII and
non-BMP characters, throwables, no location), ``LOGBRIDGE_EVENT_SEED`` picks another set.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from logbridge.log4j.charsets import python_codec

from .reference import Event, Run, run_java, run_python, standard_events

pytestmark = pytest.mark.java

# The one line of HTMLLayout's header that depends on when the file was opened.
_SESSION_START = re.compile(rb"Log session start time [^<]*<br>")


def _props(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "case.properties"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def _same(java: Run, py: Run) -> None:
    assert py.configure_messages == java.configure_messages
    assert py.stderr == java.stderr
    assert py.stdout_bytes == java.stdout_bytes
    assert sorted(py.files) == sorted(java.files)
    for name, data in java.files.items():
        assert py.files[name] == data, name


def _file_appender(name: str, layout: str, **options: str) -> list[str]:
    lines = [
        f"log4j.appender.{name}=org.apache.log4j.FileAppender",
        f"log4j.appender.{name}.File=${{dir}}/{name}.log",
        f"log4j.appender.{name}.layout={layout}",
    ]
    return lines + [f"log4j.appender.{name}.layout.{k}={v}" for k, v in options.items()]


# -- generated events --------------------------------------------------------------------------

_PIECES = [
    "a", "word", " ", "  ", "<", ">", "&", '"', "'", "]]>", "]]", "]", ">", "<![CDATA[", "&amp;",
    "\r\n", "\n", "\r", "\t", "é", "ü", "✓", "€", "😀", "𝄞", "\u00a0", "\ufeff", "\uffff", "\ue000",
    "</log4j:event>", "<td>", "null", "?", "%", "\\", "{", "}", "=",
]  # fmt: skip
_LEVELS = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def _text(rng: random.Random, most: int) -> str:
    return "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, most)))


def random_events(rng: random.Random, loggers: list[str], n: int) -> list[Event]:
    events = []
    ms = 1582124702441
    for _ in range(n):
        ms += rng.randint(0, 90_000_000)
        e = Event(rng.choice(loggers), rng.choice(_LEVELS), ms, _text(rng, 12))
        e.thread = rng.choice(["main", "pool-1-thread-2", 'worker <7> & "co"', "ünï ✓", _text(rng, 4)])
        if rng.random() < 0.4:
            e.ndc = _text(rng, 6)
        if rng.random() < 0.5:
            keys = [_text(rng, 3) or "k" for _ in range(rng.randint(1, 6))]
            e.mdc = {k: _text(rng, 4) for k in keys}
        if rng.random() < 0.3:
            e.throwable = [f"java.lang.IllegalStateException: {_text(rng, 5)}"] + [
                f"\tat com.example.{_text(rng, 2)}(Service.java:{rng.randint(1, 999)})"
                for _ in range(rng.randint(0, 4))
            ]
        if rng.random() < 0.15:
            e.line = None  # no location
        elif rng.random() < 0.3:
            e.file, e.method, e.cls = "A<b>.java", "do&it", 'c"d'
        events.append(e)
    return events


@pytest.mark.parametrize("layout", ["XMLLayout", "HTMLLayout"])
def test_xml_and_html_layouts_on_generated_events_same_as_log4j(
    layout: str, log4j_harness: Path, tmp_path: Path, paris_tz: None
) -> None:
    """Every option combination on its own file, the console too, 150 generated events."""
    seed = int(os.environ.get("LOGBRIDGE_EVENT_SEED", "20200219")) + len(layout)
    rng = random.Random(seed)
    cls = "org.apache.log4j.xml.XMLLayout" if layout == "XMLLayout" else "org.apache.log4j.HTMLLayout"
    if layout == "XMLLayout":
        variants: list[dict[str, str]] = [
            {},
            {"LocationInfo": "true"},
            {"Properties": "true"},
            {"LocationInfo": "true", "Properties": "TRUE "},
            {"LocationInfo": "yes", "Properties": "false"},  # a bad boolean: log4j's warning
        ]
    else:
        variants = [
            {},
            {"LocationInfo": "true"},
            {"Title": 'Audit <trail> & "ü"', "LocationInfo": "true"},
            {"Title": "", "LocationInfo": "nope"},
        ]
    names = [f"L{i}" for i in range(len(variants))]
    lines = ["log4j.rootLogger=TRACE, " + ", ".join([*names, "CON"])]
    for name, options in zip(names, variants, strict=True):
        lines += _file_appender(name, cls, **options)
    lines += [
        "log4j.appender.CON=org.apache.log4j.ConsoleAppender",
        f"log4j.appender.CON.layout={cls}",
        "log4j.appender.CON.layout.LocationInfo=true",
        # Rolled files: each gets the header again (counted in the size), no footer.
        "log4j.appender.ROLL=org.apache.log4j.RollingFileAppender",
        "log4j.appender.ROLL.File=${dir}/roll.log",
        "log4j.appender.ROLL.MaxFileSize=20KB",
        "log4j.appender.ROLL.MaxBackupIndex=3",
        "log4j.appender.ROLL.Append=false",
        f"log4j.appender.ROLL.layout={cls}",
        # Appending: log4j counts the file's length before its (unflushed) header.
        "log4j.appender.ROLLA=org.apache.log4j.RollingFileAppender",
        "log4j.appender.ROLLA.File=${dir}/rolla.log",
        "log4j.appender.ROLLA.MaxFileSize=10KB",
        f"log4j.appender.ROLLA.layout={cls}",
    ]
    lines[0] += ", ROLL, ROLLA"
    loggers = ["root", "com.example.deep.Service", "a<b>.c&d"]
    events = random_events(rng, loggers, 150) + standard_events(loggers)
    case = _props(tmp_path, lines)
    java = run_java(log4j_harness, case, loggers, events, tmp_path / "java")
    py = run_python(case, loggers, events, tmp_path / "py")
    for run in (java, py):
        run.files = {
            k: _SESSION_START.sub(b"Log session start time <time><br>", v) for k, v in run.files.items()
        }
        run.stdout_bytes = _SESSION_START.sub(b"Log session start time <time><br>", run.stdout_bytes)
    _same(java, py)
    assert "roll.log.2" in java.files and "rolla.log.1" in java.files  # rolled files compared too


def test_html_header_start_time_is_java_date_to_string(tmp_path: Path, paris_tz: None) -> None:
    """The masked line above: ``Date.toString()`` of the moment the file was opened."""
    from logbridge.log4j.htmllayout import HTMLLayoutFormatter

    header = HTMLLayoutFormatter().header()
    match = re.search(r"Log session start time (.*)<br>", header)
    assert match is not None
    assert re.fullmatch(r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d CES?T \d{4}", match.group(1))


# -- time zones (point 1) ----------------------------------------------------------------------

_ZONES = [
    "GMT+2", "GMT+02", "GMT+2:00", "GMT+02:00", "GMT-5", "GMT-05:30", "GMT+0530", "GMT+530", "GMT+123",
    "GMT-0", "GMT+0", "GMT+23:59", "GMT+24", "GMT+1:5", "GMT+12345", "GMT+", "GMT+:30", "GMT+2:",
    "GMT +2", "gmt+2", "UTC+2", "GMT", "UTC", "GMT0", "Etc/GMT+2", "Europe/Paris", "America/New_York",
    "Asia/Kolkata", "PST", "IST", "ECT", "EST", "CET", "EST5EDT", "Z", "Not/AZone", "../etc/passwd", "",
]  # fmt: skip


def test_time_zone_options_same_as_log4j(log4j_harness: Path, tmp_path: Path, paris_tz: None) -> None:
    """``%d{…}{zone}`` (EnhancedPatternLayout) and TTCCLayout ``TimeZone``: tz database ids, the
    JDK's old short ids, custom ``GMT±h[h][[:]mm]`` ids, and ids Java resolves to GMT."""
    lines = ["log4j.rootLogger=INFO, " + ", ".join(f"Z{i}" for i in range(2 * len(_ZONES)))]
    for i, zone in enumerate(_ZONES):
        lines += _file_appender(
            f"Z{i}",
            "org.apache.log4j.EnhancedPatternLayout",
            ConversionPattern=f"%d{{yyyy-MM-dd HH:mm:ss,SSS Z z}}{{{zone}}}|%d{{ISO8601}}{{{zone}}}%n",
        )
        lines += _file_appender(
            f"Z{len(_ZONES) + i}",
            "org.apache.log4j.TTCCLayout",
            DateFormat="yyyy-MM-dd HH:mm:ss Z z",
            TimeZone=zone,
        )
    # Winter and summer in both hemispheres.
    events = [Event("root", "INFO", ms, "m") for ms in (1582124702441, 1593561600000, 1609455599999)]
    case = _props(tmp_path, lines)
    java = run_java(log4j_harness, case, ["root"], events, tmp_path / "java")
    py = run_python(case, ["root"], events, tmp_path / "py")
    _same(java, py)


# -- unknown location (point 5) ----------------------------------------------------------------


def test_unknown_location_same_as_log4j(log4j_harness: Path, tmp_path: Path, paris_tz: None) -> None:
    """A record without a location: ``%L``, ``%F``, ``%M``, ``%C`` print ``?``; ``%l`` prints
    nothing in PatternLayout and ``null`` in EnhancedPatternLayout (padded like any value)."""
    pattern = "[%L][%l][%F][%M][%C][%5L][%-12l|][%.3l][%C{1}]%n"
    lines = ["log4j.rootLogger=TRACE, P, E, X, H"]
    lines += _file_appender("P", "org.apache.log4j.PatternLayout", ConversionPattern=pattern)
    lines += _file_appender("E", "org.apache.log4j.EnhancedPatternLayout", ConversionPattern=pattern)
    lines += _file_appender("X", "org.apache.log4j.xml.XMLLayout", LocationInfo="true")
    lines += _file_appender("H", "org.apache.log4j.HTMLLayout", LocationInfo="true")
    events = [
        Event("root", "INFO", 1582124702441, "known"),
        Event("root", "WARN", 1582124702442, "unknown", line=None),
    ]
    case = _props(tmp_path, lines)
    java = run_java(log4j_harness, case, ["root"], events, tmp_path / "java")
    py = run_python(case, ["root"], events, tmp_path / "py")
    for run in (java, py):
        run.files = {k: _SESSION_START.sub(b"", v) for k, v in run.files.items()}
    _same(java, py)


# -- ConsoleAppender Encoding (point 4) --------------------------------------------------------


def _console_case(tmp_path: Path, encoding: str | None, layout: str = "PatternLayout") -> Path:
    lines = [
        "log4j.rootLogger=INFO, CON",
        "log4j.appender.CON=org.apache.log4j.ConsoleAppender",
        f"log4j.appender.CON.layout=org.apache.log4j.{layout}",
    ]
    if layout == "PatternLayout":
        lines.append("log4j.appender.CON.layout.ConversionPattern=%p %m%n")
    if encoding is not None:
        lines.append(f"log4j.appender.CON.Encoding={encoding}")
        # The same charset on a file, appended to twice (Java writes UTF-16's BOM each time).
        lines[0] += ", FILE"
        lines += _file_appender("FILE", "org.apache.log4j.PatternLayout", ConversionPattern="%m%n")
        lines.append(f"log4j.appender.FILE.Encoding={encoding}")
    return _props(tmp_path, lines)


_UNENCODABLE = ["héllo wörld", "✓ done", "€ 5", "😀 smile", "日本語", "plain"]


@pytest.mark.parametrize(
    "encoding",
    [
        "ISO-8859-1",
        "US-ASCII",
        "UTF-8",
        "windows-1252",
        "UTF-16BE",
        "UTF-16",
        "UTF-32",
        "rot13",
        "NOT-A-CHARSET",
    ],
)
def test_console_encoding_same_as_log4j(
    encoding: str, log4j_harness: Path, tmp_path: Path, paris_tz: None
) -> None:
    """``Encoding`` on a ConsoleAppender: the bytes written are the charset's, a character it
    cannot hold is ``?``, no event is lost; an unknown charset warns and uses the default."""
    case = _console_case(tmp_path, encoding)
    events = [Event("root", "INFO", 1582124702441 + i, m) for i, m in enumerate(_UNENCODABLE)]
    for run_dir in ("java", "py"):
        (tmp_path / run_dir).mkdir()
        (tmp_path / run_dir / "FILE.log").write_bytes("before\n".encode(python_codec(encoding) or "utf-8"))
    java = run_java(log4j_harness, case, ["root"], events, tmp_path / "java")
    py = run_python(case, ["root"], events, tmp_path / "py")
    _same(java, py)
    lines = py.stdout_bytes.decode(python_codec(encoding) or "utf-8").splitlines()
    assert len(lines) == len(_UNENCODABLE)


@pytest.mark.parametrize("layout", ["PatternLayout", "HTMLLayout"])
def test_console_on_an_ascii_stdout_writes_question_marks_like_log4j(
    layout: str, log4j_harness: Path, tmp_path: Path, paris_tz: None
) -> None:
    """No ``Encoding``, a stdout whose charset is ASCII (a POSIX locale; Java's default charset
    US-ASCII): log4j writes ``?`` for what ASCII cannot hold; Python's own StreamHandler would
    drop the event with a ``--- Logging error ---`` traceback."""
    case = _console_case(tmp_path, None, layout)
    events = [Event("root", "INFO", 1582124702441 + i, m) for i, m in enumerate(_UNENCODABLE)]
    java = run_java(log4j_harness, case, ["root"], events, tmp_path / "java", ["-Dfile.encoding=US-ASCII"])
    py = run_python(case, ["root"], events, tmp_path / "py", stdout_encoding="ascii")
    for run in (java, py):
        run.stdout_bytes = _SESSION_START.sub(b"", run.stdout_bytes)
    _same(java, py)
    assert "Logging error" not in py.stderr
