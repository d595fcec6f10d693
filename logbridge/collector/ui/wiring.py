"""``ui: true`` → the operator page on a collector: its stats recorder, API, access and routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import CollectorServerConfig
from ..core import Collector
from ..stats import LiveStats
from .access import UiAccess
from .api import UiApi
from .routes import OperatorUi

if TYPE_CHECKING:
    from ..app import CollectorApp


def operator_ui(config: CollectorServerConfig, collector: Collector, app: CollectorApp) -> OperatorUi:
    """Start recording the live numbers on ``collector`` and build the page's handler."""
    settings = config.ui
    stats = LiveStats(recent_events=settings.recent_events, stale_after=settings.stale_after)
    collector.stats = stats
    access = UiAccess(config.resolved_ui_tokens(), secure_cookie=config.tls is not None)

    def refused(reason: str, address: str, node: str | None, path: str) -> None:
        app.metrics.auth_failures.inc()  # counted and audited as the API's refusals are
        app._audit_auth_failure(reason, address, node, path)

    return OperatorUi(UiApi(collector, stats, refresh=settings.refresh), access, refused)
