"""The manifest format: serialize → parse is the identity, and hostile bytes only ever raise
`ManifestError` (never another exception, never a manifest that was not written)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logbridge.errors import ManifestError
from logbridge.store import manifest as mf
from logbridge.store.digest import FileDigest, digest_file, line_digests

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
times = st.none() | st.just("2026-12-01T10:00:00.000+0000")
hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def manifests(draw: st.DrawFn) -> mf.Manifest:
    lines = draw(st.lists(st.binary(max_size=80).filter(lambda b: b"\n" not in b), max_size=30))
    data = b"".join(line + b"\n" for line in lines)
    key = draw(st.none() | st.binary(min_size=1, max_size=40))
    per_line = draw(st.booleans())
    return mf.build_file_manifest(
        file=draw(names),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        lines=len(lines),
        digests=line_digests(data) if per_line else None,
        encoding=draw(st.sampled_from(["none", "gzip"])),
        first_event_time=draw(times),
        last_event_time=draw(times),
        partition=draw(names),
        partition_start=draw(times),
        partition_end=draw(times),
        stream=draw(names),
        seq=draw(st.integers(1, 2**62)),
        prev=draw(st.none() | hexes),
        prev_file=draw(st.none() | names),
        sealed_at="2026-12-01T10:00:00.000+0000",
        key=key,
    )


@given(manifests())
def test_serialize_then_parse_is_the_identity(m: mf.Manifest) -> None:
    back = mf.parse(mf.serialize(m))
    assert back.header == m.header and back.digests == m.digests and back.hash == m.hash
    assert mf.serialize(back) == mf.serialize(m)


@given(manifests(), st.binary(min_size=1, max_size=40))
def test_a_signature_holds_only_for_its_key_and_content(m: mf.Manifest, key: bytes) -> None:
    signed = mf.sign(m.header, key)
    assert mf.signature_ok(signed, key)
    assert not mf.signature_ok(signed, key + b"x")
    assert not mf.signature_ok(signed | {"lines": signed["lines"] + 1}, key)
    # The hash the next manifest chains to does not depend on the signature.
    assert mf.header_hash(signed) == mf.header_hash(m.header)


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_manifest_error(data: bytes) -> None:
    try:
        mf.parse(data)
    except ManifestError:
        pass


@settings(max_examples=300)
@given(manifests(), st.integers(0, 10_000), st.integers(0, 255))
def test_a_changed_byte_never_parses_to_the_same_manifest(m: mf.Manifest, where: int, value: int) -> None:
    data = bytearray(mf.serialize(m))
    i = where % len(data)
    if data[i] == value:
        return
    data[i] = value
    try:
        back = mf.parse(bytes(data))
    except ManifestError:
        return
    assert (back.hash, back.digests) != (m.hash, m.digests) or back.header.get("signature") != m.header.get(
        "signature"
    )


def test_wrong_types_and_sizes_are_named() -> None:
    m = mf.build_file_manifest(
        file="a.ndjson",
        size=2,
        sha256="0" * 64,
        lines=1,
        digests=line_digests(b"x\n"),
        encoding="none",
        first_event_time=None,
        last_event_time=None,
        partition="p",
        partition_start=None,
        partition_end=None,
        stream="w/d/k",
        seq=1,
        prev=None,
        prev_file=None,
        sealed_at="t",
    )
    for change, message in [
        ({"seq": "1"}, "'seq'"),
        ({"seq": 0}, "seq must be"),
        ({"seq": True}, "'seq'"),
        ({"kind": "other"}, "kind"),
        ({"format": "v0"}, "format"),
        ({"lines": 2}, "line digests"),
    ]:
        with pytest.raises(ManifestError, match=message):
            mf.parse(mf.canonical(m.header | change) + b"\n" + m.digests)
    with pytest.raises(ManifestError, match="do not match"):
        mf.parse(mf.canonical(m.header) + b"\n" + b"\0" * 8)
    with pytest.raises(ManifestError, match="no header line"):
        mf.parse(b"{" * (mf.MAX_HEADER + 2))


@given(lines=st.lists(st.binary(max_size=50).filter(lambda b: b"\n" not in b), max_size=20), data=st.data())
def test_a_digest_kept_while_appending_equals_one_read_from_the_file(
    lines: list[bytes], data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    body = b"".join(line + b"\n" for line in lines)
    newlines = [i + 1 for i, c in enumerate(body) if c == 10]
    cuts = sorted(data.draw(st.sets(st.sampled_from(newlines)))) if newlines else []
    running = FileDigest()
    start = 0
    for cut in [*cuts, len(body)]:
        running.update(start, body[start:cut])
        start = cut
    path = tmp_path_factory.mktemp("digest") / "f"
    path.write_bytes(body + b"unacknowledged tail\n")
    read = digest_file(path, len(body))
    assert running.result(len(body)) is not None
    assert (
        running.sha.hexdigest(),
        running.lines,
        bytes(running.digests),
        running.first_line,
        running.last_line,
    ) == (read.sha.hexdigest(), read.lines, bytes(read.digests), read.first_line, read.last_line)
    assert running.sha.hexdigest() == hashlib.sha256(body).hexdigest() and running.lines == len(lines)


def test_an_append_elsewhere_than_the_end_makes_the_digest_stale() -> None:
    d = FileDigest()
    d.update(0, b"a\nb\n")
    d.update(2, b"c\n")  # after a rollback cut the file back to 2 bytes
    assert d.result(4) is None
