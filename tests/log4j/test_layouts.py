"""XMLLayout, HTMLLayout and the time zone ids on their own: properties that hold for any input
(the byte-for-byte comparisons with log4j are in test_layouts_reference.py)."""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from logbridge.log4j.appenders import ConsoleAppenderHandler, FileAppenderHandler
from logbridge.log4j.htmllayout import HTMLLayoutFormatter
from logbridge.log4j.markup import escape_cdata, escape_tags
from logbridge.log4j.timezone import GMT, custom_time_zone, java_time_zone
from logbridge.log4j.xmllayout import XMLLayoutFormatter

# Characters an XML 1.0 document may hold (what a reader of the layout's output accepts).
_XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda c: c in "\t\n" or c >= " "
    )
)


@given(_XML_TEXT)
def test_cdata_escaping_gives_the_text_back_to_an_xml_reader(text: str) -> None:
    doc = f"<m><![CDATA[{escape_cdata(text)}]]></m>"
    assert (ET.fromstring(doc).text or "") == text


@given(_XML_TEXT)
def test_escaped_tags_read_back_in_an_attribute(text: str) -> None:
    value = ET.fromstring(f'<m a="{escape_tags(text)}"/>').get("a")
    # An XML reader normalises white space in attributes; everything else comes back.
    assert value == text.replace("\t", " ").replace("\n", " ")


@given(_XML_TEXT, _XML_TEXT, st.dictionaries(_XML_TEXT, _XML_TEXT, max_size=4))
def test_xml_layout_events_are_well_formed_inside_a_root(message: str, ndc: str, mdc: dict[str, str]) -> None:
    r = logging.LogRecord("a.b", logging.WARNING, "/src/x.py", 3, message, None, None, func="f")
    r.ndc, r.mdc = ndc, mdc
    text = XMLLayoutFormatter(location_info=True, properties=True).format(r)
    root = ET.fromstring(f'<root xmlns:log4j="urn:log4j">{text}</root>')
    event = root[0]
    assert event.findtext("{urn:log4j}message") == message
    assert event.findtext("{urn:log4j}NDC") == ndc
    data = {d.get("name"): d.get("value") for d in event.iter("{urn:log4j}data")}
    assert len(data) == len(mdc)


_SIGNS = st.sampled_from("+-")


@given(_SIGNS, st.integers(0, 23), st.integers(0, 59), st.booleans(), st.sampled_from(["", ":", "none"]))
def test_custom_gmt_ids_give_their_offset(sign: str, hours: int, minutes: int, pad: bool, sep: str) -> None:
    """GMT+H, GMT+HH, GMT+H:MM, GMT+HH:MM, GMT+HMM, GMT+HHMM."""
    hh = f"{hours:02d}" if pad else str(hours)
    if sep == "none":
        minutes, text = 0, hh
    else:
        text = f"{hh}{sep}{minutes:02d}"
    tz = custom_time_zone(f"GMT{sign}{text}")
    assert tz is not None
    offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
    assert tz.utcoffset(None) == offset
    assert tz.tzname(None) == f"GMT{sign}{hours:02d}:{minutes:02d}"


@given(st.text(max_size=12))
def test_any_zone_id_resolves_like_java_never_raises(tz_id: str) -> None:
    tz = java_time_zone(tz_id)
    assert tz.utcoffset(dt.datetime(2020, 2, 19)) is not None
    if tz_id.startswith("GMT") and len(tz_id) > 3 and tz_id[3] in "+-" and custom_time_zone(tz_id) is None:
        assert tz is GMT


def test_header_once_per_file_and_footer_once(tmp_path: Path) -> None:
    h = FileAppenderHandler(str(tmp_path / "a.html"))
    fmt = HTMLLayoutFormatter(title="T")
    h.setFormatter(fmt)
    h.setFormatter(fmt)
    h.close()
    h.close()
    text = (tmp_path / "a.html").read_text()
    assert text.count("<title>T</title>") == 1
    assert text.count("</body></html>") == 1
    assert text.endswith("</body></html>")


def test_console_header_waits_for_the_first_event_like_log4j() -> None:
    import io

    stream = io.StringIO()
    h = ConsoleAppenderHandler()
    h.setStream(stream)
    h.setFormatter(HTMLLayoutFormatter())
    assert stream.getvalue() == ""  # log4j's writer holds it in its buffer
    h.handle(logging.LogRecord("a", logging.INFO, "/x.py", 1, "hi", None, None))
    assert stream.getvalue().startswith("<!DOCTYPE HTML")
    assert '<td title="Message">hi</td>' in stream.getvalue()
    h.close()
    assert stream.getvalue().endswith("</body></html>")
