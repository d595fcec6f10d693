"""java.util.TimeZone.getTimeZone(id), for the zones log4j layouts take as options.

EnhancedPatternLayout's ``%d{pattern}{zone}`` and TTCCLayout's ``TimeZone`` pass their option to
``TimeZone.getTimeZone``, which resolves, in this order (JDK 17):

1. a tz database id (``Europe/Paris``, ``UTC``, ``GMT0``, ``EST5EDT``), including the JDK's old
   three-letter ids (``PST``, ``IST``, ``ECT``) that Python's tz database does not have;
2. a *custom* id ``GMT`` sign hours [``:`` minutes]: ``GMT+2``, ``GMT-05:00``, ``GMT+0530``,
   ``GMT+530`` — hours up to 23, minutes up to 59 (``GMT+2`` is *not* the tz database's
   ``Etc/GMT+2`` alias, whose sign is the POSIX one, reversed);
3. anything else, silently, GMT.

Fixed zones carry Java's normalised id as their name (``GMT+02:00``), which SimpleDateFormat's
``z`` prints.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

GMT = dt.timezone(dt.timedelta(0), "GMT")

# ZoneInfoFile's old mappings: ids the JDK accepts that are not in the tz database.
_JDK_OLD_IDS = {
    "ACT": "Australia/Darwin", "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo", "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago", "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris", "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "MIT": "Pacific/Apia", "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland", "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
}  # fmt: skip


def custom_time_zone(tz_id: str) -> dt.timezone | None:
    """TimeZone.parseCustomTimeZone: ``GMT[+-]h[h][[:]mm]`` as a fixed zone, else None."""
    if len(tz_id) < 5 or not tz_id.startswith("GMT") or tz_id[3] not in "+-":
        return None
    negative = tz_id[3] == "-"
    hours = num = delimiters = digits = 0
    for c in tz_id[4:]:
        if c == ":":
            if delimiters or digits > 2:
                return None
            hours, num, digits, delimiters = num, 0, 0, 1
            continue
        if not "0" <= c <= "9":  # ASCII digits only, as Java compares chars
            return None
        num = num * 10 + ord(c) - ord("0")
        digits += 1
    if delimiters == 0:
        hours, num = (num, 0) if digits <= 2 else divmod(num, 100)
    elif digits != 2:
        return None
    if hours > 23 or num > 59:
        return None
    minutes = hours * 60 + num
    sign = "-" if negative else "+"
    if minutes == 0:
        return dt.timezone(dt.timedelta(0), f"GMT{sign}00:00")
    name = f"GMT{sign}{hours:02d}:{num:02d}"
    return dt.timezone(dt.timedelta(minutes=-minutes if negative else minutes), name)


def java_time_zone(tz_id: str) -> dt.tzinfo:
    """The zone ``TimeZone.getTimeZone(tz_id)`` returns; an id Java does not know is GMT."""
    if tz_id == "GMT":
        return GMT
    if tz_id == "UTC":
        return dt.UTC
    if tz_id.startswith("GMT") and len(tz_id) > 3 and tz_id[3] in "+-":
        # Checked before the tz database, whose GMT+2 is Etc/GMT+2 (two hours *behind* GMT).
        return custom_time_zone(tz_id) or GMT
    try:
        return zoneinfo.ZoneInfo(_JDK_OLD_IDS.get(tz_id, tz_id))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return GMT
