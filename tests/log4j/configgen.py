"""Whole log4j 1.2 properties files, generated: loggers, levels, additivity, thresholds, appenders
of every class logbridge translates with options valid, misspelt or out of range, filters and
layouts. `test_generated_configs.py` runs each through real log4j and through logbridge.

Features left out on purpose, each for a reason named here (README lists the differences):
- HTMLLayout: its header prints the session's start time (the wall clock), never the same in two
  runs; test_layouts_reference.py compares it with the time pinned.
- ConsoleAppender ``Encoding``: the reference harness reads the console as UTF-8;
  test_console_encoding.py covers the other charsets.
- ConsoleAppender ``ImmediateFlush=false``: log4j loses the last lines at shutdown (a log4j bug).
- DailyRollingFileAppender ``DatePattern`` without a period or illegal, TTCCLayout ``DateFormat``
  illegal or ``RELATIVE``: log4j throws out of the configurator or at every event, or counts
  from its own start; logbridge deliberately differs.
- Application classes that are not on the harness's classpath: log4j cannot load them there.
- TTCCLayout ``TimeZone`` with a named ``DateFormat`` (ISO8601, ABSOLUTE, DATE): log4j's
  formatters for those share a static cache across layouts and zones (README).
- SyslogAppender ``Header=true``: the host name in it comes from another API in each.
"""

from __future__ import annotations

import random

from logbridge.log4j.properties import escape_value

LOGGER_NAMES = ["a", "a.b", "a.b.c", "x", "x.y", "com.example.Service", "org.apache.hadoop.fs"]
LEVELS = [
    "DEBUG", "info", " WARN ", "ERROR", "FATAL", "TRACE", "ALL", "OFF", "bogus", "INFO#org.apache.log4j.Level",
    "warn#com.example.NoSuchLevel", "",
]  # fmt: skip
GOOD_LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "TRACE"]
BOOLEANS = ["true", "false", "TRUE", " false ", "yes", ""]
PATTERN_TOKENS = [
    "%m", "%n", "%p", "%-5p", "%c", "%c{1}", "%C", "%d", "%d{ISO8601}", "%d{HH:mm:ss,SSS}", "%d{ABSOLUTE}",
    "%t", "%x", "%X{user}", "%X", "%r", "%L", "%M", "%F", "%l", "%%", " ", " - ", "[", "]", "%.3c",
    "%20c", "%-10t", "%q", "%5", "é", "%d{yyyy qq}", "%c{x}",
]  # fmt: skip
ENHANCED_TOKENS = PATTERN_TOKENS + [
    "%level", "%logger{1.}", "%c{-1}", "%throwable{1}", "%sn", "%d{ISO8601}{UTC}", "%d{HH:mm}{Europe/Paris}",
    "%d{HH:mm z}{GMT+2}", "%d{ISO8601}{GMT-05:30}",
]  # fmt: skip


def _spell(rng: random.Random, name: str) -> str:
    """The option name as written: mostly right, sometimes with the first letter's case changed
    (log4j forgives that), sometimes misspelt (log4j warns)."""
    r = rng.random()
    if r < 0.7:
        return name
    if r < 0.85:
        return name[0].swapcase() + name[1:]
    if r < 0.93:
        return name.lower()
    return name + "s"


class ConfigGenerator:
    """``ConfigGenerator(seed).config(i)`` → (properties text, loggers to report)."""

    def __init__(self, seed: int):
        self.seed = seed

    def config(self, index: int) -> tuple[str, list[str]]:
        rng = random.Random(f"{self.seed}/{index}")
        lines: list[str] = [f"# generated config {index} (seed {self.seed})"]
        appenders = [f"A{i}" for i in range(rng.randint(1, 5))]
        for name in appenders:
            lines += self._appender(rng, name)
        used = list(appenders)
        if rng.random() < 0.2:
            used.append("GHOST")  # referenced, never defined
        if rng.random() < 0.3:
            lines.append(f"log4j.threshold={rng.choice(LEVELS)}")
        root_key = "log4j.rootLogger" if rng.random() < 0.9 else "log4j.rootCategory"
        root_value = self._logger_value(rng, used)
        if rng.random() < 0.2:  # through a ${} variable of the file, as Hadoop's files do
            lines.append(f"root.logger={root_value}")
            root_value = rng.choice(["${root.logger}", "${root.logger", "${undefined.var}"])
        lines.append(f"{root_key}={root_value}")
        if rng.random() < 0.1:
            lines.append(rng.choice(["log4j.debug=true", "log4j.configDebug=true", "log4j.debug=false"]))
        loggers = rng.sample(LOGGER_NAMES, k=rng.randint(0, 4))
        for name in loggers:
            kind = "category" if rng.random() < 0.15 else "logger"
            lines.append(f"log4j.{kind}.{name}={self._logger_value(rng, used)}")
            if rng.random() < 0.1:  # the same logger again under the other prefix
                other = "logger" if kind == "category" else "category"
                lines.append(f"log4j.{other}.{name}={self._logger_value(rng, used)}")
            if rng.random() < 0.5:
                lines.append(f"log4j.additivity.{name}={rng.choice(BOOLEANS)}")
        if rng.random() < 0.2:
            lines.append(f"log4j.additivity.{rng.choice(LOGGER_NAMES)}=false")
        rng.shuffle(lines)
        report = ["root", *loggers, *(n + ".child" for n in loggers), "unconfigured.logger"]
        return "\n".join(lines) + "\n", list(dict.fromkeys(report))

    def _logger_value(self, rng: random.Random, appenders: list[str]) -> str:
        names = rng.sample(appenders, k=rng.randint(0, min(3, len(appenders))))
        level = rng.choice(LEVELS + ["INHERITED", "NULL"] + GOOD_LEVELS * 3)
        sep = rng.choice([", ", ",", " , "])
        return sep.join([level, *names]) if names or rng.random() < 0.5 else level

    def _appender(self, rng: random.Random, name: str) -> list[str]:
        cls = rng.choice(
            ["ConsoleAppender"] * 3 + ["FileAppender"] * 2 + ["RollingFileAppender"] * 2
            + ["DailyRollingFileAppender", "varia.NullAppender", "AsyncAppender", "net.SyslogAppender",
               "hadoop.EventCounter", "accumulo.AsyncSocketAppender"]
        )  # fmt: skip
        full = {
            "hadoop.EventCounter": "org.apache.hadoop.log.metrics.EventCounter",
            "accumulo.AsyncSocketAppender": "org.apache.accumulo.core.util.AsyncSocketAppender",
        }.get(cls, "org.apache.log4j." + cls)
        p = f"log4j.appender.{name}"
        out = [f"{p}={full}"]
        opts: dict[str, list[str]] = {"Threshold": LEVELS}
        if cls == "ConsoleAppender":
            opts |= {"Target": ["System.out", "System.err", "system.ERR", " System.err ", "stdout"],
                     "Follow": BOOLEANS}  # fmt: skip
        if cls in ("FileAppender", "RollingFileAppender", "DailyRollingFileAppender"):
            opts |= {
                "Append": BOOLEANS, "BufferedIO": BOOLEANS, "BufferSize": ["1024", "16", "abc", " 512 "],
                "ImmediateFlush": BOOLEANS, "Encoding": ["UTF-8", "ISO-8859-1", "US-ASCII", "bogus-charset"],
            }  # fmt: skip
            if rng.random() < 0.92:
                out.append(f"{p}.File=" + rng.choice(["${dir}/", " ${dir}/", "${dir}/sub/"]) + f"{name}.log")
        if cls == "RollingFileAppender":
            opts |= {"MaxFileSize": ["1KB", "2kb", "10MB", "1 KB", "3K", "abc", "500"],
                     "MaxBackupIndex": ["0", "1", "3", "-1", "x", " 2 "], "MaximumFileSize": ["2048", "-3"]}  # fmt: skip
        if cls == "DailyRollingFileAppender":
            opts |= {"DatePattern": ["'.'yyyy-MM-dd", ".yyyy-MM-dd-HH", "'.'yyyy-ww", "'.'yyyy-MM-dd-HH-mm"]}
        if cls == "AsyncAppender":
            opts |= {"BufferSize": ["1", "128", "x"], "Blocking": BOOLEANS, "LocationInfo": BOOLEANS}
        if cls == "net.SyslogAppender":
            out.append(f"{p}.SyslogHost=127.0.0.1:${{syslog.port}}")
            # Header=true is left out: its host name is Python's gethostname(), log4j's
            # InetAddress.getLocalHost() (README: where logbridge differs).
            opts |= {"Facility": ["USER", "LOCAL0", "local7", "bogus"], "FacilityPrinting": BOOLEANS,
                     "Header": ["false", "FALSE", "yes", ""]}  # fmt: skip
        if cls == "accumulo.AsyncSocketAppender":
            # An application class's own options, spelt right and valid: logbridge cannot know
            # the setters of a class it has never seen, so it takes every option.
            for opt, value in {"RemoteHost": "monitor", "Port": "4560", "LocationInfo": "true"}.items():
                if rng.random() < 0.5:
                    out.append(f"{p}.{opt}={value}")
        if cls in ("hadoop.EventCounter", "accumulo.AsyncSocketAppender"):
            opts = {}  # their setters are the stand-ins' own: only valid, well-spelt options)
            if rng.random() < 0.3:
                out.append(f"{p}.Threshold={rng.choice(GOOD_LEVELS)}")
        for opt, values in opts.items():
            if rng.random() < 0.35:
                out.append(f"{p}.{_spell(rng, opt)}={escape_value(rng.choice(values))}")
        if rng.random() < 0.1 and cls not in ("hadoop.EventCounter", "accumulo.AsyncSocketAppender"):
            out.append(f"{p}.NoSuchOption=1")
        if cls not in (
            "varia.NullAppender",
            "AsyncAppender",
            "hadoop.EventCounter",
            "accumulo.AsyncSocketAppender",
        ):
            out += self._layout(rng, p + ".layout")
        out += self._filters(rng, p + ".filter.")
        return out

    def _layout(self, rng: random.Random, key: str) -> list[str]:
        r = rng.random()
        if r < 0.05:
            return []  # no layout: log4j's error, then every event dropped
        if r < 0.08:
            return [f"{key}=" + rng.choice(["", "org.apache.log4j.NoSuchLayout"])]
        kind = rng.choice(
            ["PatternLayout"] * 4 + ["EnhancedPatternLayout"] * 2 + ["SimpleLayout", "TTCCLayout"]
            + ["xml.XMLLayout"]
        )  # fmt: skip
        out = [f"{key}=org.apache.log4j.{kind}"]
        if kind in ("HTMLLayout", "xml.XMLLayout"):
            for opt, values in {
                "LocationInfo": BOOLEANS,
                "Title": ["Logs <é>"],
                "Properties": BOOLEANS,
            }.items():
                if rng.random() < 0.4 and (opt != "Title" or kind == "HTMLLayout"):
                    out.append(f"{key}.{_spell(rng, opt)}={escape_value(rng.choice(values))}")
        if kind in ("PatternLayout", "EnhancedPatternLayout") and rng.random() < 0.9:
            tokens = ENHANCED_TOKENS if kind == "EnhancedPatternLayout" else PATTERN_TOKENS
            pattern = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 8))) + "%n"
            out.append(f"{key}.{_spell(rng, 'ConversionPattern')}={escape_value(pattern)}")
        if kind == "TTCCLayout":
            named = rng.random() < 0.5
            for opt, values in {
                "DateFormat": ["ISO8601", "ABSOLUTE", "DATE", "NULL"] if named else ["HH:mm:ss", "yyyy-MM-dd HH:mm"],
                # A TimeZone with a named format is left out: log4j's ISO8601/ABSOLUTE/DATE
                # formatters share one static cache per second across every layout, so a layout
                # in another zone prints the first one's time (README: where logbridge differs).
                "TimeZone": [] if named else ["UTC", "Europe/Paris", "America/New_York", "GMT+2", "bogus/zone"],
                "ThreadPrinting": BOOLEANS, "CategoryPrefixing": BOOLEANS, "ContextPrinting": BOOLEANS,
            }.items():  # fmt: skip
                if values and rng.random() < 0.4:
                    out.append(f"{key}.{_spell(rng, opt)}={rng.choice(values)}")
        return out

    def _filters(self, rng: random.Random, prefix: str) -> list[str]:
        out: list[str] = []
        for fid in rng.sample(["1", "2", "10", "a"], k=rng.choice([0, 0, 0, 1, 1, 2, 3])):
            kind = rng.choice(["LevelRangeFilter", "LevelMatchFilter", "StringMatchFilter", "DenyAllFilter"])
            if rng.random() < 0.95:
                out.append(f"{prefix}{fid}=org.apache.log4j.varia.{kind}")
            opts: dict[str, list[str]] = {
                "LevelRangeFilter": {"LevelMin": LEVELS, "LevelMax": LEVELS, "AcceptOnMatch": BOOLEANS},
                "LevelMatchFilter": {"LevelToMatch": LEVELS, "AcceptOnMatch": BOOLEANS},
                "StringMatchFilter": {
                    "StringToMatch": ["event 1", "héllo", "on a"],
                    "AcceptOnMatch": BOOLEANS,
                },
                "DenyAllFilter": {},
            }[kind]
            for opt, values in opts.items():
                if rng.random() < 0.6:
                    out.append(f"{prefix}{fid}.{_spell(rng, opt)}={escape_value(rng.choice(values))}")
        return out
