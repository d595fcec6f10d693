"""A real log4j 2 HttpAppender (Debian's liblog4j2-java + Jackson) posting to the collector.

log4j 2 sends ``Content-Type: application/json; charset=UTF-8``, one event per request, and with
its default JsonLayout a pretty-printed object with CRLF line ends; the message is the audit
event as a JSON *string*. Both the default and the compact layout are checked.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JARS = [
    Path("/usr/share/java") / name
    for name in (
        "log4j-api.jar",
        "log4j-core.jar",
        "jackson-core.jar",
        "jackson-databind.jar",
        "jackson-annotations.jar",
    )
]
POSTER = Path(__file__).parent / "log4j2" / "AuditPoster.java"

pytestmark = [
    pytest.mark.java,
    pytest.mark.skipif(shutil.which("java") is None, reason="needs a JDK (CI installs default-jdk-headless)"),
    pytest.mark.skipif(
        not all(j.exists() for j in JARS),
        reason="needs Debian's liblog4j2-java and libjackson2-databind-java",
    ),
]

CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Http name="collector" url="{url}">
      <JsonLayout properties="true" compact="{compact}" eventEol="{compact}"/>
    </Http>
  </Appenders>
  <Loggers>
    <Logger name="dku.audit" level="info" additivity="false"><AppenderRef ref="collector"/></Logger>
    <Root level="error"/>
  </Loggers>
</Configuration>
"""


@pytest.mark.parametrize("compact", ["false", "true"])
def test_http_appender_events_are_stored(
    compact: str, collector: Any, tmp_path: Path, read_local_store: Any
) -> None:
    c = collector()
    config = tmp_path / "log4j2.xml"
    config.write_text(CONFIG.format(url=c.events_url, compact=compact))
    proc = subprocess.run(
        [
            "java",
            f"-Dlog4j2.configurationFile={config}",
            "-cp",
            ":".join(str(j) for j in JARS),
            str(POSTER),
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" not in proc.stderr, proc.stderr  # log4j 2 reports a failed POST on stderr
    c.stop()
    lines = [line for rows in read_local_store(c.store).values() for line in rows]
    assert len(lines) == 10
    by_topic = {
        t: sorted(x["clientEvent"]["seq"] for x in lines if x["topic"] == t)
        for t in {x["topic"] for x in lines}
    }
    assert by_topic == {"generic": list(range(5)), "apinode-query": list(range(5))}
    api = next(x for x in lines if x["topic"] == "apinode-query")
    assert api["routingKey"] == "churn-scoring"
    env = api["envelope"]
    assert env["loggerName"] == "dku.audit.apinode-query" and env["level"] == "INFO"
    assert env["contextMap"] == {"user": "admin", "apiCall": "/api/projects/get-summary"}
    assert env["messageWasString"] is True
    assert "instant" in env or "timeMillis" in env
    dead = read_local_store(c.dead_letter) if c.dead_letter.exists() else {}
    assert dead == {}
