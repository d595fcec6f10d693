"""log4j's ``org.apache.log4j.xml.XMLLayout`` as a `logging.Formatter`, byte for byte.

What Chainsaw and log4j's XML receivers read: one ``<log4j:event>`` element per record, lines
ended by ``\\r\\n`` whatever the platform, the message, NDC and throwable in CDATA sections
(``]]>`` split, see `markup`), then with ``LocationInfo`` a ``<log4j:locationInfo>`` element and
with ``Properties`` the MDC as ``<log4j:properties>``, its keys in Java's String order, entries
with a null value left out. The layout has no header or footer (a file of events is not a
well-formed document; readers wrap it), and prints the throwable itself.
"""

from __future__ import annotations

import logging

from .converters import (
    java_sorted,
    java_str,
    location_parts,
    record_mdc,
    record_millis,
    record_ndc,
    throwable_lines,
)
from .levels import log4j_name
from .markup import escape_cdata, escape_tags

_CRLF = "\r\n"


class XMLLayoutFormatter(logging.Formatter):
    """``XMLLayout`` with its two options, ``LocationInfo`` and ``Properties`` (both off)."""

    def __init__(self, location_info: bool = False, properties: bool = False):
        super().__init__()
        self.location_info = location_info
        self.properties = properties

    def format(self, record: logging.LogRecord) -> str:
        level = log4j_name(record.levelno, record.levelname)
        out = [
            f'<log4j:event logger="{escape_tags(record.name)}" timestamp="{record_millis(record)}" '
            f'level="{escape_tags(level)}" thread="{escape_tags(record.threadName)}">{_CRLF}',
            f"<log4j:message><![CDATA[{escape_cdata(record.getMessage())}]]></log4j:message>{_CRLF}",
        ]
        ndc = record_ndc(record)
        if ndc is not None:
            out.append(f"<log4j:NDC><![CDATA[{escape_cdata(ndc)}]]></log4j:NDC>{_CRLF}")
        lines = throwable_lines(record, self)
        if lines:
            body = "".join(escape_cdata(line) + _CRLF for line in lines)
            out.append(f"<log4j:throwable><![CDATA[{body}]]></log4j:throwable>{_CRLF}")
        if self.location_info:
            cls, method, file, line = location_parts(record)
            out.append(
                f'<log4j:locationInfo class="{escape_tags(cls)}" method="{escape_tags(method)}" '
                f'file="{escape_tags(file)}" line="{line}"/>{_CRLF}'
            )
        if self.properties:
            mdc = record_mdc(record)
            if mdc:
                out.append("<log4j:properties>" + _CRLF)
                for key in java_sorted(mdc):
                    value = java_str(mdc[key])
                    if value is not None:
                        out.append(
                            f'<log4j:data name="{escape_tags(str(key))}" value="{escape_tags(value)}"/>{_CRLF}'
                        )
                out.append("</log4j:properties>" + _CRLF)
        out.append("</log4j:event>" + _CRLF + _CRLF)
        return "".join(out)
