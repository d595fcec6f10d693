"""configure(), the commands, the formatter on its own, and the handlers' rolling behaviour."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import warnings
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import logbridge
from logbridge import context
from logbridge.cli import cli
from logbridge.errors import ConfigError
from logbridge.log4j import PatternLayoutFormatter
from logbridge.log4j.appenders import DailyRollingFileAppenderHandler, RollingFileAppenderHandler
from logbridge.log4j.dateformat import DAY, HOUR, SimpleDateFormat, next_boundary_ms, periodicity

from .reference import reset_logging

REPO = Path(__file__).parents[2]


pytestmark = pytest.mark.usefixtures("clean_logging")


def _record(msg: str = "hello", level: int = logging.INFO, name: str = "a.b.c") -> logging.LogRecord:
    r = logging.LogRecord(name, level, "/src/app/service.py", 12, msg, None, None, func="run")
    r.created = 1582124702.441
    r.msecs = 441
    r.relativeCreated = 1234.9
    r.threadName = "main"
    return r


# -- PatternLayoutFormatter --------------------------------------------------------------------


def test_formatter_takes_mdc_and_ndc_from_logbridge_context(paris_tz: None) -> None:
    f = PatternLayoutFormatter("%d{ISO8601} %-5p [%X{user}] %X %x %C %l %r %m%n")
    context.clear_ndc()
    with context.mdc(user="admin", n=3, ok=True):
        context.push_ndc("req-1")
        try:
            line = f.format(_record(level=logging.WARNING))
        finally:
            context.clear_ndc()
    assert line == (
        "2020-02-19 16:05:02,441 WARN  [admin] {{n,3}{ok,true}{user,admin}} req-1 service "
        "service.run(service.py:12) 1234 hello\n"
    )


def test_record_mdc_ndc_and_class_name_win_over_context() -> None:
    f = PatternLayoutFormatter("%X{user}|%x|%C{1}|%c{1}|%.2p|%m%n")
    r = _record(level=logging.CRITICAL)
    r.mdc, r.ndc, r.className = {"user": "bob"}, None, "com.acme.Billing"
    with context.mdc(user="admin"):
        assert f.format(r) == "bob||Billing|c|AL|hello\n"


def test_throwable_follows_the_line_with_a_real_exception() -> None:
    f = PatternLayoutFormatter("%p %m%n")
    try:
        raise ValueError("boom")
    except ValueError:
        r = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    text = f.format(r)
    lines = text.split("\n")
    assert lines[0] == "ERROR failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-2] == "ValueError: boom" and lines[-1] == ""


def test_formatter_in_a_plain_stdlib_handler() -> None:
    stream = io.StringIO()
    h = logging.StreamHandler(stream)
    h.terminator = ""  # the pattern carries its own %n
    h.setFormatter(PatternLayoutFormatter("%-5p %c - %m%n"))
    lg = logging.getLogger("plain.stdlib")
    lg.addHandler(h)
    lg.propagate = False
    lg.warning("careful")
    assert stream.getvalue() == "WARN  plain.stdlib - careful\n"


def test_log4j_date_names_and_offsets(paris_tz: None) -> None:
    ms = 1582124702441  # Wed 19 Feb 2020, 16:05:02.441 in Paris
    assert SimpleDateFormat("EEEE d MMMM yyyy, h:mm a z Z XXX").format_ms(ms) == (
        "Wednesday 19 February 2020, 4:05 PM CET +0100 +01:00"
    )
    assert SimpleDateFormat("''yy'' D w u k K S SSSS").format_ms(ms) == "'20' 50 8 3 16 4 441 0441"
    assert periodicity(SimpleDateFormat("'.'yyyy-MM-dd")) == DAY
    assert periodicity(SimpleDateFormat("'.'yyyy-MM-dd-HH")) == HOUR
    assert periodicity(SimpleDateFormat("'static'")) is None


# -- handlers ----------------------------------------------------------------------------------


def test_rolling_writes_then_rolls_to_numbered_backups(tmp_path: Path) -> None:
    h = RollingFileAppenderHandler(str(tmp_path / "sub" / "app.log"), max_file_size=100, max_backup_index=2)
    h.setFormatter(PatternLayoutFormatter("%m%n"))
    for i in range(7):
        h.handle(_record("x" * 59 + str(i)))  # 61 chars a line: every second line rolls
    h.close()
    names = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert names == ["app.log", "app.log.1", "app.log.2"]
    assert (tmp_path / "sub" / "app.log.1").read_text().endswith("5\n")
    assert (tmp_path / "sub" / "app.log.2").read_text().endswith("3\n")
    assert (tmp_path / "sub" / "app.log").read_text().endswith("6\n")


def test_daily_rolling_at_the_boundary_with_a_clock(tmp_path: Path, paris_tz: None) -> None:
    now = [1582153199.0]  # 2020-02-19 23:59:59 in Paris
    h = DailyRollingFileAppenderHandler(str(tmp_path / "d.log"), clock=lambda: now[0])
    h.setFormatter(PatternLayoutFormatter("%m%n"))
    h.handle(_record("before midnight"))
    now[0] += 2  # 00:00:01 on the 20th
    h.handle(_record("after midnight"))
    h.close()
    assert (tmp_path / "d.log.2020-02-19").read_text() == "before midnight\n"
    assert (tmp_path / "d.log").read_text() == "after midnight\n"
    assert next_boundary_ms(1582153199000, DAY) == 1582153200000


def test_daily_rolling_pattern_without_period_never_rolls(tmp_path: Path) -> None:
    # log4j throws IllegalStateException into every logging call here; logbridge just writes.
    h = DailyRollingFileAppenderHandler(str(tmp_path / "n.log"), date_pattern="'.static'")
    h.setFormatter(PatternLayoutFormatter("%m%n"))
    h.handle(_record("one"))
    h.close()
    assert (tmp_path / "n.log").read_text() == "one\n"


# -- configure() -------------------------------------------------------------------------------


PROPS = """\
log4j.rootLogger=INFO, F
log4j.appender.F=org.apache.log4j.FileAppender
log4j.appender.F.File=${out}/app.log
log4j.appender.F.layout=org.apache.log4j.PatternLayout
log4j.appender.F.layout.ConversionPattern=%p %c - %m%n
log4j.logger.noisy=ERROR
log4j.appender.F.Nonsense=1
"""


def test_configure_from_properties(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "log4j.properties"
    f.write_text(PROPS)
    model = logbridge.configure(f, out=str(tmp_path / "logs"))
    assert "No such property [nonsense]" in capsys.readouterr().err
    logging.getLogger("svc").info("started")
    logging.getLogger("noisy").warning("dropped")
    logging.getLogger("svc").debug("dropped too")
    for h in logging.getLogger().handlers:
        h.flush()
    assert (tmp_path / "logs" / "app.log").read_text() == "INFO svc - started\n"
    assert model is None or model.root.appenders == ["F"]


def test_configure_from_yaml_json_and_dict(tmp_path: Path) -> None:
    from logbridge.log4j import translate_file

    f = tmp_path / "log4j.properties"
    f.write_text(PROPS.replace("log4j.appender.F.Nonsense=1\n", ""))
    config, _ = translate_file(f, out=str(tmp_path / "logs"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "c.json").write_text(json.dumps(config))
    for source in (tmp_path / "c.yaml", tmp_path / "c.json", config):
        reset_logging()
        logbridge.configure(source)
        assert [h.name for h in logging.getLogger().handlers] == ["F"]
        assert logging.getLogger("noisy").level == logging.ERROR


def test_configure_rejects_a_broken_yaml_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nhandlers: {x: {class: no.such.Handler}}\n")
    with pytest.raises(ConfigError, match="bad.yaml: logging.config.dictConfig rejected it"):
        logbridge.configure(bad)


def test_no_appender_warning_instead_of_last_resort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "empty.properties"
    f.write_text("log4j.logger.x=INFO\n")
    logbridge.configure(f)
    logging.getLogger("x").warning("one")
    logging.getLogger("x").warning("two")
    err = capsys.readouterr().err
    assert err.count("log4j:WARN No appenders could be found for logger (x).") == 1
    assert "one" not in err


# -- commands ----------------------------------------------------------------------------------


def test_convert_yaml_and_json_load_in_dict_config(tmp_path: Path) -> None:
    runner = CliRunner()
    case = REPO / "tests" / "log4j" / "cases" / "10-filters.properties"
    out_y = runner.invoke(cli, ["log4j", "convert", str(case), "-D", f"dir={tmp_path}"])
    out_j = runner.invoke(cli, ["log4j", "convert", str(case), "--format", "json", "-D", f"dir={tmp_path}"])
    assert out_y.exit_code == 0 and out_j.exit_code == 0
    assert yaml.safe_load(out_y.output) == json.loads(out_j.output)
    logging.config.dictConfig(json.loads(out_j.output))
    assert sorted(h.name or "" for h in logging.getLogger().handlers) == ["MATCH", "RANGE", "STR"]


def test_check_exit_codes_and_line_numbers() -> None:
    runner = CliRunner()
    cases = REPO / "tests" / "log4j" / "cases"
    ok = runner.invoke(cli, ["log4j", "check", str(cases / "01-basic-console.properties")])
    assert ok.exit_code == 0
    bad = runner.invoke(cli, ["log4j", "check", str(cases / "13-option-names.properties")])
    assert bad.exit_code == 1
    assert "13-option-names.properties:6: log4j:WARN No such property [maxfilesize]" in bad.output
    missing = runner.invoke(cli, ["log4j", "check", str(cases / "17-missing-parts.properties")])
    assert (
        ":4: log4j:ERROR No layout set for the appender named [NOLAYOUT]. (at the first event: appender "
        "NOLAYOUT drops every event)" in missing.output
    )
    notes = runner.invoke(cli, ["log4j", "check", str(cases / "05-additivity.properties")])
    assert notes.exit_code == 1
    assert ":15: logbridge: log4j ignores log4j.additivity.orphan" in notes.output


def test_check_missing_file_is_exit_2() -> None:
    from logbridge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["log4j", "check", "/nonexistent/log4j.properties"])
    assert exc.value.code == 2


def test_config_logging_yaml_is_the_conversion_of_dku_log4j_properties() -> None:
    """config/logging.yaml must stay `logbridge log4j convert config/dku-log4j.properties`."""
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(REPO / "config")
    try:
        result = runner.invoke(cli, ["log4j", "convert", "dku-log4j.properties"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    expected = (REPO / "config" / "logging.yaml").read_text(encoding="utf-8")
    assert result.output == expected, (
        "config/logging.yaml is stale: run `cd config && logbridge log4j convert dku-log4j.properties "
        "> logging.yaml`"
    )


# -- what has no Python equivalent -------------------------------------------------------------


def test_unknown_appender_class_falls_back_to_stderr_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "custom.properties"
    f.write_text(
        "log4j.rootLogger=INFO, MAIL\n"
        "log4j.appender.MAIL=org.apache.log4j.net.SMTPAppender\n"
        "log4j.appender.MAIL.To=ops@example.com\n"
        "log4j.appender.MAIL.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.MAIL.layout.ConversionPattern=mail: %p %m%n\n"
        "log4j.appender.MAIL.errorhandler=org.apache.log4j.varia.FallbackErrorHandler\n"
        "log4j.reset=true\n"
    )
    runner = CliRunner()
    out = runner.invoke(cli, ["log4j", "check", str(f)])
    assert out.exit_code == 1
    assert (
        f"{f}:2: logbridge: appender MAIL: org.apache.log4j.net.SMTPAppender has no Python equivalent"
        in out.output
    )
    assert "log4j.appender.MAIL.errorhandler has no Python equivalent" in out.output
    assert "log4j.reset has no Python equivalent" in out.output
    from logbridge.log4j import Log4jCompatibilityWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logbridge.configure(f)
    messages = [str(w.message) for w in caught if w.category is Log4jCompatibilityWarning]
    assert any(
        m.endswith(
            "custom.properties:2: appender MAIL: org.apache.log4j.net.SMTPAppender has no "
            "Python equivalent; its events go to stderr through its layout instead (none is lost)"
        )
        for m in messages
    ), messages
    assert len(messages) == 3
    logging.getLogger("app").error("disk full")
    assert "mail: ERROR disk full\n" in capsys.readouterr().err


def test_bad_ttcc_date_format_is_a_note_not_a_crash(tmp_path: Path) -> None:
    from logbridge.log4j import load_model

    f = tmp_path / "ttcc.properties"
    f.write_text(
        "log4j.rootLogger=INFO, T\nlog4j.appender.T=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.T.layout=org.apache.log4j.TTCCLayout\nlog4j.appender.T.layout.DateFormat=yyyy qq\n"
    )
    model = load_model(f)
    [note] = [d for d in model.diagnostics if d.kind == "python"]
    assert note.line == 4 and "Illegal pattern character 'q'" in note.message


def test_substitution_loop_is_a_note_not_a_crash(tmp_path: Path) -> None:
    from logbridge.log4j import load_model

    f = tmp_path / "loop.properties"
    f.write_text("a=x${b}\nb=${a}\nlog4j.logger.l=${a}\n")
    model = load_model(f)
    assert model.loggers["l"].level == logging.DEBUG  # "x" is no level name: DEBUG, as log4j
    assert any("substitution loops (a -> b -> a)" in d.message for d in model.diagnostics)


def test_syslog_appender_sends_log4j_packets(tmp_path: Path) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    port = sock.getsockname()[1]
    f = tmp_path / "syslog.properties"
    f.write_text(
        "log4j.rootLogger=INFO, SYS\n"
        "log4j.appender.SYS=org.apache.log4j.net.SyslogAppender\n"
        f"log4j.appender.SYS.SyslogHost=127.0.0.1:{port}\n"
        "log4j.appender.SYS.Facility=LOCAL1\n"
        "log4j.appender.SYS.FacilityPrinting=true\n"
        "log4j.appender.SYS.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.SYS.layout.ConversionPattern=%p %c %m\n"
    )
    try:
        logbridge.configure(f)
        logging.getLogger("svc").warning("disk at 91%")
        data, _ = sock.recvfrom(65536)
    finally:
        sock.close()
    # LOCAL1 (17) * 8 + WARN (4) = 140
    assert data == b"<140>local1:WARN svc disk at 91%"


def test_shipped_dku_config_routes_audit_events_per_topic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], paris_tz: None
) -> None:
    """config/dku-log4j.properties + logbridge.audit: one file per topic, nothing on the console."""
    from logbridge import audit

    logbridge.configure(REPO / "config" / "dku-log4j.properties", **{"dip.home": str(tmp_path)})
    with context.mdc(user="admin"):
        audit.emit("generic", "login", authUser="admin")
        audit.emit("authfail", "auth-failed", authUser="mallory")
    logging.getLogger("dss.node").info("node started")
    for h in (
        logging.getLogger("dku.audit.generic").handlers + logging.getLogger("dku.audit.authfail").handlers
    ):
        h.flush()
    audit_dir = tmp_path / "run" / "audit"
    generic = [json.loads(line) for line in (audit_dir / "generic.log").read_text().splitlines()]
    authfail = [json.loads(line) for line in (audit_dir / "authfail.log").read_text().splitlines()]
    assert [e["message"]["msgType"] for e in generic] == ["login"]
    assert generic[0]["logger"] == "dku.audit.generic" and generic[0]["mdc"] == {"user": "admin"}
    assert [e["message"]["msgType"] for e in authfail] == ["auth-failed"]
    err = capsys.readouterr().err
    assert "node started" in err and "login" not in err  # additivity=false on dku.audit


def test_async_handler_feeds_named_handlers_in_order(tmp_path: Path) -> None:
    """What PropertyConfigurator cannot express (an AsyncAppender with appenders) works from the
    dictConfig side: the listener thread writes to the named handlers, in order, until close."""
    logging.config.dictConfig(
        {
            "version": 1,
            "formatters": {
                "F": {"()": "logbridge.log4j.pattern.PatternLayoutFormatter", "pattern": "%p %m%n"}
            },
            "handlers": {
                "FILE": {
                    "class": "logbridge.log4j.appenders.FileAppenderHandler",
                    "filename": str(tmp_path / "async.log"),
                    "formatter": "F",
                },
                "ASYNC": {"()": "logbridge.log4j.appenders.AsyncAppenderHandler", "appenders": ["FILE"]},
            },
            "root": {"level": "INFO", "handlers": ["ASYNC"]},
        }
    )
    for i in range(500):
        logging.getLogger("a").info("event %d", i)
    async_handler = logging.getLogger().handlers[0]
    async_handler.close()  # stops the listener after it drained the queue
    lines = (tmp_path / "async.log").read_text().splitlines()
    assert lines == [f"INFO event {i}" for i in range(500)]


def test_async_handler_closes_with_a_full_queue() -> None:
    """Closed while its bounded queue is full, the handler waits for room to stop its listener
    thread (the stdlib's stop raised queue.Full there and left the thread running)."""
    from logbridge.log4j.appenders import AsyncAppenderHandler

    release, taken = threading.Event(), threading.Event()

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            taken.set()
            release.wait(10)

    slow = Slow(level=logging.INFO)
    slow.set_name("SLOW")  # dictConfig names handlers; the async handler finds its targets by name
    handler = AsyncAppenderHandler(appenders=["SLOW"], buffer_size=1)
    try:
        record = logging.LogRecord("a", logging.INFO, __file__, 1, "event", None, None)
        handler.handle(record)
        assert taken.wait(10)  # the listener holds the first event
        handler.handle(record)  # the queue is full
        closing = threading.Thread(target=handler.close)
        closing.start()
        release.set()
        closing.join(10)
        assert not closing.is_alive()
        assert not [t for t in threading.enumerate() if "_monitor" in t.name]
    finally:
        release.set()
        handler.close()
        slow.close()
