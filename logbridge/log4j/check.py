"""What ``logbridge log4j check`` says about a file, and whether a CI gate should fail on it.

Findings come in three kinds (see `Diagnostic`), printed in three groups in this order:

1. ``log4j`` — the ``log4j:WARN``/``log4j:ERROR`` lines log4j 1.2.17 itself prints for the file,
   verbatim: while configuring, then those it prints when the first event reaches a broken or
   closed appender;
2. ``python`` — what Python does differently, labelled by how much it matters;
3. ``note`` — log4j and logbridge agree, but a reader should know (an appender nobody uses).

Each finding has a severity, ``note < difference < warning < error``; ``--fail-on LEVEL`` makes
the command exit 1 when a finding is at LEVEL or above. The default, ``warning``, fails on what
log4j warns about or reports as an error and on anything that loses or redirects events.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import SEVERITIES, Diagnostic, Model

FAIL_ON_LEVELS = (*SEVERITIES, "never")
DEFAULT_FAIL_ON = "warning"
_GROUPS = ("log4j", "python", "note")
_PYTHON_LABEL = {"error": "python [error]", "warning": "python [warning]", "difference": "python"}


def findings(model: Model) -> list[Diagnostic]:
    """The model's findings, then the errors log4j prints only once events arrive."""
    out = list(model.diagnostics)
    for a in model.appenders.values():
        if a.refuses_when_closed:
            out.append(
                Diagnostic(
                    f"log4j:ERROR Attempted to append to closed appender named [{a.name}].",
                    a.line,
                    at_first_event=True,
                )
            )
        elif a.broken:
            out.append(Diagnostic(f"log4j:ERROR {a.broken}", a.line, at_first_event=True))
    return out


def in_print_order(found: Iterable[Diagnostic], *, log4j_order: bool = False) -> list[Diagnostic]:
    """Grouped by kind; by line within a group, except that ``log4j_order`` keeps log4j's own
    lines in the order log4j prints them (the model walks the file in log4j's order)."""
    out: list[Diagnostic] = []
    for kind in _GROUPS:
        group = [d for d in found if d.kind == kind]
        if kind == "log4j" and log4j_order:
            group.sort(key=lambda d: d.at_first_event)
        else:
            group.sort(key=lambda d: (d.line is None, d.line or 0))
        out += group
    return out


def render(d: Diagnostic, source: str) -> str:
    where = f"{source}:{d.line}: " if d.line is not None else f"{source}: "
    if d.kind == "log4j":
        if not d.at_first_event:
            return where + d.message
        when = "every event" if "closed appender" in d.message else "the first event"
        return f"{where}{d.message} (printed at {when} it receives: log4j drops them all)"
    if d.kind == "note":
        return f"{where}note: {d.message}"
    return f"{where}{_PYTHON_LABEL[d.severity]}: {d.message}"


def fails(found: Iterable[Diagnostic], fail_on: str) -> bool:
    if fail_on == "never":
        return False
    floor = SEVERITIES.index(fail_on)
    return any(SEVERITIES.index(d.severity) >= floor for d in found)


def summary(found: list[Diagnostic], source: str, fail_on: str) -> str:
    def count(kind: str, severity: str | None = None) -> int:
        return sum(1 for d in found if d.kind == kind and (severity is None or d.severity == severity))

    parts = [
        f"log4j prints {count('log4j', 'error')} error(s) and {count('log4j', 'warning')} warning(s)",
        f"Python differs {count('python')} time(s) ({count('python', 'error')} error(s), "
        f"{count('python', 'warning')} warning(s))",
        f"{count('note')} note(s)",
    ]
    verdict = "FAIL" if fails(found, fail_on) else "OK"
    return f"{source}: {verdict} (--fail-on {fail_on}): " + "; ".join(parts)
