"""ConsoleAppender on a real process's stdout whose charset cannot hold every character.

Python's own StreamHandler drops such an event with a ``--- Logging error ---`` traceback on
stderr; log4j writes ``?`` instead. The reference tests compare the bytes with log4j through an
in-process stream; here the stream is a real one (a child process, its stdout a pipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = """
import logging, sys
import logbridge
logbridge.configure(sys.argv[1])
logging.getLogger("app").info("h\\u00e9llo \\u2713 \\U0001f600 done")
logging.getLogger("app").info("second")
"""


def _run(tmp_path: Path, props: str, io_encoding: str) -> subprocess.CompletedProcess[bytes]:
    path = tmp_path / "console.properties"
    path.write_text(props, encoding="latin-1")
    env = {**os.environ, "PYTHONIOENCODING": io_encoding}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(path)], capture_output=True, env=env, timeout=60, check=True
    )


_CONSOLE = """\
log4j.rootLogger=INFO, CON
log4j.appender.CON=org.apache.log4j.ConsoleAppender
log4j.appender.CON.layout=org.apache.log4j.PatternLayout
log4j.appender.CON.layout.ConversionPattern=%p %m%n
"""


@pytest.mark.parametrize("io_encoding", ["ascii", "latin-1"])
def test_unencodable_characters_become_question_marks_and_no_event_is_lost(
    tmp_path: Path, io_encoding: str
) -> None:
    proc = _run(tmp_path, _CONSOLE, io_encoding)
    assert proc.stderr == b""
    expected = "INFO h\u00e9llo ? ? done\n" if io_encoding == "latin-1" else "INFO h?llo ? ? done\n"
    assert proc.stdout == (expected + "INFO second\n").encode(io_encoding)


def test_encoding_option_writes_the_charset_bytes_whatever_the_stream_charset(tmp_path: Path) -> None:
    proc = _run(tmp_path, _CONSOLE + "log4j.appender.CON.Encoding=UTF-8\n", "ascii")
    assert proc.stderr == b""
    assert proc.stdout == "INFO h\u00e9llo \u2713 \U0001f600 done\nINFO second\n".encode()
