"""log4j's ``org.apache.log4j.HTMLLayout`` as a `logging.Formatter`, byte for byte.

Each record is a table row (time since start, thread, level — DEBUG green, WARN and above bold
red —, category, with ``LocationInfo`` file:line, message), then a row for the NDC and one for
the throwable. The appender writes `header` (the page head, the table's first row, and the
session's start time in Java's ``Date.toString()`` form) when it opens its file or stream and
`footer` when it closes it; a file rolled over gets a new header and no footer, as in log4j.
The title is written as given (log4j does not escape it); everything else is escaped as
log4j's ``Transform.escapeTags`` does.
"""

from __future__ import annotations

import logging
import time

from .converters import LINE_SEP, SIMPLE, file_name, line_number, record_ndc, throwable_lines
from .dateformat import SimpleDateFormat
from .levels import LEVELS, log4j_name
from .markup import escape_tags

_N = LINE_SEP
_TRACE_PREFIX = "<br>&nbsp;&nbsp;&nbsp;&nbsp;"
_DATE_TO_STRING = "EEE MMM dd HH:mm:ss zzz yyyy"  # java.util.Date.toString()
_relative = SIMPLE["r"]


class HTMLLayoutFormatter(logging.Formatter):
    """``HTMLLayout`` with its options ``Title`` and ``LocationInfo``."""

    def __init__(self, title: str = "Log4J Log Messages", location_info: bool = False):
        super().__init__()
        self.title = title
        self.location_info = location_info

    def format(self, record: logging.LogRecord) -> str:
        thread = escape_tags(record.threadName)
        level = escape_tags(log4j_name(record.levelno, record.levelname))
        if record.levelno == LEVELS["DEBUG"]:
            level = f'<font color="#339933">{level}</font>'
        elif record.levelno >= LEVELS["WARN"]:
            level = f'<font color="#993300"><strong>{level}</strong></font>'
        category = escape_tags(record.name)
        out = [
            f"{_N}<tr>{_N}",
            f"<td>{_relative(record)}</td>{_N}",
            f'<td title="{thread} thread">{thread}</td>{_N}',
            f'<td title="Level">{level}</td>{_N}',
            f'<td title="{category} category">{category}</td>{_N}',
        ]
        if self.location_info:
            out.append(f"<td>{escape_tags(file_name(record))}:{line_number(record)}</td>{_N}")
        out.append(f'<td title="Message">{escape_tags(record.getMessage())}</td>{_N}')
        out.append(f"</tr>{_N}")
        ndc = record_ndc(record)
        if ndc is not None:
            out.append(
                '<tr><td bgcolor="#EEEEEE" style="font-size : xx-small;" colspan="6" '
                f'title="Nested Diagnostic Context">NDC: {escape_tags(ndc)}</td></tr>{_N}'
            )
        lines = throwable_lines(record, self)
        if lines:
            out.append('<tr><td bgcolor="#993300" style="color:White; font-size : xx-small;" colspan="6">')
            out.append(escape_tags(lines[0]) + _N)
            out.extend(_TRACE_PREFIX + escape_tags(line) + _N for line in lines[1:])
            out.append(f"</td></tr>{_N}")
        return "".join(out)

    def header(self) -> str:
        started = SimpleDateFormat(_DATE_TO_STRING).format_ms(int(time.time() * 1000))
        columns = ["Time", "Thread", "Level", "Category"]
        if self.location_info:
            columns.append("File:Line")
        columns.append("Message")
        return "".join(
            line + _N
            for line in [
                '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" '
                '"http://www.w3.org/TR/html4/loose.dtd">',
                "<html>",
                "<head>",
                f"<title>{self.title}</title>",
                '<style type="text/css">',
                "<!--",
                "body, table {font-family: arial,sans-serif; font-size: x-small;}",
                "th {background: #336699; color: #FFFFFF; text-align: left;}",
                "-->",
                "</style>",
                "</head>",
                '<body bgcolor="#FFFFFF" topmargin="6" leftmargin="6">',
                '<hr size="1" noshade>',
                f"Log session start time {started}<br>",
                "<br>",
                '<table cellspacing="0" cellpadding="4" border="1" bordercolor="#224466" width="100%">',
                "<tr>",
                *[f"<th>{c}</th>" for c in columns],
                "</tr>",
            ]
        )

    def footer(self) -> str:
        return f"</table>{_N}<br>{_N}</body></html>"
