"""A log4j `Model` → a `logging.config.dictConfig` dict.

Handler ids are the appender names (formatters and filters use the same names, in their own
namespaces). Only appenders that some logger uses are defined, because log4j only instantiates
those: an unused FileAppender must not create its file. ``log4j.threshold`` becomes a level on
every handler, which lets exactly the same events through as log4j's repository-wide check.
"""

from __future__ import annotations

from typing import Any

from . import classes
from .levels import ALL, LEVELS, OFF, dict_level
from .model import AppenderSpec, ComponentSpec, LoggerSpec, Model
from .retention import settings_from_properties

_H = "logbridge.log4j.appenders."
FILE_CLASSES = {
    "org.apache.log4j.FileAppender": _H + "FileAppenderHandler",
    "org.apache.log4j.RollingFileAppender": _H + "RollingFileAppenderHandler",
    "org.apache.log4j.DailyRollingFileAppender": _H + "DailyRollingFileAppenderHandler",
}


def _bool(v: str | None, default: bool) -> bool:
    if v is None:
        return default
    return v.strip().lower() == "true" if v.strip().lower() in ("true", "false") else default


def _level_opt(v: str | None) -> int | None:
    if v is None:
        return None
    return LEVELS.get(v.strip().upper(), LEVELS["DEBUG"])


def formatter_config(layout: ComponentSpec | None) -> dict[str, Any]:
    if layout is None:
        return {"()": "logbridge.log4j.pattern.PatternLayoutFormatter", "pattern": "%m%n"}
    o = layout.options
    if layout.cls == "org.apache.log4j.PatternLayout":
        return {
            "()": "logbridge.log4j.pattern.PatternLayoutFormatter",
            "pattern": o.get("conversionPattern", "%m%n"),
        }
    if layout.cls == "org.apache.log4j.EnhancedPatternLayout":
        return {
            "()": "logbridge.log4j.enhanced.EnhancedPatternLayoutFormatter",
            "pattern": o.get("conversionPattern", "%m%n"),
        }
    if layout.cls == "org.apache.log4j.SimpleLayout":
        return {"()": "logbridge.log4j.layouts.SimpleLayoutFormatter"}
    if layout.cls == "org.apache.log4j.TTCCLayout":
        return {
            "()": "logbridge.log4j.layouts.TTCCLayoutFormatter",
            "date_format": o.get("dateFormat"),
            "time_zone": o.get("timeZone"),
            "thread_printing": _bool(o.get("threadPrinting"), True),
            "category_prefixing": _bool(o.get("categoryPrefixing"), True),
            "context_printing": _bool(o.get("contextPrinting"), True),
        }
    if layout.cls == "org.apache.log4j.xml.XMLLayout":
        return {
            "()": "logbridge.log4j.xmllayout.XMLLayoutFormatter",
            "location_info": _bool(o.get("locationInfo"), False),
            "properties": _bool(o.get("properties"), False),
        }
    if layout.cls == "org.apache.log4j.HTMLLayout":
        return {
            "()": "logbridge.log4j.htmllayout.HTMLLayoutFormatter",
            "title": o.get("title", "Log4J Log Messages"),
            "location_info": _bool(o.get("locationInfo"), False),
        }
    if layout.cls == classes.JSON_AUDIT_LAYOUT:
        return {"()": "logbridge.log4j.jsonaudit.JSONAuditFormatter"}
    # An application's own layout: the message, one per line.
    return {"()": "logbridge.log4j.pattern.PatternLayoutFormatter", "pattern": "%m%n"}


def filter_config(filters: list[ComponentSpec]) -> dict[str, Any]:
    chain: list[dict[str, Any]] = []
    for f in filters:
        o = f.options
        kind = f.cls.rsplit(".", 1)[-1]
        spec: dict[str, Any] = {"type": kind}
        if kind == "LevelRangeFilter":
            spec["level_min"] = _level_opt(o.get("levelMin"))
            spec["level_max"] = _level_opt(o.get("levelMax"))
            spec["accept_on_match"] = _bool(o.get("acceptOnMatch"), False)
        elif kind == "LevelMatchFilter":
            # setLevelToMatch(String) → OptionConverter.toLevel(value, null): unknown → no match
            v = o.get("levelToMatch")
            spec["level_to_match"] = None if v is None else LEVELS.get(v.strip().upper())
            spec["accept_on_match"] = _bool(o.get("acceptOnMatch"), True)
        elif kind == "StringMatchFilter":
            spec["string_to_match"] = o.get("stringToMatch")
            spec["accept_on_match"] = _bool(o.get("acceptOnMatch"), True)
        chain.append(spec)
    return {"()": "logbridge.log4j.filters.FilterChain", "filters": chain}


def handler_config(a: AppenderSpec, threshold: int) -> dict[str, Any]:
    o = a.options
    h: dict[str, Any]
    if a.cls == "org.apache.log4j.ConsoleAppender":
        h = {
            "class": _H + "ConsoleAppenderHandler",
            "target": o.get("target", "System.out"),
            "follow": _bool(o.get("follow"), False),
            "immediate_flush": _bool(o.get("immediateFlush"), True),
        }
        if "encoding" in o:
            h["encoding"] = o["encoding"]
    elif a.cls in FILE_CLASSES:
        h = {"class": FILE_CLASSES[a.cls], "filename": o.get("file", "")}
        h["append"] = _bool(o.get("append"), True)
        h["encoding"] = o.get("encoding", "utf-8")
        if _bool(o.get("bufferedIO"), False):
            h["buffered_io"] = True
            h["buffer_size"] = int(o.get("bufferSize", classes.DEFAULT_BUFFER_SIZE))
        if not _bool(o.get("immediateFlush"), True):
            h["immediate_flush"] = False
        if a.cls == "org.apache.log4j.RollingFileAppender":
            h["max_file_size"] = int(o.get("maximumFileSize", classes.DEFAULT_MAX_FILE_SIZE))
            h["max_backup_index"] = int(o.get("maxBackupIndex", classes.DEFAULT_MAX_BACKUP_INDEX))
        elif a.cls == "org.apache.log4j.DailyRollingFileAppender":
            h["date_pattern"] = o.get("datePattern", classes.DEFAULT_DATE_PATTERN)
        retention = settings_from_properties(a.logbridge, f"log4j.appender.{a.name}.logbridge")
        if retention is not None:
            h["retention"] = retention.as_config()
    elif a.cls == "org.apache.log4j.varia.NullAppender":
        h = {"class": "logging.NullHandler"}
    elif a.cls == "org.apache.log4j.AsyncAppender":
        # PropertyConfigurator cannot attach appenders to an AsyncAppender (only the XML
        # configurator can), so it receives events and passes them to nobody.
        h = {
            "()": _H + "AsyncAppenderHandler",
            "appenders": [],
            "buffer_size": int(o.get("bufferSize", "128")),
            "blocking": _bool(o.get("blocking"), True),
        }
    elif a.cls == "org.apache.log4j.net.SyslogAppender":
        h = {
            "class": _H + "SyslogAppenderHandler",
            "syslog_host": o.get("syslogHost", "localhost"),
            "facility": o.get("facility", "USER"),
            "facility_printing": _bool(o.get("facilityPrinting"), False),
            "header": _bool(o.get("header"), False),
        }
    else:
        # No Python equivalent: the events go to stderr through the appender's layout, so
        # that none is lost (documented in docs/log4j-compatibility.md).
        h = {"class": _H + "ConsoleAppenderHandler", "target": "System.err"}
    if a.broken is not None and "()" not in h and h["class"].startswith(_H):
        h["broken"] = a.broken
    if a.cls not in classes.NO_LAYOUT:
        h["formatter"] = a.name
    level = max(a.threshold if a.threshold is not None else ALL, threshold)
    if level > ALL:
        h["level"] = dict_level(level)
    if a.filters:
        h["filters"] = [a.name]
    return h


def _logger_config(spec: LoggerSpec, model: Model, is_root: bool) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    if spec.level is not None:
        cfg["level"] = dict_level(spec.level)
    elif not is_root:
        cfg["level"] = "NOTSET"
    if not is_root:
        cfg["propagate"] = spec.additivity
    cfg["handlers"] = [n for n in spec.appenders if n in model.appenders]
    return cfg


def to_dict_config(model: Model) -> dict[str, Any]:
    """The dictConfig dict for a model; `logging.config.dictConfig` accepts it as is."""
    used = [n for n in model.appenders]
    formatters = {
        n: formatter_config(model.appenders[n].layout)
        for n in used
        if model.appenders[n].cls not in classes.NO_LAYOUT
    }
    filters = {n: filter_config(model.appenders[n].filters) for n in used if model.appenders[n].filters}
    threshold = model.threshold
    handlers = {n: handler_config(model.appenders[n], threshold) for n in used}
    if threshold >= OFF:
        for h in handlers.values():
            h["level"] = OFF
    cfg: dict[str, Any] = {
        "version": 1,
        # log4j leaves loggers it is not told about alone.
        "disable_existing_loggers": False,
    }
    if formatters:
        cfg["formatters"] = formatters
    if filters:
        cfg["filters"] = filters
    cfg["handlers"] = handlers
    cfg["loggers"] = {
        name: _logger_config(spec, model, False) for name, spec in model.loggers.items() if name
    }
    cfg["root"] = _logger_config(model.root, model, True)
    return cfg
