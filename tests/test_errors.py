"""Every exception logbridge defines is in the one tree of `logbridge.errors`, and is drawn there."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import logbridge
from logbridge import errors

PACKAGE = Path(logbridge.__file__).parent


def _defined_exceptions() -> list[tuple[str, str]]:
    """(module path, class name) of every class in the package whose bases name an exception."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Exception", "Error")) for b in bases):
                    found.append((str(path.relative_to(PACKAGE)), node.name))
    return found


def test_every_exception_is_defined_in_errors_py() -> None:
    assert {where for where, _ in _defined_exceptions()} == {"errors.py"}


def test_every_exception_derives_from_logbridge_error_and_is_drawn() -> None:
    doc = errors.__doc__ or ""
    for name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, BaseException):
            assert issubclass(cls, errors.LogbridgeError), name
            drawn = re.search(rf"^[ │├└─]*{name}\b", doc, re.MULTILINE)
            assert drawn, f"{name} is not drawn in the tree"


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("logbridge.shipper.engine", "StateDirBusy"),
        ("logbridge.client", "Stopped"),
        ("logbridge.log4j.dateformat", "DateFormatError"),
        ("logbridge.collector.statelock", "StateDirInUse"),
        ("logbridge.collector.protocol", "HeadersTooLarge"),
    ],
)
def test_old_import_places_still_work(where: str, name: str) -> None:
    import importlib

    assert getattr(importlib.import_module(where), name) is getattr(errors, name)


def test_callers_catching_the_builtin_still_catch() -> None:
    from logbridge.log4j.dateformat import SimpleDateFormat

    with pytest.raises(ValueError, match="Illegal pattern character 'q'"):
        SimpleDateFormat("yyyy q")
    assert issubclass(errors.StateDirBusy, errors.ConfigError)  # exit 2 in every command
    assert issubclass(errors.StateDirInUse, errors.ConfigError)
