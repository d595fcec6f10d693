"""NATS subjects and header values made from what the network sends (no nats-py needed here).

Topic and routing key come from events, so before they become a subject token they are encoded:
every character outside ``A-Z a-z 0-9 - _ ~ + = , @ :`` is written ``%XX`` per UTF-8 byte
(``%`` itself too). What comes out is printable ASCII with no ``.`` (the token separator), no
``*`` or ``>`` (wildcards), no whitespace — a token a subscriber can match with ``*`` — and
distinct values give distinct tokens (``a.b`` → ``a%2Eb``, never ``a_b``), except for:

- the empty string → ``_`` (a subject token cannot be empty);
- values whose encoding passes `MAX_TOKEN` characters: cut, with ``~`` and 16 hex digits of
  the value's SHA-256 appended, so they stay distinct.

Header values (topic, routing key, source) are encoded the same way but keep every printable
ASCII character except ``%``: a header line can hold no CR/LF, and a value must read back the
same (`urllib.parse.unquote` undoes it). They are cut like tokens past `MAX_HEADER`.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

MAX_TOKEN = 128
MAX_HEADER = 512
PLACEHOLDERS = ("{topic}", "{routing_key}")

_TOKEN_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~+=,@:")
_HEADER_SAFE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"%"}
# A literal token of a subject template: printable ASCII, no wildcard, no braces (a misspelt
# placeholder such as {topics} must not pass as a literal).
_LITERAL = re.compile(r"^[\x21-\x7e]+$")


def _encode(value: str, safe: frozenset[str]) -> str:
    if all(c in safe for c in value):
        return value
    out = []
    for c in value:
        if c in safe:
            out.append(c)
        else:
            out.extend(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _cut(encoded: str, value: str, limit: int) -> str:
    if len(encoded) <= limit:
        return encoded
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    head = encoded[: limit - 17]
    # Never cut through a %XX escape.
    percent = head.rfind("%", len(head) - 2)
    if percent != -1:
        head = head[:percent]
    return f"{head}~{digest}"


@lru_cache(maxsize=4096)
def subject_token(value: str) -> str:
    """One subject token for ``value``, whatever it holds (see the module docstring)."""
    if not value:
        return "_"
    return _cut(_encode(value, _TOKEN_SAFE), value, MAX_TOKEN)


@lru_cache(maxsize=4096)
def header_value(value: str) -> str:
    """``value`` as a header value that reads back with `urllib.parse.unquote` (if not cut)."""
    return _cut(_encode(value, _HEADER_SAFE), value, MAX_HEADER)


class SubjectTemplate:
    """``audit.{topic}.{routing_key}``: literal tokens and whole-token placeholders.

    Checked when the config is read: the first token is a literal (the stream's subjects are
    that prefix followed by ``>``, so a stream never captures subjects that are not ours),
    ``{topic}`` is there once, ``{routing_key}`` at most once, each a whole token."""

    def __init__(self, template: str):
        tokens = template.split(".")
        problems = []
        for token in tokens:
            if token in PLACEHOLDERS:
                continue
            if not token:
                problems.append("an empty token (two dots in a row, or a dot at an end)")
            elif "{" in token or "}" in token:
                problems.append(
                    f"{token!r}: a placeholder is a whole token, one of {', '.join(PLACEHOLDERS)}"
                )
            elif not _LITERAL.match(token) or token in ("*", ">") or "*" in token or ">" in token:
                problems.append(f"{token!r}: a literal token is printable ASCII without * or >")
        if tokens.count("{topic}") != 1:
            problems.append("{topic} must appear exactly once")
        if tokens.count("{routing_key}") > 1:
            problems.append("{routing_key} may appear at most once")
        if tokens[0] in PLACEHOLDERS:
            problems.append("the first token must be a literal (e.g. audit), the stream's subject prefix")
        if problems:
            raise ValueError(f"subject {template!r}: " + "; ".join(problems))
        self.template = template
        self.tokens = tokens
        prefix = []
        for token in tokens:
            if token in PLACEHOLDERS:
                break
            prefix.append(token)
        self.stream_subject = ".".join([*prefix, ">"])

    def render(self, topic_token: str, routing_key_token: str) -> str:
        """The subject, from tokens already made safe by `subject_token`."""
        values = {"{topic}": topic_token, "{routing_key}": routing_key_token}
        return ".".join(values.get(token, token) for token in self.tokens)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether the NATS subject filter ``pattern`` (``*``, ``>``) takes every subject ``subject``
    takes (``subject`` may itself be a filter: ``audit.>`` is within ``audit.>`` and ``>``)."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have):
            return False
        if have[i] == ">":
            return False  # the subject takes more tokens than this pattern does
        if token != "*" and (token != have[i] or have[i] == "*"):
            return False
    return len(want) == len(have)
