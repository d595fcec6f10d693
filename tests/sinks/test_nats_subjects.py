"""Subjects and headers made from hostile topics and routing keys; the nats destination's config and credentials.

No server here: what a topic or routing key can do to a subject is decided before anything is
sent (tests/sinks/test_nats_sink.py and tests/integration/test_collector_nats.py publish them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logbridge.collector.config import CollectorServerConfig
from logbridge.config import validate
from logbridge.errors import ConfigError
from logbridge.sinks.config import NatsDestination
from logbridge.sinks.subjects import (
    MAX_HEADER,
    MAX_TOKEN,
    SubjectTemplate,
    header_value,
    subject_matches,
    subject_token,
)

# Any code point, surrogates included (a header decoded as latin-1 has none, but a token
# function must not care where its text came from).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
TEMPLATE = SubjectTemplate("audit.{topic}.{routing_key}")


def _valid_subject(subject: str) -> bool:
    """What nats-server takes as a subject to publish to: tokens non-empty, no whitespace,
    no wildcard, printable ASCII (we promise that much)."""
    tokens = subject.split(".")
    return all(
        token
        and token not in ("*", ">")
        and "*" not in token
        and ">" not in token
        and all(0x21 <= ord(c) <= 0x7E for c in token)
        for token in tokens
    )


@given(topic=ANY_TEXT, routing_key=ANY_TEXT)
def test_no_topic_or_routing_key_makes_a_bad_subject(topic: str, routing_key: str) -> None:
    subject = TEMPLATE.render(subject_token(topic), subject_token(routing_key))
    assert _valid_subject(subject), subject
    assert len(subject.split(".")) == 3  # a '.' in a key never adds a token
    assert subject_matches(TEMPLATE.stream_subject, subject)
    assert subject_matches("audit.*.*", subject)
    assert len(subject_token(topic)) <= MAX_TOKEN


@given(a=ANY_TEXT, b=ANY_TEXT)
def test_distinct_keys_get_distinct_tokens(a: str, b: str) -> None:
    """Percent-encoding keeps keys apart (``a.b`` is not ``a_b``); only the empty key shares
    ``_`` with the key ``_``, and long keys are told apart by a hash."""
    if a != b and {a, b} != {"", "_"}:
        assert subject_token(a) != subject_token(b)


@given(value=ANY_TEXT)
def test_header_values_are_one_printable_line_that_reads_back(value: str) -> None:
    encoded = header_value(value)
    assert all(0x21 <= ord(c) <= 0x7E for c in encoded), encoded
    assert len(encoded) <= MAX_HEADER
    cut = len(encoded) > MAX_HEADER - 17
    surrogates = any("\ud800" <= c <= "\udfff" for c in value)  # no UTF-8 to read back
    if not cut and not surrogates:
        assert unquote(encoded, errors="strict") == value


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("generic", "generic"),
        ("apinode-query", "apinode-query"),
        ("my.service", "my%2Eservice"),
        ("*", "%2A"),
        (">", "%3E"),
        ("a b\tc\r\n", "a%20b%09c%0D%0A"),
        ("100%", "100%25"),
        ("", "_"),
        ("é", "%C3%A9"),
    ],
)
def test_tokens_by_example(value: str, token: str) -> None:
    assert subject_token(value) == token


def test_a_long_key_is_cut_and_kept_distinct_by_a_hash() -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert len(subject_token(a)) == MAX_TOKEN and subject_token(a) != subject_token(b)
    # a cut never leaves half a %XX escape
    assert "%" not in subject_token("." * 200).rsplit("~", 1)[0][-2:]


@pytest.mark.parametrize(
    ("template", "stream_subject"),
    [
        ("audit.{topic}.{routing_key}", "audit.>"),
        ("audit.{topic}", "audit.>"),
        ("dss.prod.{routing_key}.{topic}", "dss.prod.>"),
    ],
)
def test_the_stream_takes_the_literal_prefix(template: str, stream_subject: str) -> None:
    assert SubjectTemplate(template).stream_subject == stream_subject


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("{topic}.{routing_key}", "first token must be a literal"),
        ("audit.{routing_key}", "{topic} must appear exactly once"),
        ("audit.{topic}.{topic}", "{topic} must appear exactly once"),
        ("audit..{topic}", "empty token"),
        ("audit.{topic}.", "empty token"),
        ("audit.x{topic}", "a placeholder is a whole token"),
        ("audit.{topics}", "a placeholder is a whole token"),
        ("audit.*.{topic}", "without * or >"),
        ("audit.{topic}.>", "without * or >"),
        ("au dit.{topic}", "printable ASCII"),
    ],
)
def test_a_bad_template_says_what_is_wrong(template: str, why: str) -> None:
    with pytest.raises(ValueError, match=why.replace("*", r"\*").replace("{", r"\{").replace("}", r"\}")):
        SubjectTemplate(template)


@pytest.mark.parametrize(
    ("pattern", "subject", "covers"),
    [
        ("audit.>", "audit.>", True),
        (">", "audit.>", True),
        ("audit.*.*", "audit.>", False),
        ("audit.*.*", "audit.a.b", True),
        ("audit.a.>", "audit.>", False),
        ("other.>", "audit.>", False),
        ("audit.>", "audit", False),
    ],
)
def test_subject_filters(pattern: str, subject: str, covers: bool) -> None:
    assert subject_matches(pattern, subject) is covers


# ------------------------------------------------------------------------------------ config


def collector_config(tmp_path: Path, *destinations: dict[str, Any]) -> CollectorServerConfig:
    return validate(
        {
            "state_dir": str(tmp_path / "state"),
            "dead_letter": f"file://{tmp_path / 'dead'}",
            "destinations": list(destinations),
        },
        CollectorServerConfig,
    )


def test_the_design_sample_validates_with_the_documented_defaults(tmp_path: Path) -> None:
    """DESIGN §6, as written."""
    (dest,) = collector_config(
        tmp_path, {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"], "stream": "AUDIT"}
    ).destinations
    assert isinstance(dest, NatsDestination)
    assert (dest.subject, dest.replicas, dest.max_bytes, dest.max_age) == (
        "audit.{topic}.{routing_key}",
        1,
        None,
        None,
    )
    assert (dest.duplicate_window, dest.publish_timeout, dest.tls) == (120.0, 5.0, None)
    assert dest.path_template() == "{topic}/{routing_key}/%Y/%m/%d/%H"


def test_sizes_and_durations_read_as_everywhere_else(tmp_path: Path) -> None:
    (dest,) = collector_config(
        tmp_path,
        {
            "name": "bus",
            "type": "nats",
            "servers": ["tls://nats-1:4222", "nats-2"],
            "max_bytes": "10GiB",
            "max_age": "7d",
            "duplicate_window": "10m",
            "publish_timeout": "2s",
            "replicas": 3,
            "tls": {"ca": "/etc/ca.pem"},
        },
    ).destinations
    assert isinstance(dest, NatsDestination)
    assert (dest.max_bytes, dest.max_age, dest.duplicate_window, dest.publish_timeout) == (
        10 * 1024**3,
        7 * 86400.0,
        600.0,
        2.0,
    )


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"servers": []}, r"destinations\[0\]\.servers: List should have at least 1 item"),
        ({"servers": ["http://x:4222"]}, r"destinations\[0\]\.servers: .*not a server URL"),
        ({"servers": ["nats://x:99999"]}, r"destinations\[0\]\.servers: .*not a server URL"),
        ({"subject": "audit.{topics}"}, r"destinations\[0\]\.subject: .*whole token"),
        ({"stream": "AU.DIT"}, r"destinations\[0\]\.stream: String should match pattern"),
        ({"token_env": "T", "creds_file": "/c"}, "at most one of creds_file, token_env, user"),
        ({"user": "u"}, "user and password_env go together"),
        ({"password_env": "P"}, "user and password_env go together"),
        ({"max_age": "1m"}, r"max_age \(60s\) must be at least duplicate_window \(120s\)"),
        ({"duplicate_window": 0}, "duplicate_window must be more than 0"),
        ({"replicas": 7}, r"destinations\[0\]\.replicas: Input should be less than or equal to 5"),
        ({"tls": {"cert": "/c.pem"}}, "set cert and key together"),
        ({"max_bytes": "a lot"}, r"destinations\[0\]\.max_bytes: .*expected a size"),
        ({"durable": True}, r"destinations\[0\]\.durable: unknown key"),
    ],
)
def test_bad_nats_keys_are_named(tmp_path: Path, keys: dict[str, Any], message: str) -> None:
    dest = {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"], **keys}
    with pytest.raises(ConfigError, match=message):
        collector_config(tmp_path, dest)


def test_two_nats_destinations_cannot_share_a_stream(tmp_path: Path) -> None:
    """Their message ids are made the same way: one would drop the other's messages as duplicates."""
    bus = {"type": "nats", "servers": ["nats://127.0.0.1:4222"]}
    with pytest.raises(ConfigError, match="'a' and 'b' publish to the same stream 'AUDIT'"):
        collector_config(tmp_path, {"name": "a", **bus}, {"name": "b", "topics": ["x"], **bus})
    collector_config(tmp_path, {"name": "a", **bus}, {"name": "b", "stream": "OTHER", **bus})


# -------------------------------------------------------------------------------- credentials


def nats_destination(**keys: Any) -> NatsDestination:
    return NatsDestination.model_validate(
        {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"], **keys}
    )


def test_credentials_are_read_when_connecting_and_name_their_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nats")
    from logbridge.sinks.nats import connect_options

    monkeypatch.delenv("LB_NATS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"bus\.token_env: environment variable LB_NATS_TOKEN is not set"):
        connect_options(nats_destination(token_env="LB_NATS_TOKEN"), "bus")
    monkeypatch.setenv("LB_NATS_TOKEN", " t0ken \n")
    assert connect_options(nats_destination(token_env="LB_NATS_TOKEN"), "bus")["token"] == "t0ken"

    monkeypatch.setenv("LB_NATS_PASSWORD", "pw")
    options = connect_options(nats_destination(user="collector", password_env="LB_NATS_PASSWORD"), "bus")
    assert (options["user"], options["password"]) == ("collector", "pw")

    with pytest.raises(ConfigError, match=r"bus\.creds_file: cannot read .*missing\.creds"):
        connect_options(nats_destination(creds_file=str(tmp_path / "missing.creds")), "bus")

    with pytest.raises(ConfigError, match=r"bus: cannot load tls\.ca"):
        connect_options(nats_destination(tls={"ca": str(tmp_path / "no-ca.pem")}), "bus")
    assert "tls" not in connect_options(nats_destination(), "bus")
    assert "tls" in connect_options(nats_destination(servers=["tls://127.0.0.1:4222"]), "bus")


def test_a_creds_file_without_nkeys_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """nats-py signs the server's nonce with nkeys: without it, a creds file could never work."""
    pytest.importorskip("nats")
    import sys

    from logbridge.errors import MissingExtra
    from logbridge.sinks.nats import connect_options

    creds = tmp_path / "collector.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n…\n")
    monkeypatch.setitem(sys.modules, "nkeys", None)
    with pytest.raises(MissingExtra, match=r"bus\.creds_file.*pip install 'logbridge\[nats\]'"):
        connect_options(nats_destination(creds_file=str(creds)), "bus")
