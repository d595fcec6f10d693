"""log4j's ``helpers.Transform``: the escaping XMLLayout and HTMLLayout apply, exactly.

Only ``<``, ``>``, ``&`` and ``"`` are escaped (not ``'``, not control characters), and
``]]>`` inside a CDATA section is split into ``]]>]]&gt;<![CDATA[`` — which closes the section,
writes the ``]]>`` as text and opens a new one, so an XML reader gets the original text back.
"""

from __future__ import annotations

CDATA_END = "]]>"
_CDATA_EMBEDDED_END = "]]>]]&gt;<![CDATA["


def escape_tags(text: str | None) -> str:
    """Transform.escapeTags, as the layouts append it: null is printed ``null``."""
    if text is None:
        return "null"
    if "<" not in text and ">" not in text and "&" not in text and '"' not in text:
        return text  # the common case, as in log4j: four C scans beat a translate()
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def escape_cdata(text: str | None) -> str:
    """Transform.appendEscapingCDATA: the text to put inside ``<![CDATA[…]]>``."""
    if text is None:
        return ""
    return text.replace(CDATA_END, _CDATA_EMBEDDED_END)
