"""``logbridge log4j check`` as a CI gate: three kinds of findings, ``--fail-on``, ``--log4j-order``.

The order of log4j's own lines under ``--log4j-order`` is checked against real log4j 1.2.17."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from logbridge.cli import cli
from logbridge.log4j import check
from logbridge.log4j.model import SEVERITIES, Diagnostic

from .reference import Event, run_java

CASES = Path(__file__).parent / "cases"
LEVELS = ["note", "difference", "warning", "error", "never"]

_CONSOLE = (
    "log4j.appender.{0}=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.{0}.layout=org.apache.log4j.PatternLayout\n"
    "log4j.appender.{0}.layout.ConversionPattern=%m%n\n"
)
# One file per severity, each with exactly one finding of that severity (and nothing above it).
FILES = {
    "note": "log4j.rootLogger=INFO, A\n" + _CONSOLE.format("A") + _CONSOLE.format("UNUSED"),
    "difference": "log4j.rootLogger=INFO, A\n"
    "log4j.appender.A=org.apache.log4j.ConsoleAppender\n"
    "log4j.appender.A.layout=com.example.OwnLayout\n",
    "python-warning": "log4j.rootLogger=INFO, MAIL\n"
    "log4j.appender.MAIL=org.apache.log4j.net.SMTPAppender\n"
    "log4j.appender.MAIL.layout=org.apache.log4j.SimpleLayout\n",
    "log4j-warning": "log4j.rootLogger=INFO, A\n" + _CONSOLE.format("A") + "log4j.appender.A.Bogus=1\n",
    "log4j-error": "log4j.rootLogger=INFO, A, MISSING\n" + _CONSOLE.format("A"),
    "python-error": "log4j.rootLogger=INFO, A\n" + _CONSOLE.format("A")
    + "log4j.logger.audit=INFO, COUNTER\nlog4j.additivity.audit=false\n"
    "log4j.appender.COUNTER=com.example.EventCounter\n",
}  # fmt: skip
SEVERITY = {
    "note": "note", "difference": "difference", "python-warning": "warning", "log4j-warning": "warning",
    "log4j-error": "error", "python-error": "error",
}  # fmt: skip


def _check(path: Path, *args: str) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(cli, ["log4j", "check", str(path), *args])
    lines = [line for line in result.stdout.splitlines() if line]
    return result.exit_code, lines, result.stderr


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("fail_on", LEVELS)
def test_exit_status_follows_fail_on(name: str, fail_on: str, tmp_path: Path) -> None:
    f = tmp_path / f"{name}.properties"
    f.write_text(FILES[name], encoding="latin-1")
    code, lines, err = _check(f, "--fail-on", fail_on)
    severity = SEVERITY[name]
    expected = 0 if fail_on == "never" else int(SEVERITIES.index(severity) >= SEVERITIES.index(fail_on))
    assert code == expected, (lines, err)
    assert err.startswith(f"{f}: {'FAIL' if expected else 'OK'} (--fail-on {fail_on})")


def test_default_fails_on_log4j_warnings_and_on_events_lost_or_redirected(tmp_path: Path) -> None:
    codes = {}
    for name, text in FILES.items():
        f = tmp_path / f"{name}.properties"
        f.write_text(text, encoding="latin-1")
        codes[name] = _check(f)[0]
    assert codes == {
        "note": 0, "difference": 0, "python-warning": 1, "log4j-warning": 1, "log4j-error": 1,
        "python-error": 1,
    }  # fmt: skip


def test_three_kinds_are_printed_in_three_groups(tmp_path: Path) -> None:
    f = tmp_path / "mixed.properties"
    f.write_text(
        "log4j.rootLogger=INFO, MAIL, A\n"  # 1
        + _CONSOLE.format("UNUSED")  # 2-4: a note
        + "log4j.appender.MAIL=org.apache.log4j.net.SMTPAppender\n"  # 5: python [warning]
        "log4j.appender.MAIL.layout=com.example.OwnLayout\n"  # 6: python (a difference)
        + _CONSOLE.format("A")  # 7-9
        + "log4j.appender.A.Bogus=1\n"  # 10: log4j:WARN
        "log4j.appender.A.Target=nowhere\n",  # 11: log4j:WARN x2
        encoding="latin-1",
    )
    code, lines, _ = _check(f, "--fail-on", "never")
    assert code == 0
    assert lines == [
        f"{f}:10: log4j:WARN No such property [bogus] in org.apache.log4j.ConsoleAppender.",
        f"{f}:11: log4j:WARN [nowhere] should be System.out or System.err.",
        f"{f}:11: log4j:WARN Using previously set target, System.out by default.",
        f"{f}:5: python [warning]: appender MAIL: org.apache.log4j.net.SMTPAppender has no Python "
        "equivalent; its events go to stderr through its layout instead (none is lost)",
        f"{f}:6: python: layout com.example.OwnLayout has no Python equivalent; PatternLayout %m%n is used",
        f"{f}:2: note: appender UNUSED is defined but no logger uses it: log4j never creates it",
    ]


def test_errors_at_the_first_event_come_after_configure_messages(tmp_path: Path) -> None:
    f = tmp_path / "broken.properties"
    f.write_text(
        "log4j.rootLogger=INFO, NOLAYOUT, A\n"
        "log4j.appender.NOLAYOUT=org.apache.log4j.ConsoleAppender\n" + _CONSOLE.format("A")
        + "log4j.appender.A.Bogus=1\n",
        encoding="latin-1",
    )  # fmt: skip
    _, by_line, _ = _check(f)
    _, log4j_order, _ = _check(f, "--log4j-order")
    first_event = (
        f"{f}:2: log4j:ERROR No layout set for the appender named [NOLAYOUT]. (printed at the first "
        "event it receives: log4j drops them all)"
    )
    assert by_line[1] == first_event  # by line: line 2 before line 6
    assert log4j_order[-1] == first_event  # log4j prints it last, when events arrive
    assert sorted(by_line) == sorted(log4j_order)


@pytest.mark.parametrize("case", sorted(CASES.glob("3[234]-stock-*.properties")), ids=lambda p: p.stem)
def test_stock_files_with_notes_only_pass_by_default(case: Path) -> None:
    code, lines, _ = _check(case)
    assert code == 0
    assert lines and all(re.search(r":\d+: (note|python): ", line) for line in lines), lines
    assert _check(case, "--fail-on", "note")[0] == 1


@pytest.mark.java
@pytest.mark.parametrize("case", ["13-option-names", "10-filters", "31-category-and-logger"])
def test_log4j_order_is_the_order_log4j_prints(case: str, log4j_harness: Path, tmp_path: Path) -> None:
    """The file's keys are walked in log4j's hash order, not in file order: `--log4j-order` prints
    log4j's configure-time lines exactly as log4j does."""
    path = CASES / f"{case}.properties"
    java = run_java(log4j_harness, path, ["root"], [Event("root", "INFO", 0, "m")], tmp_path / "java")
    _, lines, _ = _check(path, "--log4j-order", "-D", f"dir={tmp_path / 'java'}")
    ours = [
        re.sub(r"^[^:]*:\d+: ", "", line) for line in lines if "log4j:" in line and "(printed at" not in line
    ]
    assert ours == [m.replace("<dir>", str(tmp_path / "java")) for m in java.configure_messages]
    assert len(ours) >= 2


_diagnostics = st.lists(
    st.builds(
        Diagnostic,
        message=st.sampled_from(["log4j:WARN w", "log4j:ERROR e", "x"]),
        line=st.none() | st.integers(1, 50),
        kind=st.sampled_from(["log4j", "python", "note"]),
        effect=st.sampled_from(["difference", "warning", "error"]),
        at_first_event=st.booleans(),
    ),
    max_size=8,
)


@given(_diagnostics)
def test_a_stricter_level_never_passes_what_a_looser_one_fails(found: list[Diagnostic]) -> None:
    verdicts = [check.fails(found, level) for level in LEVELS]
    assert verdicts == sorted(verdicts, reverse=True)  # True ... True, False ... False
    assert sorted(map(repr, check.in_print_order(found))) == sorted(map(repr, found))
