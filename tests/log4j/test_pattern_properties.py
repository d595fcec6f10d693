"""Property tests for the conversion-pattern and date-pattern parsers (the log4j comparisons
live in test_reference.py; these check invariants on inputs nobody wrote by hand)."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from logbridge.log4j.dateformat import DateFormatError, SimpleDateFormat
from logbridge.log4j.enhanced import EnhancedPatternLayoutFormatter, java_hashtable_order
from logbridge.log4j.pattern import PatternLayoutFormatter


def _record() -> logging.LogRecord:
    r = logging.LogRecord("a.b.c", logging.INFO, "/x/y.py", 3, "msg", None, None, func="f")
    r.mdc, r.ndc = {"k": "v"}, "n"
    return r


@given(st.text(alphabet=st.characters(blacklist_characters="%"), max_size=50))
def test_text_without_percent_is_printed_unchanged(text: str) -> None:
    assert PatternLayoutFormatter(text).format_layout(_record()) == text


@given(st.text(alphabet=st.sampled_from(list("%-.0123456789{}cCdFlLmMnprtxXq zé")), max_size=30))
def test_any_pattern_parses_and_renders(pattern: str) -> None:
    for cls in (PatternLayoutFormatter, EnhancedPatternLayoutFormatter):
        out = cls(pattern).format(_record())
        assert isinstance(out, str)


@given(st.integers(min_value=1, max_value=40), st.booleans(), st.sampled_from("cpmtx"))
def test_min_width_pads_to_at_least_min(width: int, left: bool, conv: str) -> None:
    value = PatternLayoutFormatter(f"%{conv}").format_layout(_record())
    out = PatternLayoutFormatter(f"%{'-' if left else ''}{width}{conv}").format_layout(_record())
    assert len(out) == max(width, len(value))
    assert out == (value.ljust(width) if left else value.rjust(width))


@given(st.integers(min_value=1, max_value=10))
def test_max_width_keeps_the_end(width: int) -> None:
    out = PatternLayoutFormatter(f"%.{width}c").format_layout(_record())
    assert out == "a.b.c"[-width:]


@given(st.text(alphabet=st.sampled_from(list("GyMdkHmsSEDFwWahKzZYuXLqQ' -:.,")), max_size=20))
def test_date_patterns_compile_or_fail_like_java(pattern: str) -> None:
    try:
        out = SimpleDateFormat(pattern).format_ms(1582124702441)
    except DateFormatError as exc:
        assert (
            "Illegal pattern character" in str(exc)
            or "Unterminated quote" in str(exc)
            or "ISO 8601" in str(exc)
        )
    else:
        assert isinstance(out, str)


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=30))
def test_hashtable_order_is_a_permutation(keys: list[str]) -> None:
    assert sorted(java_hashtable_order(keys)) == sorted(keys)
