"""Run the same properties file and events through real log4j 1.2.17 and through logbridge.

`run_java` drives ``harness/Harness.java`` (compiled once per session by the ``log4j_harness``
fixture); `run_python` configures logbridge from the same file and replays the same events as
LogRecords. Both return a `Run` so that tests compare them field by field, byte for byte.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.config
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from logbridge.log4j import levels
from logbridge.log4j.model import ROOT

JAR = Path("/usr/share/java/log4j-1.2.jar")
START_MS = 1582124000000  # LoggingEvent.startTime for %r
JAVA_FLAGS = [
    "-Duser.timezone=Europe/Paris",
    "-Duser.language=en",
    "-Duser.country=US",
    "-Dfile.encoding=UTF-8",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    "-Xshare:auto",
]


@dataclass
class Event:
    logger: str
    level: str
    millis: int
    message: str
    thread: str = "main"
    ndc: str | None = None
    mdc: dict[str, str] = field(default_factory=dict)
    cls: str = "com.example.Service"
    method: str = "handle"
    file: str = "Service.java"
    line: int | None = 42  # None: no location at all
    throwable: list[str] | None = None


@dataclass
class Run:
    threshold: str
    loggers: dict[str, dict[str, Any]]
    enabled: list[bool]
    configure_messages: list[str]  # the "log4j:" lines printed while configuring, sorted
    stdout: str
    stderr: str
    files: dict[str, bytes]
    stdout_bytes: bytes = b""  # stdout as written, whatever the charset


EXTRA_VARIABLES: dict[str, str] = {}


def variables(out_dir: Path) -> dict[str, str]:
    """The ${} variables of a run (Java system properties on the log4j side)."""
    return {"dir": str(out_dir), "dip.home": str(out_dir), **EXTRA_VARIABLES}


def standard_events(loggers: list[str], base_ms: int = 1582124702441) -> list[Event]:
    """Every level on every logger, with MDC, NDC, threads, locations and a throwable."""
    events = []
    i = 0
    for name in loggers:
        for level in ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"):
            e = Event(name, level, base_ms + i * 1037, f"event {i} at {level} on {name}")
            if i % 3 == 1:
                e.mdc = {"user": "admin", "apiCall": "/api/projects/get-summary"}
                e.thread = "qtp-worker-7"
            if i % 4 == 2:
                e.ndc = "req-17 step2"
            if level == "ERROR":
                e.throwable = [
                    "java.lang.IllegalStateException: boom",
                    "\tat com.example.Service.handle(Service.java:42)",
                    "\tat com.example.Main.main(Main.java:7)",
                ]
            if i % 5 == 3:
                e.message = "héllo wörld ✓ " + e.message
            events.append(e)
            i += 1
    return events


def _esc(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _read_files(root: Path) -> dict[str, bytes]:
    out = {}
    if root.exists():
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def _log4j_lines(text: str, out_dir: Path) -> list[str]:
    text = text.replace(str(out_dir), "<dir>")
    # LogLog.debug lines ("log4j: ...", with log4j.debug=true) are log4j's narration, not messages.
    return sorted(line for line in text.splitlines() if line.startswith(("log4j:WARN", "log4j:ERROR")))


def run_java(
    harness_dir: Path,
    props: Path,
    loggers: list[str],
    events: list[Event],
    out_dir: Path,
    java_flags: list[str] | None = None,
) -> Run:
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = [f"props\t{_esc(str(props))}", f"starttime\t{START_MS}"]
    spec += [f"sysprop\t{k}\t{_esc(v)}" for k, v in variables(out_dir).items()]
    spec += [f"logger\t{_esc(n)}" for n in loggers]
    for e in events:
        fields = [
            "event", e.logger, e.level, str(e.millis), e.thread, e.message, e.ndc, e.cls, e.method, e.file,
            None if e.line is None else str(e.line), None if e.throwable is None else "\n".join(e.throwable),
        ]  # fmt: skip
        for k, v in e.mdc.items():
            fields += [k, v]
        spec.append("\t".join(f if f in ("event",) else _esc(f) for f in fields))
    spec_path = out_dir.parent / (out_dir.name + ".spec")
    report_path = out_dir.parent / (out_dir.name + ".json")
    spec_path.write_text("\n".join(spec) + "\n", encoding="utf-8")
    cp = f"{JAR}{os.pathsep}{harness_dir}"
    proc = subprocess.run(
        ["java", *JAVA_FLAGS, *(java_flags or []), "-cp", cp, "Harness", str(spec_path), str(report_path)],
        capture_output=True,
        timeout=60,
        cwd=out_dir,
    )
    if proc.returncode != 0:
        raise AssertionError(f"harness failed: {proc.stderr.decode(errors='replace')}")
    rep = json.loads(report_path.read_text(encoding="utf-8"))
    return Run(
        threshold=rep["threshold"],
        loggers=rep["loggers"],
        enabled=rep["enabled"],
        configure_messages=_log4j_lines(rep["configure_stderr"] + rep["configure_stdout"], out_dir),
        stdout=rep["stdout"],
        stderr=rep["stderr"].replace(str(out_dir), "<dir>"),
        files=_read_files(out_dir),
        stdout_bytes=base64.b64decode(rep["stdout_b64"]),
    )


def make_record(e: Event) -> logging.LogRecord:
    levelno = levels.LEVELS[e.level]
    if e.line is None:  # what makeLogRecord and records from elsewhere carry: no location
        r = logging.LogRecord(e.logger, levelno, None, None, e.message, None, None)  # type: ignore[arg-type]
    else:
        r = logging.LogRecord(
            e.logger, levelno, "/src/" + e.file, e.line, e.message, None, None, func=e.method
        )
    r.created = e.millis / 1000
    r.msecs = e.millis % 1000
    r.relativeCreated = float(e.millis - START_MS)
    r.threadName = e.thread
    if e.line is not None:
        r.className = e.cls
    r.mdc = dict(e.mdc)
    r.ndc = e.ndc
    if e.throwable is not None:
        r.exc_text = "\n".join(e.throwable)
    return r


def _get_logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT else logging.getLogger(name)


def python_logger_report(names: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in names:
        lg = _get_logger(name)
        reached: list[str] = []
        c: logging.Logger | None = lg
        while c is not None:
            reached.extend(h.name or "?" for h in c.handlers)
            c = c.parent if c.propagate else None
        own = lg.level
        out[name] = {
            "level": None if own == logging.NOTSET else levels.log4j_name(own),
            "effective": levels.log4j_name(lg.getEffectiveLevel()),
            "additivity": lg.propagate,
            "reached": reached,
        }
    return out


def reset_logging() -> None:
    root = logging.getLogger()
    for lg in [
        root,
        *[v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)],
    ]:
        for h in list(lg.handlers):
            lg.removeHandler(h)
            try:
                h.close()
            except Exception:
                pass
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
        lg.disabled = False
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)


class _PhaseBytes(io.RawIOBase):
    """Like the harness's TeePrintStream: what is written while configuring goes to ``cfg``,
    afterwards to ``ev``; console handlers bind one stream while configuring."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg, self.ev = io.BytesIO(), io.BytesIO()
        self.configuring = True

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        return (self.cfg if self.configuring else self.ev).write(bytes(b))


def _phase_stream(encoding: str) -> tuple[io.TextIOWrapper, _PhaseBytes]:
    """A text stream like ``sys.stdout`` (an encoding, a ``buffer``) over phase-split bytes."""
    raw = _PhaseBytes()
    return io.TextIOWrapper(raw, encoding=encoding, write_through=True), raw  # type: ignore[arg-type]


def run_python(
    props: Path, loggers: list[str], events: list[Event], out_dir: Path, stdout_encoding: str = "utf-8"
) -> Run:
    from logbridge import log4j

    out_dir.mkdir(parents=True, exist_ok=True)
    saved = sys.stdout, sys.stderr, logging.lastResort
    out, out_raw = _phase_stream(stdout_encoding)
    err, err_raw = _phase_stream("utf-8")
    cwd = os.getcwd()
    try:
        os.chdir(out_dir)
        reset_logging()
        sys.stdout, sys.stderr = out, err
        model = log4j.load_model(props, **variables(out_dir))
        err.write("".join(m + "\n" for m in model.log4j_messages()))
        cfg = log4j.translate.to_dict_config(model)
        logging.config.dictConfig(cfg)
        logging.lastResort = log4j._NoAppenderWarning()
        out_raw.configuring = err_raw.configuring = False
        enabled = []
        for e in events:
            rec = make_record(e)
            lg = _get_logger(e.logger)
            # Logger.log(): the logger's effective level decides whether the event is made; the
            # repository threshold is on every handler (see translate.py).
            on = lg.isEnabledFor(rec.levelno)
            enabled.append(on and rec.levelno >= model.threshold)
            if on:
                lg.handle(rec)
        report = python_logger_report(loggers)
        reset_logging()  # closes (flushes) every handler, like LogManager.shutdown()
        out.flush()
        err.flush()
    finally:
        sys.stdout, sys.stderr, logging.lastResort = saved
        os.chdir(cwd)
    threshold = levels.log4j_name(model.threshold)
    return Run(
        threshold=threshold,
        loggers=report,
        enabled=enabled,
        configure_messages=_log4j_lines(
            err_raw.cfg.getvalue().decode("utf-8")
            + out_raw.cfg.getvalue().decode(stdout_encoding, "replace"),
            out_dir,
        ),
        stdout=out_raw.ev.getvalue().decode("utf-8", "replace"),
        stderr=err_raw.ev.getvalue().decode("utf-8").replace(str(out_dir), "<dir>"),
        files=_read_files(out_dir),
        stdout_bytes=out_raw.ev.getvalue(),
    )
