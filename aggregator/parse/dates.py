"""Feed dates feedparser loses or shifts: German forms and Central European zone names.

Both XML readers get their dates from feedparser's `_parse_date` (fast.py calls
it through `parse_date`, feedparser.parse calls it internally), so a handler
registered with `feedparser.registerDateHandler` reaches both and they stay
equivalent (`parse_date`'s shortcut for the usual RFC 822 form steps aside
once a handler was registered after ours). Importing this module registers
`parse_european_date`; fast.py imports `parse_date` from here, so every path
into aggregator.parse registers it before the first parse.

Why: feedparser 6 reads only English month names, and its RFC 822 handler drops a
date with a weekday but no zone ("Fri, 14 Mar 2025 10:00:00") and takes zone
names it does not know ("CET", "MESZ", the "Uhr" of "10:00 Uhr") as UTC. A lost
date becomes "now" at the first fetch (a new German feed's whole backlog looks
fresh); a zone taken as UTC puts a story one or two hours late.

A date without a zone is local time somewhere. German forms (a German month or
weekday name, "14.03.2025", "3. März", "10:00 Uhr") are written by outlets in
Germany, Austria and Switzerland, whose clocks all keep Europe/Berlin time (CET,
CEST in summer), so such a date is read as Europe/Berlin, with its daylight
saving. An English zone-less date says nothing of where it was written, so it
stays UTC, feedparser's convention, as it is for "14 Mar 2025 10:00:00".

The handler runs before feedparser's own (registered handlers go first), so it
claims only German forms, Central European zone names and zone-less dates (for
an English one it gives feedparser's result wherever feedparser has one) and
returns None for everything else, which then parses exactly as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import feedparser
from feedparser.datetimes import _date_handlers as _HANDLERS
from feedparser.datetimes import _parse_date

__all__ = ["feedparser_date", "parse_date", "parse_european_date"]

# feedparser's date function, with `parse_european_date` registered below.
feedparser_date: Callable[[str | None], time.struct_time | None] = _parse_date


def _numbered(*groups: str) -> dict[str, int]:
    """{spelling: 1-based position} from one space-separated group of spellings each."""
    return {name: number for number, group in enumerate(groups, 1) for name in group.split()}


# Month names and abbreviations ("Sept", Austrian "Jänner"), weekdays short and long.
_MONTHS_EN = _numbered(
    "jan january", "feb february", "mar march", "apr april", "may", "jun june", "jul july",
    "aug august", "sep sept september", "oct october", "nov november", "dec december",
)  # fmt: skip
_MONTHS_DE = _numbered(
    "jan januar jän jänner", "feb februar", "mär mrz märz maerz", "apr april", "mai",
    "jun juni", "jul juli", "aug august", "sep sept september", "okt oktober", "nov november",
    "dez dezember",
)  # fmt: skip
_WEEKDAYS_EN = frozenset(_numbered(
    "mon monday", "tue tuesday", "wed wednesday", "thu thursday", "fri friday", "sat saturday",
    "sun sunday",
))  # fmt: skip
_WEEKDAYS_DE = frozenset(_numbered(
    "mo montag", "di dienstag", "mi mittwoch", "do donnerstag", "fr freitag",
    "sa samstag sonnabend", "so sonntag",
))  # fmt: skip
# Hours east of UTC. The Central European names feedparser takes as UTC, with
# their German spellings; the universal names so that a German date may use them.
_ZONES_CE = {"cet": 1, "mez": 1, "cest": 2, "mesz": 2}
_ZONES = {**_ZONES_CE, "met": 1, "mest": 2, "ut": 0, "utc": 0, "gmt": 0, "z": 0}
# The wall clock of a German-form date without a zone (tzdata is a dependency).
_BERLIN = ZoneInfo("Europe/Berlin")

_DATE = re.compile(
    r"(?:(?P<weekday>[^\W\d_]+)\.?,?\s)?"
    r"(?:(?P<day>\d{1,2})(?P<day_dot>\.)?\s(?P<month>[^\W\d_]+)\.?\s(?P<year>\d{4}|\d{2})"
    r"|(?P<nday>\d{1,2})\.(?P<nmonth>\d{1,2})\.(?P<nyear>\d{4}))"
    r",?(?:\s(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?(?P<uhr>\sUhr)?)?"
    r"(?:\s(?P<zone>[+-]\d{2}:?\d{2}|[^\W\d_]+))?",
    re.IGNORECASE,
)


def parse_european_date(value: str) -> time.struct_time | None:
    """UTC time tuple of a German or zone-less RFC 822 date; None to leave it to feedparser.

    Takes "Mo, 03 Mär 2025 10:00:00 +0100", "3. März 2025 10:00 Uhr", "Di, 14
    Okt. 2025 08:15:00 MESZ", "14.03.2025 10:00[:00] [+0100]", "Fri, 14 Mar 2025
    10:00:00" and English dates with a Central European zone name. A German-form
    date without a zone is Europe/Berlin time (see the module docstring); an
    English one is UTC, as feedparser takes "14 Mar 2025 10:00:00". At the switch
    to and from summer time the Berlin hour is read with fold=0, so that the same
    text always gives the same instant: the hour that occurs twice in October
    (02:00-02:59) is its first, summer-time occurrence, and the hour skipped in
    March (02:00-02:59) is read with winter time's +01:00, as 03:00-03:59 CEST.
    An English date with another zone is not claimed (feedparser's rules stand),
    nor is anything that does not name a real day and time: no date is better
    than a wrong one.
    """
    match = _DATE.fullmatch(" ".join(value.split()))
    if match is None:
        return None
    weekday, zone = (match["weekday"] or "").lower(), (match["zone"] or "").lower()
    if weekday and weekday not in _WEEKDAYS_EN and weekday not in _WEEKDAYS_DE:
        return None
    # Any one mark makes it German; a month named alike in both ("Apr", "August") is none.
    german = weekday in _WEEKDAYS_DE or bool(match["day_dot"] or match["uhr"])
    if match["nday"] is not None:
        german = True
        day, month, year = int(match["nday"]), int(match["nmonth"]), int(match["nyear"])
    else:
        name = match["month"].lower()
        month_en = _MONTHS_EN.get(name)
        german = german or not month_en
        if not german and zone and zone not in _ZONES_CE:
            return None  # feedparser reads this one right
        month = month_en or _MONTHS_DE.get(name, 0)
        day, year = int(match["day"]), int(match["year"])
        if len(match["year"]) == 2:  # feedparser's rule for two-digit years
            year += 1900 if year >= 90 else 2000
    if zone[:1] in ("+", "-"):
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        if hours > 14 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
        zone_info: tzinfo = timezone(offset)
    elif zone in _ZONES:
        zone_info = timezone(timedelta(hours=_ZONES[zone]))
    elif not zone:
        zone_info = _BERLIN if german else UTC
    else:
        return None
    try:
        local = datetime(
            year,
            month,
            day,
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            tzinfo=zone_info,
            fold=0,
        )
        return local.utctimetuple()
    except (ValueError, OverflowError):  # no such day or time, or beyond datetime's years
        return None


# The RFC 822 form nearly every RSS <pubDate> takes: "Wed, 25 Nov 2026 05:01:30 +0000".
_RFC822_NUMERIC_ZONE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" (\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)"
)


def parse_date(value: str | None) -> time.struct_time | None:
    """feedparser's `_parse_date` with our handler, computed directly for the usual form.

    For "Wed, 25 Nov 2026 05:01:30 +0000" `parse_european_date` declines (an
    English date with a numeric zone), feedparser's W3C-DTF handler finds no
    year, and its RFC 822 handler returns the time minus the zone offset; this
    does that arithmetic itself, in half the time the handler chain takes.
    Where that handler would find no date (no such day or hour) the others get
    their turn, so such a value goes the whole way through the chain, as does
    every value once another handler was registered after ours.
    """
    match = _RFC822_NUMERIC_ZONE.fullmatch(value) if value else None
    # Only while the chain is as this module left it: a handler registered
    # later goes first in feedparser.parse, and must go first here too.
    if match is not None and _HANDLERS[0] is parse_european_date:
        day, month, year, hour, minute, second, sign, zone_hours, zone_minutes = match.groups()
        offset = int(zone_hours) * 60 + int(zone_minutes)
        try:
            stamp = datetime(
                int(year),
                _MONTHS_EN[month.lower()],
                int(day),
                int(hour),
                int(minute),
                int(second),
            )
            if offset:  # most feeds write their dates in UTC, "+0000"
                stamp -= timedelta(minutes=-offset if sign == "-" else offset)
            return stamp.utctimetuple()
        except (ValueError, OverflowError):
            pass  # no such day or time, or beyond datetime's years: the chain decides
    return feedparser_date(value)


feedparser.registerDateHandler(parse_european_date)
