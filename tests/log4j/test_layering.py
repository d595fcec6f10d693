"""How the log4j modules depend on each other: one way, one table each.

PatternLayout's parser knows nothing of EnhancedPatternLayout (which subclasses it), the record
accessors live once in `converters`, and every layout reads the level names and the named date
formats from one table.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from logbridge.log4j import classes, converters, dateformat, levels
from logbridge.log4j.enhanced import EnhancedPatternLayoutFormatter, EnhancedPatternParser
from logbridge.log4j.handlers import DailyRollingFileAppenderHandler, RollingFileAppenderHandler
from logbridge.log4j.jsonaudit import log4j_level_name
from logbridge.log4j.layouts import SimpleLayoutFormatter, TTCCLayoutFormatter
from logbridge.log4j.pattern import PatternLayoutFormatter, PatternParser

PACKAGE = Path(levels.__file__).parent


def _imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.add(node.module or "")
    return names


def test_pattern_imports_nothing_of_enhanced_and_converters_nothing_of_either() -> None:
    assert "enhanced" not in _imported("pattern")
    assert not {"pattern", "enhanced", "layouts"} & _imported("converters")
    assert issubclass(EnhancedPatternParser, PatternParser)
    assert EnhancedPatternLayoutFormatter.parser is EnhancedPatternParser
    assert PatternLayoutFormatter.parser is PatternParser


def _record(level: int) -> logging.LogRecord:
    r = logging.LogRecord("a.b", level, "/x/y.py", 3, "msg", None, None, func="f")
    r.created, r.msecs = 1_700_000_000.123, 123.0
    return r


@pytest.mark.parametrize("level", sorted(levels.LOG4J_NAMES))
def test_every_layout_prints_the_one_table_of_level_names(level: int) -> None:
    name = levels.LOG4J_NAMES[level]
    assert levels.level_from_name(name) == level
    assert PatternLayoutFormatter("%p").format_layout(_record(level)) == name
    assert EnhancedPatternLayoutFormatter("%level").format_layout(_record(level)) == name
    assert SimpleLayoutFormatter().format_layout(_record(level)).startswith(f"{name} - ")
    assert log4j_level_name(level) == name


@pytest.mark.parametrize("name", ["ISO8601", "absolute", "Date"])
def test_named_date_formats_mean_the_same_in_every_layout(name: str) -> None:
    pattern = dateformat.NAMED_FORMATS[name.upper()]
    expected = dateformat.SimpleDateFormat(pattern).format_ms(converters.record_millis(_record(20)))
    assert PatternLayoutFormatter(f"%d{{{name}}}").format_layout(_record(20)) == expected
    assert EnhancedPatternLayoutFormatter(f"%d{{{name}}}").format_layout(_record(20)) == expected
    ttcc = TTCCLayoutFormatter(name, thread_printing=False, category_prefixing=False, context_printing=False)
    assert ttcc.format_layout(_record(20)) == f"{expected} INFO - msg\n"


def test_appender_defaults_come_from_one_place(tmp_path: Path) -> None:
    rolling = RollingFileAppenderHandler(str(tmp_path / "r.log"))
    daily = DailyRollingFileAppenderHandler(str(tmp_path / "d.log"))
    try:
        assert rolling.max_file_size == classes.DEFAULT_MAX_FILE_SIZE == 10 * 1024 * 1024
        assert rolling.max_backup_index == classes.DEFAULT_MAX_BACKUP_INDEX
        assert daily.date_pattern == classes.DEFAULT_DATE_PATTERN
    finally:
        rolling.close()
        daily.close()
