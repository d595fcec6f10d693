"""The operator page: ``GET /ui`` and the JSON it reads (``/api/stats``, ``/api/recent``).

Off unless the collector's config says ``ui: true``. `access` decides who may look, `api` builds
the JSON, `routes` answers HTTP; the page itself is plain files in ``static/`` (no build step,
nothing fetched from elsewhere).
"""

from .routes import OperatorUi

__all__ = ["OperatorUi"]
