"""Java charset names (an appender's ``Encoding``) → Python codecs that write the same bytes.

Most names mean the same in both (``ISO-8859-1``, ``UTF-8``, ``Cp1252``, ``US-ASCII``). Where
they differ, Java wins: its ``UTF-16`` is big-endian after a byte order mark (Python's is the
machine's order), its ``UTF-32`` big-endian without one. Python codecs Java has no charset for
(``rot13``, ``idna``, ``unicode_escape``…) are unknown names, as in log4j, which then warns and
uses the default charset.
"""

from __future__ import annotations

import codecs

_JAVA_UTF16 = "java_utf_16"  # BOM (FE FF) once per writer, then UTF-16BE
_PYTHON_ONLY = {
    "idna",
    "punycode",
    "unicode-escape",
    "raw-unicode-escape",
    "undefined",
    "charmap",
    "mbcs",
    "oem",
}


class _JavaUTF16Encoder(codecs.IncrementalEncoder):
    """Java's UTF-16 encoder. ``setstate`` stays a no-op: Python's file objects call it to skip
    the BOM when appending to a file, Java's writer writes it again."""

    def __init__(self, errors: str = "strict") -> None:
        super().__init__(errors)
        self._started = False

    def encode(self, input: str, final: bool = False) -> bytes:  # noqa: A002 - codecs' name
        data = codecs.encode(input, "utf-16-be", self.errors)
        if not self._started and (data or final):
            self._started = True
            data = codecs.BOM_UTF16_BE + data
        return data

    def reset(self) -> None:
        self._started = False


def _search(name: str) -> codecs.CodecInfo | None:
    if name != _JAVA_UTF16:
        return None
    utf16 = codecs.lookup("utf-16")
    return codecs.CodecInfo(
        name=_JAVA_UTF16,
        encode=lambda text, errors="strict": (
            codecs.BOM_UTF16_BE + codecs.encode(text, "utf-16-be", errors),
            len(text),
        ),
        decode=utf16.decode,
        incrementalencoder=_JavaUTF16Encoder,
        incrementaldecoder=utf16.incrementaldecoder,
        streamreader=utf16.streamreader,
        streamwriter=utf16.streamwriter,
    )


codecs.register(_search)


def python_codec(java_name: str) -> str | None:
    """The Python codec writing what Java's charset ``java_name`` writes; None if Java would
    not know the name (``Unsupported encoding?``)."""
    try:
        info = codecs.lookup(java_name)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _PYTHON_ONLY:
        return None
    if info.name == "utf-16":
        return _JAVA_UTF16
    if info.name == "utf-32":
        return "utf-32-be"
    return info.name
