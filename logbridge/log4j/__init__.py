"""log4j 1.x compatibility: a ``log4j.properties`` file drives Python logging as log4j 1.2 would.

Pipeline: `properties` (java.util.Properties lexer) → `model` (PropertyConfigurator's semantics
and messages) → `translate` (a `logging.config.dictConfig` dict whose handler ids are the
appender names) → the handlers, layouts and filters of this package.

    import logbridge
    logbridge.configure("conf/dku-log4j.properties", dip_home="/data/dss")
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Log4jConfigError
from . import levels as levels
from .enhanced import EnhancedPatternLayoutFormatter
from .model import Diagnostic, Model, read_model
from .pattern import PatternLayoutFormatter
from .properties import load_properties, parse_properties
from .translate import to_dict_config

__all__ = [
    "Diagnostic",
    "Log4jCompatibilityWarning",
    "EnhancedPatternLayoutFormatter",
    "Model",
    "PatternLayoutFormatter",
    "configure",
    "load_model",
    "parse_properties",
    "translate_file",
]


def load_model(path: str | os.PathLike[str], **variables: str) -> Model:
    """Read a properties file as log4j's PropertyConfigurator would (no side effects)."""
    return read_model(load_properties(path), variables)


def translate_file(path: str | os.PathLike[str], **variables: str) -> tuple[dict[str, Any], Model]:
    model = load_model(path, **variables)
    try:
        return to_dict_config(model), model
    except ConfigError as exc:  # a bad logbridge option (``log4j.appender.X.logbridge.*``)
        raise ConfigError(f"{os.fspath(path)}: {exc}", source=os.fspath(path)) from exc


class _NoAppenderWarning(logging.Handler):
    """Python's last-resort handler, made to say what log4j says when an event finds no
    appender (once per process) instead of printing the event."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.warned = False

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.warned:
            self.warned = True
            sys.stderr.write(
                f"log4j:WARN No appenders could be found for logger ({record.name}).\n"
                "log4j:WARN Please initialize the log4j system properly.\n"
                "log4j:WARN See http://logging.apache.org/log4j/1.2/faq.html#noconfig for more info.\n"
            )
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does it
        pass


class Log4jCompatibilityWarning(UserWarning):
    """Something in a log4j file that Python logging does differently (see
    docs/log4j-compatibility.md); the message names the file and line."""


def _print_log4j_messages(model: Model) -> None:
    # log4j prints its configuration warnings on stderr (LogLog); so does configure(), verbatim.
    for d in model.diagnostics:
        if d.kind == "log4j":
            sys.stderr.write(d.message + "\n")
        else:
            warnings.warn(d.render(model.source), Log4jCompatibilityWarning, stacklevel=3)


def configure(config: Any, **variables: str) -> Model | None:
    """Configure Python logging from a log4j ``.properties`` file, a ``.yaml``/``.json`` dictConfig
    file, or a dictConfig dict.

    ``variables`` play the part of Java system properties in ``${key}`` substitutions
    (``configure("log4j.properties", dip_home="/data/dss")``). For a properties file, log4j's own
    warnings are printed on stderr as log4j prints them, and the `Model` is returned.
    """
    if isinstance(config, dict):
        logging.config.dictConfig(config)
        return None
    path = Path(os.fspath(config))
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read logging config: {exc.strerror}", source=str(path)
            ) from exc
        try:
            if suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except (ValueError, Exception) as exc:
            raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}", source=str(path)) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a dictConfig mapping at the top level", source=str(path))
        try:
            logging.config.dictConfig(data)
        except (ValueError, TypeError, AttributeError, ImportError) as exc:
            raise ConfigError(
                f"{path}: logging.config.dictConfig rejected it: {exc}", source=str(path)
            ) from exc
        return None
    try:
        dict_config, model = translate_file(path, **variables)
    except Log4jConfigError as exc:
        raise ConfigError(str(exc), source=str(path)) from exc
    _print_log4j_messages(model)
    logging.config.dictConfig(dict_config)
    logging.lastResort = _NoAppenderWarning()
    return model
