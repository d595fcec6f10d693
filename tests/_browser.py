"""Debian's chromium as the tests' browser (Playwright drives it; its own browser download cannot
work here), for the operator page and the HTML report (imported by their tests)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
