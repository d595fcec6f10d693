"""PropertyConfigurator's reading of a properties file, as a model of loggers and appenders.

This follows log4j 1.2.17's ``PropertyConfigurator.doConfigure`` step by step, including the parts
that differ from what one would guess (each was checked against log4j itself, see
``tests/log4j``):

- ``${key}``: Java system properties (here: the caller's variables, then a few JVM defaults) first,
  then the file's own keys, recursively; an undefined key is the empty string.
- A level token is compared with ``INHERITED``/``NULL`` *before* trimming but converted *after*,
  so ``INHERITED , A`` means DEBUG; an unknown name means DEBUG too.
- Appender names are trimmed but not skipped when blank: ``INFO, A, ,B`` looks up an appender
  named ``""``.
- ``log4j.additivity.X`` is read only for loggers that have a ``log4j.logger.X`` entry.
- Option names go through ``Introspector.decapitalize``: only the first letter's case is forgiven
  (``MaxFileSize`` and ``maxFileSize`` work, ``maxfilesize`` and ``MAXFILESIZE`` do not).
- String options keep their whitespace, numbers and booleans are trimmed; a bad ``MaxFileSize``
  falls back to 10 MB + 1 byte; a filter's class is neither trimmed nor ``${}``-substituted.
- Only appenders reachable from a logger are instantiated (an unreferenced appender creates no
  file).

Every message log4j prints is kept, verbatim, as a `Diagnostic` with the line it concerns;
what logbridge cannot reproduce in Python is added as ``kind="python"``.
"""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Literal

from . import classes
from .levels import ALL, LEVELS, level_from_name
from .properties import Properties

ROOT = "root"
_JAVA_CLASS_NAME = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


@dataclass(frozen=True)
class Diagnostic:
    """One message: ``kind="log4j"`` is printed by log4j itself (``message`` is its exact text);
    ``kind="python"`` is logbridge's note on what Python does differently."""

    message: str
    line: int | None = None
    kind: Literal["log4j", "python"] = "log4j"

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}: " if self.line is not None else f"{source}: "
        return where + self.message


@dataclass
class ComponentSpec:
    """A layout or a filter: its class and its options, keyed by bean property name."""

    cls: str
    options: dict[str, str] = field(default_factory=dict)
    line: int | None = None


@dataclass
class AppenderSpec:
    name: str
    cls: str
    line: int | None
    options: dict[str, str] = field(default_factory=dict)  # bean property → substituted value
    layout: ComponentSpec | None = None
    filters: list[ComponentSpec] = field(default_factory=list)
    threshold: int | None = None
    # log4j's appender accepted the configuration but will refuse every event with this error.
    broken: str | None = None
    # ``log4j.appender.NAME.logbridge.Option`` → value (bean-style name): logbridge's own options,
    # which log4j skips (a dot after the appender's prefix), e.g. the retention guard's.
    logbridge: dict[str, str] = field(default_factory=dict)


@dataclass
class LoggerSpec:
    name: str
    level: int | None  # None: inherited
    additivity: bool = True
    appenders: list[str] = field(default_factory=list)
    line: int | None = None


@dataclass
class Model:
    source: str
    threshold: int = ALL
    root: LoggerSpec = field(default_factory=lambda: LoggerSpec(ROOT, LEVELS["DEBUG"]))
    loggers: dict[str, LoggerSpec] = field(default_factory=dict)
    appenders: dict[str, AppenderSpec] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    debug: bool = False

    def log4j_messages(self) -> list[str]:
        return [d.message for d in self.diagnostics if d.kind == "log4j"]


def jvm_defaults() -> dict[str, str]:
    """The Java system properties that configurations commonly refer to, as a JVM here would
    set them (``${user.home}/logs``, ``${java.io.tmpdir}``)."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment: Java would print "?"
        user = "?"
    return {
        "user.home": os.path.expanduser("~"),
        "user.dir": os.getcwd(),
        "user.name": user,
        "java.io.tmpdir": tempfile.gettempdir(),
        "file.separator": os.sep,
        "path.separator": os.pathsep,
        "line.separator": "\n",
    }


def decapitalize(name: str) -> str:
    """java.beans.Introspector.decapitalize."""
    if not name:
        return name
    if len(name) > 1 and name[0].isupper() and name[1].isupper():
        return name
    return name[0].lower() + name[1:]


class _Reader:
    def __init__(self, props: Properties, variables: dict[str, str]):
        self.props = props
        self.variables = {**jvm_defaults(), **variables}
        self.model = Model(source=props.source)
        self.registry: dict[str, AppenderSpec] = {}
        self.referenced: set[str] = set()  # appender names some logger lists

    # -- messages -------------------------------------------------------------------------
    def warn(self, msg: str, key: str | None = None) -> None:
        self._add("log4j:WARN " + msg, key, "log4j")

    def error(self, msg: str, key: str | None = None) -> None:
        self._add("log4j:ERROR " + msg, key, "log4j")

    def note(self, msg: str, key: str | None = None) -> None:
        self._add(msg, key, "python")

    def _add(self, msg: str, key: str | None, kind: Literal["log4j", "python"]) -> None:
        line = self.props.line(key) if key is not None else None
        self.model.diagnostics.append(Diagnostic(msg, line, kind))

    # -- OptionConverter ---------------------------------------------------------------------
    def find_and_subst(self, key: str) -> str | None:
        value = self.props.get(key)
        if value is None:
            return None
        try:
            return self.subst(value, key, ())
        except ValueError:
            self.error(f"Bad option value [{value}].", key)
            return value

    def subst(self, val: str, key: str, active: tuple[str, ...]) -> str:
        out: list[str] = []
        i = 0
        while True:
            j = val.find("${", i)
            if j == -1:
                out.append(val[i:])
                return "".join(out)
            out.append(val[i:j])
            k = val.find("}", j)
            if k == -1:
                raise ValueError(f'"{val}" has no closing brace. Opening brace at position {j}.')
            name = val[j + 2 : k]
            replacement = self.variables.get(name)
            if replacement is None:
                replacement = self.props.get(name)
            if replacement is not None:
                if name in active:
                    # log4j recurses until StackOverflowError kills the configuration (and the
                    # application's startup); logbridge reads the looping reference as empty.
                    self.note(
                        "${} substitution loops (" + " -> ".join((*active, name)) + "): log4j dies "
                        "with StackOverflowError; logbridge substitutes an empty string",
                        key,
                    )
                else:
                    out.append(self.subst(replacement, key, (*active, name)))
            i = k + 1

    def to_level(self, value: str | None, default: int | None, key: str | None) -> int | None:
        """OptionConverter.toLevel: trimmed; ``NULL`` → None; ``NAME#class`` custom levels."""
        if value is None:
            return default
        value = value.strip()
        if "#" in value:
            name, clazz = value.split("#", 1)
            if clazz != "org.apache.log4j.Level":
                self.warn(f"custom level class [{clazz}] not found.", key)
                self.note(f"custom level class {clazz} has no Python equivalent", key)
                return default
            value = name
        if value.upper() == "NULL":
            return None
        level = level_from_name(value)
        return default if level is None else level

    # -- doConfigure -------------------------------------------------------------------------
    def run(self) -> Model:
        props, m = self.props, self.model
        debug = props.get("log4j.debug")
        if debug is None:
            debug = props.get("log4j.configDebug")
            if debug is not None:
                self.warn(
                    "[log4j.configDebug] is deprecated. Use [log4j.debug] instead.", "log4j.configDebug"
                )
        if debug is not None:
            m.debug = _to_boolean(debug, True)
        threshold = self.find_and_subst("log4j.threshold")
        if threshold is not None:
            lvl = self.to_level(threshold, ALL, "log4j.threshold")
            m.threshold = lvl if lvl is not None else ALL
        self._root()
        self._loggers()
        for key in props.names():
            if key.startswith(("log4j.renderer.", "log4j.throwableRenderer", "log4j.loggerFactory")) or (
                key == "log4j.reset"
                or (key.startswith("log4j.appender.") and ".errorhandler" in key and key.count(".") >= 3)
            ):
                self.note(f"{key} has no Python equivalent and is ignored", key)
            elif key.startswith("log4j.additivity."):
                name = key[len("log4j.additivity.") :]
                if "log4j.logger." + name not in props and "log4j.category." + name not in props:
                    self.note(
                        f"log4j ignores {key} because there is no log4j.logger.{name} entry; "
                        f"add 'log4j.logger.{name}=' to make it count",
                        key,
                    )
        for key in props.names():
            if key.startswith("log4j.appender.") and key.count(".") == 2:
                name = key[len("log4j.appender.") :]
                if name not in self.referenced:
                    self.note(
                        f"appender {name} is defined but no logger uses it: log4j never creates it", key
                    )
        m.appenders = dict(self.registry)
        return m

    def _root(self) -> None:
        key = "log4j.rootLogger"
        value = self.find_and_subst(key)
        if value is None:
            key = "log4j.rootCategory"
            value = self.find_and_subst(key)
        elif "log4j.rootCategory" in self.props:
            self.note("log4j.rootCategory is ignored because log4j.rootLogger is set", "log4j.rootCategory")
        if value is not None:
            self.model.root.line = self.props.line(key)
            self._parse_category(self.model.root, key, value)

    def _loggers(self) -> None:
        seen: dict[str, str] = {}
        for key in self.props.names():
            if key.startswith("log4j.category."):
                name = key[len("log4j.category.") :]
            elif key.startswith("log4j.logger."):
                name = key[len("log4j.logger.") :]
            else:
                continue
            if name in seen:
                # log4j applies both in Hashtable order; logbridge lets log4j.logger.* win.
                self.note(
                    f"{key} and {seen[name]} both configure logger {name}; log4j applies them in "
                    "hash order, logbridge uses log4j.logger.*",
                    key,
                )
                if key.startswith("log4j.category."):
                    continue
            seen[name] = key
            if name == "":
                self.note("a logger named '' is Python's root logger", key)
            value = self.find_and_subst(key) or ""
            spec = LoggerSpec(name, None, line=self.props.line(key))
            self.model.loggers[name] = spec
            self._parse_category(spec, key, value)
            add = self.find_and_subst("log4j.additivity." + name)
            if add:
                spec.additivity = _to_boolean(add, True)

    def _parse_category(self, spec: LoggerSpec, key: str, value: str) -> None:
        # StringTokenizer(value, ","): empty tokens between adjacent commas vanish.
        tokens = [t for t in value.split(",") if t != ""]
        if not (value.startswith(",") or value == ""):
            if not tokens:
                return
            level_str = tokens.pop(0)
            if level_str.upper() in ("INHERITED", "NULL"):
                if spec.name == ROOT:
                    self.warn("The root logger cannot be set to null.", key)
                else:
                    spec.level = None
            else:
                lvl = self.to_level(level_str, LEVELS["DEBUG"], key)
                if lvl is None and spec.name == ROOT:
                    self.error("You have tried to set a null level to root.", key)
                else:
                    spec.level = lvl
        spec.appenders = []
        for token in tokens:
            name = token.strip()
            self.referenced.add(name)
            appender = self._parse_appender(name, key)
            if appender is not None:
                spec.appenders.append(name)

    # -- appenders ---------------------------------------------------------------------------
    def _instantiate(
        self, key: str, kind: str, known: dict[str, dict[str, str]], others: set[str], ref_key: str
    ) -> str | None:
        value = self.find_and_subst(key)
        if value is None:
            self.error(f"Could not find value for key {key}", ref_key)
            return None
        cls = value.strip()
        if cls in known or cls in others:
            return cls
        if cls.startswith("org.apache.log4j.") or not _JAVA_CLASS_NAME.match(cls):
            # Not in log4j-1.2.17.jar (or not a class name at all): log4j cannot load it either.
            self.error(f"Could not instantiate class [{cls}].", key)
            return None
        # A class of the application's own (on its classpath, not ours).
        self.note(f"{kind} class {cls} has no Python equivalent", key)
        return cls

    def _parse_appender(self, name: str, ref_key: str) -> AppenderSpec | None:
        if name in self.registry:
            return self.registry[name]
        prefix = "log4j.appender." + name
        cls = self._instantiate(prefix, "appender", classes.APPENDERS, classes.OTHER_LOG4J_APPENDERS, ref_key)
        if cls is None:
            self.error(f'Could not instantiate appender named "{name}".', ref_key)
            return None
        spec = AppenderSpec(name, cls, self.props.line(prefix))
        bean = classes.APPENDERS.get(cls)
        if cls not in classes.NO_LAYOUT:
            layout_key = prefix + ".layout"
            lcls = self._instantiate(
                layout_key, "layout", classes.LAYOUTS, classes.OTHER_LOG4J_LAYOUTS, prefix
            )
            if lcls is not None:
                spec.layout = ComponentSpec(lcls, line=self.props.line(layout_key))
                spec.layout.options = self._set_properties(
                    layout_key + ".", classes.LAYOUTS.get(lcls), lcls, is_appender=False
                )
                if lcls in ("org.apache.log4j.PatternLayout", "org.apache.log4j.EnhancedPatternLayout"):
                    from .enhanced import EnhancedPatternLayoutFormatter
                    from .pattern import PatternLayoutFormatter

                    layout = (
                        EnhancedPatternLayoutFormatter
                        if lcls == "org.apache.log4j.EnhancedPatternLayout"
                        else PatternLayoutFormatter
                    )
                    pattern = spec.layout.options.get("conversionPattern", "%m%n")
                    for msg in layout(pattern).errors:
                        self._add(msg, layout_key + ".ConversionPattern", "log4j")
                if lcls == "org.apache.log4j.TTCCLayout" and "dateFormat" in spec.layout.options:
                    from .dateformat import NAMED_FORMATS, DateFormatError, compile_pattern

                    fmt = spec.layout.options["dateFormat"]
                    if fmt.upper() not in ("NULL", "RELATIVE", *NAMED_FORMATS):
                        try:
                            compile_pattern(fmt)
                        except DateFormatError as exc:
                            self.note(
                                f"TTCCLayout DateFormat {fmt!r}: {exc}; log4j throws this out of "
                                "PropertyConfigurator (the rest of the file is not read); logbridge "
                                "prints no date",
                                layout_key + ".DateFormat",
                            )
                if lcls in classes.OTHER_LOG4J_LAYOUTS:
                    self.note(
                        f"layout {lcls} has no Python equivalent; PatternLayout %m%n is used", layout_key
                    )
            elif cls == "org.apache.log4j.net.SyslogAppender":
                spec.broken = f'No layout set for SyslogAppender named "{name}".'
            else:
                spec.broken = f"No layout set for the appender named [{name}]."
        spec.options = self._set_properties(prefix + ".", bean, cls, is_appender=True)
        spec.logbridge = self._logbridge_options(prefix + ".logbridge.", cls)
        if "threshold" in spec.options:
            spec.threshold = self.to_level(spec.options["threshold"], LEVELS["DEBUG"], None)
        self._activate(spec)
        self._filters(spec)
        if cls in classes.OTHER_LOG4J_APPENDERS:
            self.note(
                f"appender {name}: {cls} has no Python equivalent; its events go to stderr "
                "through its layout instead (none is lost)",
                prefix,
            )
        self.registry[name] = spec
        return spec

    def _logbridge_options(self, prefix: str, cls: str) -> dict[str, str]:
        """The ``prefix`` + option keys (no further dot) that logbridge reads and log4j skips;
        an option it does not know is noted (with the ones it knows)."""
        from .retention import PROPERTY_KEYS, RETAINING_APPENDERS

        out: dict[str, str] = {}
        for key in self.props.names():
            if not key.startswith(prefix) or "." in key[len(prefix) :]:
                continue
            value = self.find_and_subst(key)
            prop = decapitalize(key[len(prefix) :])
            if cls not in RETAINING_APPENDERS:
                self.note(f"{key}: {cls} takes no logbridge options; ignored", key)
            elif prop not in PROPERTY_KEYS:
                known = ", ".join(k[0].upper() + k[1:] for k in PROPERTY_KEYS)
                self.note(f"{key}: unknown logbridge option (known: {known}); ignored", key)
            elif value is not None:
                out[prop] = value
        return out

    def _set_properties(
        self, prefix: str, bean: dict[str, str] | None, cls: str, *, is_appender: bool
    ) -> dict[str, str]:
        """PropertySetter.setProperties: returns bean property → value for accepted options."""
        out: dict[str, str] = {}
        n = len(prefix)
        for key in self.props.names():
            if not key.startswith(prefix) or key.find(".", n + 1) > 0:
                continue
            value = self.find_and_subst(key)
            opt = key[n:]
            if is_appender and opt in ("layout", "errorhandler"):
                continue
            if value is None:
                continue
            prop = decapitalize(opt)
            if bean is None:
                out[prop] = value  # a class we do not model: accept everything
                continue
            ptype = bean.get(prop)
            if ptype is None and prop != "class":
                self.warn(f"No such property [{prop}] in {cls}.", key)
                continue
            if prop in classes.READ_ONLY or ptype in (None, classes.OTHER):
                if prop == "errorHandler":
                    continue  # noted with the other ignored keys
                self.warn(f'Failed to set property [{prop}] to value "{value}". ', key)
                continue
            converted = self._converted(prop, value, ptype, key)
            if converted is not None:
                out[prop] = converted
        return out

    def _converted(self, prop: str, value: str, ptype: str, key: str) -> str | None:
        """PropertySetter.setProperty's conversion: the value, or None after log4j's warning."""
        converted = self._convert(value, ptype)
        if converted is None:
            self.warn(f'Failed to set property [{prop}] to value "{value}". ', key)
        return converted

    def _convert(self, value: str, ptype: str) -> str | None:
        v = value.strip()
        if ptype == classes.STRING:
            return value
        if ptype in (classes.INT, classes.LONG):
            limit = 2**31 if ptype == classes.INT else 2**63
            try:
                n = _java_int(v)
            except ValueError:
                return None
            return str(n) if -limit <= n < limit else None
        if ptype == classes.BOOLEAN:
            return v.lower() if v.lower() in ("true", "false") else None
        if ptype == classes.PRIORITY:
            lvl = self.to_level(v, LEVELS["DEBUG"], None)
            return None if lvl is None else v
        return None

    def _activate(self, spec: AppenderSpec) -> None:
        """The messages each appender's activateOptions() prints, and its state after it."""
        o, name, key = spec.options, spec.name, "log4j.appender." + spec.name
        if spec.cls == "org.apache.log4j.ConsoleAppender" and "target" in o:
            v = o["target"].strip()
            if v.lower() in ("system.out", "system.err"):
                o["target"] = "System.out" if v.lower() == "system.out" else "System.err"
            else:
                self.warn(f"[{o['target']}] should be System.out or System.err.", key + ".Target")
                self.warn("Using previously set target, System.out by default.", key + ".Target")
                del o["target"]
        if spec.cls in (
            "org.apache.log4j.FileAppender",
            "org.apache.log4j.RollingFileAppender",
            "org.apache.log4j.DailyRollingFileAppender",
        ):
            if "file" in o:
                o["file"] = o["file"].strip()  # FileAppender.setFile trims
            if "file" not in o:
                self.warn(f"File option not set for appender [{name}].", key)
                self.warn("Are you using FileAppender instead of ConsoleAppender?", key)
                spec.broken = spec.broken or f"No output stream or file set for the appender named [{name}]."
            if spec.cls == "org.apache.log4j.RollingFileAppender" and "maxFileSize" in o:
                o["maximumFileSize"] = str(self._file_size(o.pop("maxFileSize"), key))
            if spec.cls == "org.apache.log4j.DailyRollingFileAppender":
                from .dateformat import DateFormatError, SimpleDateFormat, periodicity

                pattern = o.get("datePattern", classes.DEFAULT_DATE_PATTERN)
                if "file" not in o:
                    self.error(f"Either File or DatePattern options are not set for appender [{name}].", key)
                else:
                    try:
                        if periodicity(SimpleDateFormat(pattern)) is None:
                            self.warn(f"Unknown periodicity for appender [{name}].", key)
                    except DateFormatError as exc:
                        self.note(f"DatePattern {pattern!r}: {exc}", key)
        enc = o.get("encoding")  # WriterAppender.createWriter: files and the console alike
        if enc is not None:
            from .charsets import python_codec

            if python_codec(enc) is None:
                self.warn("Error initializing output writer.", key + ".Encoding")
                self.warn("Unsupported encoding?", key + ".Encoding")
                del o["encoding"]

    def _file_size(self, value: str, key: str) -> int:
        """OptionConverter.toFileSize(value, maxFileSize + 1): KB/MB/GB only, else the default."""
        s = value.strip().upper()
        mult = 1
        for suffix, m in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3)):
            idx = s.find(suffix)
            if idx != -1:
                mult, s = m, s[:idx]
                break
        try:
            return _java_int(s) * mult
        except ValueError:
            self.error(f"[{s}] is not in proper int form.", key + ".MaxFileSize")
            self.error(f"[{value}] not in expected format.", key + ".MaxFileSize")
            return classes.DEFAULT_MAX_FILE_SIZE + 1

    def _filters(self, spec: AppenderSpec) -> None:
        prefix = f"log4j.appender.{spec.name}.filter."
        n = len(prefix)
        groups: dict[str, list[tuple[str, str | None, str]]] = {}
        for key in self.props.names():
            if not key.startswith(prefix):
                continue
            dot = key.find(".", n)
            fkey = key if dot == -1 else key[:dot]
            opts = groups.setdefault(fkey, [])
            if dot != -1:
                opts.append((key[dot + 1 :], self.find_and_subst(key), key))
        for fkey in sorted(groups):
            clazz = self.props.get(fkey)  # neither trimmed nor substituted, as log4j does
            if clazz is None:
                self.warn(f"Missing class definition for filter: [{fkey}]", groups[fkey][0][2])
                continue
            if clazz not in classes.FILTERS:
                if clazz.startswith("org.apache.log4j.") or not _JAVA_CLASS_NAME.match(clazz):
                    self.error(f"Could not instantiate class [{clazz}].", fkey)
                else:
                    self.note(f"filter class {clazz} has no Python equivalent; it is left out", fkey)
                continue
            bean = classes.FILTERS[clazz]
            f = ComponentSpec(clazz, line=self.props.line(fkey))
            for opt, value, okey in groups[fkey]:
                if value is None:
                    continue
                prop = decapitalize(opt)
                ptype = bean.get(prop)
                if ptype is None:
                    self.warn(f"No such property [{prop}] in {clazz}.", okey)
                    continue
                converted = self._converted(prop, value, ptype, okey)
                if converted is not None:
                    f.options[prop] = converted
            spec.filters.append(f)


def _to_boolean(value: str, default: bool) -> bool:
    v = value.strip().lower()
    if v == "true":
        return True
    if v == "false":
        return False
    return default


def _java_int(s: str) -> int:
    """Long.valueOf / Integer.valueOf: optional sign, ASCII digits, nothing else."""
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(s)
    return int(s)


def read_model(props: Properties, variables: dict[str, str] | None = None) -> Model:
    """Configure a model from properties as PropertyConfigurator.doConfigure would."""
    return _Reader(props, dict(variables or {})).run()
