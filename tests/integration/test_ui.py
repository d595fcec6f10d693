"""The operator page (``ui: true``) on a real ``logbridge collect`` process.

First its JSON endpoints and sign-in over plain HTTP, each on its own; then the page itself in a
real headless browser: Debian's chromium driven by Playwright (its own browser download cannot
work here: ``executable_path`` points at the system one, installed by .ci/run).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS
from _polling import wait_for

from logbridge.collector.config import CollectorServerConfig
from logbridge.errors import ConfigError

from .collectorproc import Collector

pytestmark = pytest.mark.integration

NODE_TOKEN = "node-token-5b1f0c"
UI_TOKEN = "operator-token-93ad7e"


def log4j(seq: int, *, user: str = "alice", topic: str = "generic") -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime())
    return {
        "severity": "INFO",
        "logger": f"dku.audit.{topic}",
        "message": {"msgType": "login", "authUser": user, "seq": seq},
        "mdc": {"user": user},
        "timestamp": stamp,
    }


def post(c: Collector, node: str, events: list[dict[str, Any]], extra: bytes = b"") -> dict[str, Any]:
    body = b"".join(orjson.dumps(e) + b"\n" for e in events) + extra
    r = httpx.post(
        c.events_url,
        content=body,
        headers={"Authorization": f"Bearer {NODE_TOKEN}", "X-Logbridge-Node": node},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def ui_collector(collector: Callable[..., Collector]) -> Callable[..., Collector]:
    """``ui_collector(**ui_settings)``: a collector with one node token and the page on."""

    def start(**ui: Any) -> Collector:
        return collector(
            env={"LB_NODE_TOKEN": NODE_TOKEN, "LB_UI_TOKEN": UI_TOKEN},
            auth={"tokens": [{"name": "node-a", "token_env": "LB_NODE_TOKEN"}]},
            ui={"enabled": True, **ui},
        )

    return start


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------------- configuration


def test_ui_true_is_short_for_enabled_and_keys_are_checked(tmp_path: Path) -> None:
    base = {"dead_letter": "file:///tmp/dl", "destinations": [{"name": "s", "url": "file:///tmp/s"}]}
    assert CollectorServerConfig.model_validate({**base, "ui": True}).ui.enabled
    assert not CollectorServerConfig.model_validate(base).ui.enabled
    path = tmp_path / "c.yaml"
    path.write_text(orjson.dumps({**base, "ui": {"enabled": True, "stale_afer": "5m"}}).decode())
    from logbridge.collector.config import load

    with pytest.raises(ConfigError, match=r"ui\.stale_afer"):
        load(path)
    path.write_text(orjson.dumps({**base, "ui": "yes please"}).decode())
    with pytest.raises(ConfigError, match=r"ui: expected true, false, or a mapping"):
        load(path)
    path.write_text(
        orjson.dumps({**base, "ui": {"enabled": True, "token_env": "LB_NOT_SET_ANYWHERE"}}).decode()
    )
    with pytest.raises(ConfigError, match=r"ui\.token_env: environment variable LB_NOT_SET_ANYWHERE"):
        load(path)


# ----------------------------------------------------------------------------- the API


def test_the_page_is_off_unless_configured(collector: Callable[..., Collector]) -> None:
    c = collector()
    for path in ("/ui", "/api/stats", "/api/recent", "/ui/app.js"):
        assert httpx.get(c.base_url + path).status_code == 404, path


def test_api_stats_shows_rates_nodes_dead_letter_and_destinations(
    ui_collector: Callable[..., Collector],
) -> None:
    c = ui_collector(stale_after="1h")
    post(c, "node-a", [log4j(i) for i in range(7)] + [log4j(99, topic="authfail")], extra=b"not json\n")
    post(c, "node-b", [log4j(i) for i in range(3)])
    stats = httpx.get(c.base_url + "/api/stats", headers=bearer(NODE_TOKEN)).json()

    topics = {t["topic"]: t for t in stats["ingest"]["topics"]}
    assert topics["generic"]["total"] == 10 and topics["generic"]["last_minute"] == 10
    assert topics["generic"]["events_per_s"] == 1.0  # 10 events over the 10 s window
    assert topics["authfail"]["total"] == 1
    nodes = {n["node"]: n for n in stats["nodes"]}
    assert set(nodes) == {"node-a", "node-b"}
    assert nodes["node-a"]["events"] == 8 and nodes["node-b"]["events"] == 3
    assert not nodes["node-a"]["stale"] and nodes["node-a"]["lag_s"] is not None
    assert stats["dead_letter"]["total"] == 1
    assert stats["dead_letter"]["by_reason"] == {"invalid-json": 1}
    assert stats["dead_letter"]["latest"][0]["raw"] == "not json"
    store, dead = stats["destinations"]
    assert store["name"] == "store" and store["type"] == "filesystem" and store["problem"] is None
    assert store["staging_bytes"] > 0 and store["blocked"] is False
    assert dead["name"] == "dead letter"
    assert stats["requests"]["by_status"] == {"200": 2}
    assert stats["requests"]["unavailable_503"] == 0
    assert stats["health"] == {"status": "ok", "reason": None}


def test_api_stats_shows_a_failing_destination_and_its_503s(collector: Callable[..., Collector]) -> None:
    c = collector(ui=True, max_age="1s")
    post_open = {"X-Logbridge-Node": "node-a"}
    assert httpx.post(c.events_url, content=orjson.dumps(log4j(1)), headers=post_open).status_code == 200
    # The store's folder becomes a file: the rolled file cannot be published, and stays waiting.
    shutil.rmtree(c.store)
    c.store.write_text("not a folder")

    def stats() -> dict[str, Any]:
        return dict(httpx.get(c.base_url + "/api/stats").json())

    failing = wait_for(
        lambda: (s := stats())["destinations"][0]["problem"] and s, what="a destination problem"
    )
    store = failing["destinations"][0]
    assert store["blocked"] is True and store["files_waiting"] == 1 and store["files_published"] == 0
    assert "cannot be written" in store["problem"]
    assert failing["health"]["status"] == "degraded"
    refused = httpx.post(c.events_url, content=orjson.dumps(log4j(2)), headers=post_open)
    assert refused.status_code == 503
    assert stats()["requests"]["unavailable_503"] == 1
    # The folder is back: the backlog drains and the page says so.
    c.store.unlink()
    c.store.mkdir()
    healed = wait_for(
        lambda: (s := stats())["destinations"][0]["files_published"] == 1 and s, what="publication"
    )
    assert healed["destinations"][0]["problem"] is None and healed["health"]["status"] == "ok"


def test_api_recent_limit_and_filter(ui_collector: Callable[..., Collector]) -> None:
    c = ui_collector(recent_events=8)
    post(c, "node-a", [log4j(i, user="bob" if i % 3 == 0 else "alice") for i in range(12)])
    url = c.base_url + "/api/recent"
    auth = bearer(NODE_TOKEN)

    got = httpx.get(url, params={"limit": 3}, headers=auth).json()
    assert [e["clientEvent"]["seq"] for e in got["events"]] == [11, 10, 9]
    assert got["events"][0]["node"] == "node-a" and got["events"][0]["topic"] == "generic"
    # One batch of 12 is kept whole (the ring drops whole batches, and keeps the newest).
    got = httpx.get(url, params={"limit": 1000, "filter": "BOB"}, headers=auth).json()
    assert [e["clientEvent"]["seq"] for e in got["events"]] == [9, 6, 3, 0]
    assert got["limit"] == 8 and got["filter"] == "BOB"
    for bad in ("0", "-1", "x", "1001", "²"):
        r = httpx.get(url, params={"limit": bad}, headers=auth)
        assert r.status_code == 400 and "limit must be a whole number" in r.json()["error"], bad


def test_sign_in_by_token_then_cookie(ui_collector: Callable[..., Collector]) -> None:
    c = ui_collector()
    ui = c.base_url + "/ui"
    # Nothing without a token; the page says how to sign in.
    page = httpx.get(ui)
    assert page.status_code == 401 and "/ui?token=" in page.text
    assert httpx.get(c.base_url + "/api/stats").status_code == 401
    assert httpx.get(ui, params={"token": "wrong"}).status_code == 401
    # The page's files hold no data: served to anyone.
    js = httpx.get(ui + "/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")

    signed = httpx.get(ui, params={"token": NODE_TOKEN})
    assert signed.status_code == 303 and signed.headers["location"] == "ui"  # the token leaves the URL
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and NODE_TOKEN not in cookie
    jar = {"logbridge_ui": cookie.split(";")[0].split("=", 1)[1]}
    page = httpx.get(ui, cookies=jar)
    assert page.status_code == 200 and 'id="recent"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert httpx.get(c.base_url + "/api/stats", cookies=jar).status_code == 200
    # among other sites' cookies on the same host, malformed ones too
    mixed = f'theme="dark mode; x; logbridge_ui={jar["logbridge_ui"]}; lang=en'
    assert httpx.get(c.base_url + "/api/stats", headers={"cookie": mixed}).status_code == 200

    name, expires, signature = jar["logbridge_ui"].split(".")
    forged = {"logbridge_ui": f"{name}.{int(expires) + 1}.{signature}"}
    assert httpx.get(c.base_url + "/api/stats", cookies=forged).status_code == 401
    assert httpx.post(c.base_url + "/api/stats", cookies=jar).status_code == 405
    assert httpx.get(ui + "/../../etc/passwd", cookies=jar).status_code in (400, 404)

    # Refusals are audited like the API's, and no token is ever written to the log.
    stats = httpx.get(c.base_url + "/api/stats", cookies=jar).json()
    assert stats["requests"]["auth_failures"] >= 4
    assert {"authfail"} <= {t["topic"] for t in stats["ingest"]["topics"]}
    c.stop()
    log = "\n".join(p.read_text() for p in c.logs)
    assert NODE_TOKEN not in log and "/ui" in log


def test_a_token_of_its_own_keeps_node_tokens_out(collector: Callable[..., Collector]) -> None:
    c = collector(
        env={"LB_NODE_TOKEN": NODE_TOKEN, "LB_UI_TOKEN": UI_TOKEN},
        auth={"tokens": [{"name": "node-a", "token_env": "LB_NODE_TOKEN"}]},
        ui={"enabled": True, "token_env": "LB_UI_TOKEN"},
    )
    stats = c.base_url + "/api/stats"
    assert httpx.get(stats, headers=bearer(NODE_TOKEN)).status_code == 401
    assert httpx.get(stats, headers=bearer(UI_TOKEN)).status_code == 200
    assert httpx.get(c.base_url + "/ui", params={"token": NODE_TOKEN}).status_code == 401
    assert httpx.get(c.base_url + "/ui", params={"token": UI_TOKEN}).status_code == 303
    post(c, "node-a", [log4j(1)])  # and the node token still sends events


# ------------------------------------------------------------------------- in a browser


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A page of Debian's chromium, headless, with a fresh profile; skipped (failed in CI)
    when chromium or Playwright is missing."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed: apt-get install chromium (as .ci/run does)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright is not installed: pip install -e '.[test]'"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing, pytrace=False)
        pytest.skip(missing)
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


def test_the_page_in_a_real_browser(
    ui_collector: Callable[..., Collector], browser_page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    c = ui_collector(stale_after="3s", refresh="300ms")

    page.goto(f"{c.base_url}/ui?token={NODE_TOKEN}")
    assert page.url == f"{c.base_url}/ui"  # signed in, the token gone from the address bar
    expect(page.locator("body[data-loaded=true]")).to_have_count(1, timeout=15_000)
    expect(page.locator("#total-events")).to_have_text("0")

    # The numbers follow the events as they are posted.
    post(c, "node-a", [log4j(i, user="bob" if i < 4 else "alice") for i in range(10)])
    post(c, "node-b", [log4j(i, user="carol") for i in range(5)], extra=b"{broken\n")
    expect(page.locator("#total-events")).to_have_text("15", timeout=15_000)
    expect(page.locator('#topics tr[data-topic="generic"] td.total')).to_have_text("15")
    expect(page.locator('#topics tr[data-topic="generic"] td.rate')).not_to_have_text("0")
    expect(page.locator("#dead-total")).to_have_text("1")
    expect(page.locator("#dead tbody tr")).to_have_count(1)
    expect(page.locator("#dead tbody tr td").nth(1)).to_have_text("invalid-json")
    expect(page.locator("#recent tbody tr")).to_have_count(15)

    # The filter box asks for the matching events only.
    page.fill("#filter", "bob")
    expect(page.locator("#recent tbody tr")).to_have_count(4, timeout=15_000)
    for text in page.locator("#recent tbody tr").all_inner_texts():
        assert "bob" in text
    page.fill("#filter", "")
    expect(page.locator("#recent tbody tr")).to_have_count(15, timeout=15_000)

    # node-a goes quiet: once past stale_after its row stands out, and a banner names it.
    node_a = page.locator('#nodes tr[data-node="node-a"]')
    expect(node_a).to_have_class("stale", timeout=15_000)
    post(c, "node-b", [log4j(100, user="carol")])  # node-b is heard from again
    node_b = page.locator('#nodes tr[data-node="node-b"]')
    expect(node_b).not_to_have_class("stale", timeout=15_000)
    expect(node_a).to_have_class("stale")
    expect(node_a).to_be_visible()
    expect(page.locator("#stale-banner")).to_be_visible()
    expect(page.locator("#stale-banner")).to_contain_text("node-a")
    expect(page.locator("#total-events")).to_have_text("16", timeout=15_000)

    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LOGBRIDGE_UI_SCREENSHOT"):  # how docs/ui.png is made
        shutil.copyfile(shot, os.environ["LOGBRIDGE_UI_SCREENSHOT"])
    assert problems == []
