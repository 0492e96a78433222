"""IMAP date and date-time values.

Owns parsing of `date` (SEARCH BEFORE/ON/SINCE...) and `date-time` (APPEND) and formatting of
date-time for INTERNALDATE.

Standards: RFC 3501 §9 (date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-"
date-month "-" date-year; date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP
time SP zone DQUOTE; month names case-insensitive; zone = ("+" / "-") 4DIGIT), RFC 9051 §9.
Security: parses client input; rejects out-of-range fields.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["DateSyntaxError", "format_date_time", "parse_date", "parse_date_time"]

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    r"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"
)


class DateSyntaxError(ValueError):
    """Not an RFC 3501 date or date-time."""


def _month(name: str) -> int:
    try:
        return MONTHS.index(name.upper()) + 1
    except ValueError:
        raise DateSyntaxError(f"bad month {name!r}") from None


def parse_date(text: str) -> dt.date:
    """`date-text` such as "1-Feb-1994" (the quotes, if any, already removed)."""
    match = _DATE.fullmatch(text)
    if not match:
        raise DateSyntaxError(f"bad date {text[:40]!r}")
    try:
        return dt.date(int(match.group(3)), _month(match.group(2)), int(match.group(1)))
    except ValueError:
        raise DateSyntaxError(f"bad date {text[:40]!r}") from None


def parse_date_time(text: str) -> dt.datetime:
    """`date-time` contents such as "17-Jul-1996 02:44:25 -0700" (day may be space-padded), timezone-aware."""
    match = _DATE_TIME.fullmatch(text)
    if not match:
        raise DateSyntaxError(f"bad date-time {text[:40]!r}")
    day, month, year, hour, minute, second, sign, zone_h, zone_m = match.groups()
    if int(zone_m) > 59:
        raise DateSyntaxError(f"bad zone in {text[:40]!r}")
    offset = dt.timedelta(hours=int(zone_h), minutes=int(zone_m))
    try:
        return dt.datetime(int(year), _month(month), int(day.strip()), int(hour), int(minute), int(second),
                           tzinfo=dt.timezone(-offset if sign == "-" else offset))
    except ValueError:
        raise DateSyntaxError(f"bad date-time {text[:40]!r}") from None


def format_date_time(value: dt.datetime) -> str:
    """date-time contents (without quotes) in the value's own zone; a naive value is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    offset = value.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (f"{value.day:02d}-{_MONTH_NAMES[value.month - 1]}-{value.year:04d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{minutes // 60:02d}{minutes % 60:02d}")
