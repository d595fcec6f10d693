"""Old name of `logbridge.log4j.appenders`, kept so that dictConfig files written by an earlier
``logbridge log4j convert`` (``class: logbridge.log4j.handlers.RollingFileAppenderHandler``)
still load. New code and new translations use `logbridge.log4j.appenders`."""

from __future__ import annotations

from .appenders import *  # noqa: F403
from .appenders import __all__  # noqa: F401
