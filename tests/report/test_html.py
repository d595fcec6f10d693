"""``--format html`` opened in a real browser: Debian's chromium through Playwright, offline.

The page must load with no console message of level error and no page error, show its three
charts with data, and make no request at all (everything is inline). A screenshot is left in
the test's tmp dir for a human to look at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from _browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _browser_or_skip() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no chromium (apt-get install chromium)")
    return sync_api


def test_the_html_report_opens_offline_without_errors(
    sample_store: Path, tmp_path: Path, run_report: Any
) -> None:
    sync_api = _browser_or_skip()
    page_file = tmp_path / "report.html"
    result = run_report(str(sample_store), "last-activity", "--format", "html", "--output", str(page_file))
    assert result.exit_code == 0, result.output
    html = page_file.read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")

    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            titles = page.locator("svg.chart").evaluate_all(
                "els => els.map(e => e.getAttribute('aria-label'))"
            )
            polylines = page.locator("svg.chart polyline").count()
            bars = page.locator("svg.chart rect").count()
            rows = page.locator("table tbody tr").count()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert requests == [page_file.as_uri()], "the page loaded something besides itself"
    assert titles == [
        "Events per hour per topic",
        "Logins and failures per day",
        "API call time percentiles (ms)",
    ]
    assert polylines == 6 and bars > 3 * 12  # six topics; p50/p95/p99 of 12 endpoints, and the days
    assert rows >= 10  # the last-activity table under the charts
    assert (tmp_path / "report.png").stat().st_size > 10_000
