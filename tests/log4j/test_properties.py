"""The properties lexer: java.util.Properties rules, checked against the JDK itself."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.errors import Log4jConfigError
from logbridge.log4j.properties import escape_key, escape_value, load_properties, parse_properties

from .reference import JAR


def test_separators_continuations_comments_and_escapes() -> None:
    text = (
        "# comment\n"
        "  a.b = x  \\\n"
        "   y \n"
        "k\\ey\\:z : v\n"
        "! comment ending in a backslash does not continue \\\n"
        "spaced   value with  spaces  \n"
        "e=\\u00e9\\ud83d\\ude00\\t\\q\n"
        "dup=1\n"
        "dup=2\n"
        "onlykey\n"
        "empty=\n"
    )
    p = parse_properties(text, "t.properties")
    assert p.as_dict() == {
        "a.b": "x  y ",
        "key:z": "v",
        "spaced": "value with  spaces  ",
        "e": "é😀\tq",
        "dup": "2",
        "onlykey": "",
        "empty": "",
    }
    assert p.line("a.b") == 2
    assert p.line("dup") == 9  # the last definition wins, with its line


def test_crlf_and_cr_line_ends_count_lines() -> None:
    p = parse_properties("a=1\r\nb=2\rc=3\n\nd=\\\r\n  4")
    assert p.as_dict() == {"a": "1", "b": "2", "c": "3", "d": "4"}
    assert [p.line(k) for k in "abcd"] == [1, 2, 3, 5]


def test_file_is_read_as_iso_8859_1(tmp_path: Path) -> None:
    f = tmp_path / "x.properties"
    f.write_bytes(b"k=caf\xe9\n")
    assert load_properties(f).get("k") == "café"


def test_malformed_unicode_escape_names_the_line() -> None:
    with pytest.raises(Log4jConfigError, match=r"t.properties:2: malformed \\uxxxx"):
        parse_properties("ok=1\nbad=\\u12g4\n", "t.properties")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Log4jConfigError, match="cannot read log4j properties file"):
        load_properties(tmp_path / "missing.properties")


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.text(max_size=20),
        max_size=6,
    )
)
def test_escaped_entries_read_back_unchanged(entries: dict[str, str]) -> None:
    text = "".join(f"{escape_key(k)}={escape_value(v)}\n" for k, v in entries.items())
    # Java strings are UTF-16: lone surrogates cannot round-trip through \u escapes either.
    entries = {k: v for k, v in entries.items()}
    assert parse_properties(text).as_dict() == entries


@given(st.text(alphabet=st.sampled_from(list("ab=: \t\f#!\\\n\ru0123x")), max_size=40))
def test_lexer_never_crashes_on_odd_input(text: str) -> None:
    try:
        parse_properties(text)
    except Log4jConfigError:
        pass


_ALPHABET = ["a", "b", "=", ":", " ", "\t", "\f", "#", "!", "\\", "\n", "\r", "\r\n", "u", "0", "0041", "é"]


@pytest.mark.java
def test_same_as_java_properties_load(log4j_harness: Path, tmp_path: Path) -> None:
    """Random texts made of the characters that matter, read by the JDK and by us."""
    rng = random.Random(1234)
    texts = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 30))) for _ in range(2000)]
    files = []
    for i, text in enumerate(texts):
        f = tmp_path / f"{i}.properties"
        f.write_bytes(text.encode("latin-1"))
        files.append(str(f))
    out = tmp_path / "out.json"
    subprocess.run(
        ["java", "-cp", f"{JAR}:{log4j_harness}", "PropsDump", str(out), *files],
        check=True,
        timeout=60,
    )
    java = json.loads(out.read_text(encoding="utf-8"))
    for text, f, expected in zip(texts, files, java, strict=True):
        try:
            ours = dict(sorted(load_properties(f).as_dict().items()))
        except Log4jConfigError:
            ours = {"!error": "Malformed \\uxxxx encoding."}
        assert ours == expected, repr(text)


_KEY_PARTS = ["log4j", "logger", "appender", "A", "R", "com", "example", "filter", "1", "layout", "File", "é"]


@pytest.mark.java
def test_key_order_same_as_java(log4j_harness: Path, tmp_path: Path) -> None:
    """log4j prints its messages in the order of Properties.keys()/propertyNames(): hash orders
    that `keys_java_order`/`property_names_java_order` reproduce, for files of 0 to 400 keys
    (resizes included), duplicate keys kept where they were first put."""
    rng = random.Random(4321)
    files, parsed = [], []
    for i in range(150):
        n = rng.choice([0, 1, 5, 11, 12, 13, 40, 100, 400]) if i < 60 else rng.randint(0, 200)
        keys = [
            ".".join(rng.choice(_KEY_PARTS) for _ in range(rng.randint(1, 5))) + str(rng.randint(0, 999))
            for _ in range(n)
        ]
        keys += rng.sample(keys, k=min(len(keys), 3))  # duplicates
        f = tmp_path / f"{i}.properties"
        f.write_bytes("".join(f"{escape_key(k)}=v{j}\n" for j, k in enumerate(keys)).encode("latin-1"))
        files.append(str(f))
        parsed.append(load_properties(f))
    out = tmp_path / "order.json"
    subprocess.run(
        ["java", "-cp", f"{JAR}:{log4j_harness}", "PropsDump", "--order", str(out), *files],
        check=True,
        timeout=60,
    )
    for props, expected in zip(parsed, json.loads(out.read_text(encoding="utf-8")), strict=True):
        assert props.keys_java_order() == expected["keys"]
        assert props.property_names_java_order() == expected["names"]


@given(st.lists(st.text(max_size=12), max_size=80))
def test_java_orders_are_permutations_of_the_keys(keys: list[str]) -> None:
    props = parse_properties("".join(f"{escape_key(k)}=v\n" for k in keys if k))
    unique = sorted(set(k for k in keys if k))
    assert sorted(props.keys_java_order()) == unique
    assert sorted(props.property_names_java_order()) == unique
