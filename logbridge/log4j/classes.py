"""What log4j 1.2.17 knows about the classes a properties file names.

``PropertySetter`` sets options through JavaBeans introspection, so whether an option name is
accepted, and how its value is converted, depends on the class's setters. These tables list the
bean properties (name → Java type) of the classes logbridge translates, taken from log4j 1.2.17
(checked against the real jar by the harness tests).
"""

from __future__ import annotations

# What an appender does with an option the file does not set (log4j 1.2.17's field initialisers);
# the model, the translation and the handlers all read them here.
DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024  # RollingFileAppender.maxFileSize
DEFAULT_MAX_BACKUP_INDEX = 1  # RollingFileAppender.maxBackupIndex
DEFAULT_DATE_PATTERN = "'.'yyyy-MM-dd"  # DailyRollingFileAppender.datePattern
DEFAULT_BUFFER_SIZE = 8192  # FileAppender.bufferSize

# Property types understood by PropertySetter.convertArg.
STRING, INT, LONG, BOOLEAN, PRIORITY, OTHER = "String", "int", "long", "boolean", "Priority", "other"

_SKELETON = {"threshold": PRIORITY, "name": STRING, "errorHandler": OTHER, "layout": OTHER, "filter": OTHER}
_WRITER = {**_SKELETON, "immediateFlush": BOOLEAN, "encoding": STRING, "writer": OTHER}
_FILE = {**_WRITER, "file": STRING, "append": BOOLEAN, "bufferedIO": BOOLEAN, "bufferSize": INT}

# Read-only bean properties: found by introspection, but setting them fails.
READ_ONLY = {"filter", "class"}

APPENDERS: dict[str, dict[str, str]] = {
    "org.apache.log4j.ConsoleAppender": {**_WRITER, "target": STRING, "follow": BOOLEAN},
    "org.apache.log4j.FileAppender": _FILE,
    "org.apache.log4j.RollingFileAppender": {
        **_FILE,
        "maxBackupIndex": INT,
        "maximumFileSize": LONG,
        "maxFileSize": STRING,
    },
    "org.apache.log4j.DailyRollingFileAppender": {**_FILE, "datePattern": STRING},
    "org.apache.log4j.varia.NullAppender": dict(_SKELETON),
    "org.apache.log4j.AsyncAppender": {
        **_SKELETON,
        "bufferSize": INT,
        "locationInfo": BOOLEAN,
        "blocking": BOOLEAN,
    },
    "org.apache.log4j.net.SyslogAppender": {
        **_SKELETON,
        "syslogHost": STRING,
        "facility": STRING,
        "facilityPrinting": BOOLEAN,
        "header": BOOLEAN,
    },
}

# Appenders that do not take a layout (AppenderSkeleton.requiresLayout() is false).
NO_LAYOUT = {"org.apache.log4j.varia.NullAppender", "org.apache.log4j.AsyncAppender"}

# Other appender classes shipped in log4j-1.2.17.jar: log4j instantiates them, logbridge has no
# Python equivalent for them.
OTHER_LOG4J_APPENDERS = {
    "org.apache.log4j.WriterAppender",
    "org.apache.log4j.net.SMTPAppender",
    "org.apache.log4j.net.SocketAppender",
    "org.apache.log4j.net.SocketHubAppender",
    "org.apache.log4j.net.TelnetAppender",
    "org.apache.log4j.net.JMSAppender",
    "org.apache.log4j.jdbc.JDBCAppender",
    "org.apache.log4j.nt.NTEventLogAppender",
    "org.apache.log4j.lf5.LF5Appender",
    "org.apache.log4j.varia.ExternallyRolledFileAppender",
    "org.apache.log4j.varia.FallbackErrorHandler",
}

JSON_AUDIT_LAYOUT = "com.dataiku.dip.logging.JSONAuditLayout"

LAYOUTS: dict[str, dict[str, str]] = {
    "org.apache.log4j.PatternLayout": {"conversionPattern": STRING},
    "org.apache.log4j.EnhancedPatternLayout": {"conversionPattern": STRING},
    "org.apache.log4j.SimpleLayout": {},
    "org.apache.log4j.TTCCLayout": {
        "dateFormat": STRING,
        "timeZone": STRING,
        "threadPrinting": BOOLEAN,
        "categoryPrefixing": BOOLEAN,
        "contextPrinting": BOOLEAN,
    },
    "org.apache.log4j.xml.XMLLayout": {"locationInfo": BOOLEAN, "properties": BOOLEAN},
    "org.apache.log4j.HTMLLayout": {"locationInfo": BOOLEAN, "title": STRING},
    # DSS's audit layout: its options are not known here, none is rejected.
    JSON_AUDIT_LAYOUT: {},
}

OTHER_LOG4J_LAYOUTS: set[str] = set()  # every layout of log4j-1.2.17.jar is translated

FILTERS: dict[str, dict[str, str]] = {
    "org.apache.log4j.varia.LevelRangeFilter": {
        "levelMin": PRIORITY,
        "levelMax": PRIORITY,
        "acceptOnMatch": BOOLEAN,
    },
    "org.apache.log4j.varia.LevelMatchFilter": {"levelToMatch": STRING, "acceptOnMatch": BOOLEAN},
    "org.apache.log4j.varia.StringMatchFilter": {"stringToMatch": STRING, "acceptOnMatch": BOOLEAN},
    "org.apache.log4j.varia.DenyAllFilter": {},
}
