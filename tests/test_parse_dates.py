"""German and Central European feed dates (aggregator/parse/dates.py), by both XML readers.

feedparser alone loses German month and weekday names, the German numeric form
and RFC 822 dates with a weekday but no zone (the entry then shows as published
at the first fetch), and takes CET/MEZ/CEST/MESZ as UTC (one or two hours late).
A German date without a zone is Europe/Berlin time (CET, CEST in summer), where
feedparser would take it as UTC; an English one stays UTC.
Every case runs through the fast path and through feedparser, forced, and must
give the same UTC instant; garbage must still give no date rather than a wrong one.
"""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import feedparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.models import ParsedFeed
from aggregator.parse import parse_feed
from aggregator.parse.dates import feedparser_date, parse_date, parse_european_date
from aggregator.parse.feeds import Reader, parse_xml
from aggregator.parse.normalize import FeedContext, from_struct_time

# After every date below, so that none is clamped as a date in the future.
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CTX = FeedContext(
    url="https://feeds.example.org/nachrichten/feed.xml",
    outlet="Beispielblatt",
    outlet_language="de",
    now=NOW,
)
READERS: list[Reader] = ["fast", "feedparser"]


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


GERMAN = [
    ("Mo, 03 Mär 2025 10:00:00 +0100", utc(2025, 3, 3, 9, 0)),
    ("Di, 14 Okt 2025 08:15:00 +0200", utc(2025, 10, 14, 6, 15)),
    ("03 März 2025 10:00:00 +0100", utc(2025, 3, 3, 9, 0)),
    ("Montag, 03 März 2025 10:00:00 +0100", utc(2025, 3, 3, 9, 0)),
    ("Dienstag, 14 Oktober 2025 08:15:00 +0200", utc(2025, 10, 14, 6, 15)),
    ("Mi, 24 Dezember 2025 18:00:00 +0100", utc(2025, 12, 24, 17, 0)),
    ("14 Okt. 2025 08:15:00 +0200", utc(2025, 10, 14, 6, 15)),
    ("Di., 14. Okt. 2025 08:15 +0200", utc(2025, 10, 14, 6, 15)),
    ("Do, 01 Mai 2025 07:30:00 +02:00", utc(2025, 5, 1, 5, 30)),
    ("14.03.2025 10:00:00 +0100", utc(2025, 3, 14, 9, 0)),
    ("Fri, 14 Mar 2025 10:00:00", utc(2025, 3, 14, 10, 0)),
    ("Fri, 14 Mar 2025 10:00:00 CET", utc(2025, 3, 14, 9, 0)),
    ("Fr, 14 Mär 2025 10:00:00 MEZ", utc(2025, 3, 14, 9, 0)),
    ("Tue, 14 Oct 2025 08:15:00 CEST", utc(2025, 10, 14, 6, 15)),
    ("Di, 14 Okt 2025 08:15:00 MESZ", utc(2025, 10, 14, 6, 15)),
    ("14.10.2025 08:15 MESZ", utc(2025, 10, 14, 6, 15)),
    # An explicit zone stands, even one that is not Berlin's at that date.
    ("Mo, 14 Jul 2025 10:00:00 +0100", utc(2025, 7, 14, 9, 0)),
    ("14.07.2025 10:00 MEZ", utc(2025, 7, 14, 9, 0)),
    ("14.03.2025 10:00 UTC", utc(2025, 3, 14, 10, 0)),
    # German by the day's full stop or by "Uhr" alone (feedparser: no date; "Uhr" as UTC).
    ("3. Mar 2025 10:00 +0100", utc(2025, 3, 3, 9, 0)),
    ("14 Mar 2025 10:00 Uhr +0100", utc(2025, 3, 14, 9, 0)),
]
# German forms without a zone: Europe/Berlin time, +01:00 in winter, +02:00 in summer.
BERLIN = [
    ("14.03.2025 10:00", utc(2025, 3, 14, 9, 0)),
    ("14.07.2025 10:00:00", utc(2025, 7, 14, 8, 0)),
    ("14.03.2025", utc(2025, 3, 13, 23, 0)),
    ("14.07.2025", utc(2025, 7, 13, 22, 0)),
    ("3. März 2025 10:00 Uhr", utc(2025, 3, 3, 9, 0)),
    ("3. Juli 2025, 10:00 Uhr", utc(2025, 7, 3, 8, 0)),
    ("3. März 2025", utc(2025, 3, 2, 23, 0)),
    ("3. Juli 2025", utc(2025, 7, 2, 22, 0)),
    ("Mo, 03 Mär 2025 10:00:00", utc(2025, 3, 3, 9, 0)),
    ("Do, 03 Jul 2025 10:00:00", utc(2025, 7, 3, 8, 0)),
    ("Di., 14. Okt. 2025 08:15", utc(2025, 10, 14, 6, 15)),
    ("Fri, 14 Mär 2025 10:00:00", utc(2025, 3, 14, 9, 0)),
    ("Mon, 14 Jul 2025 10:00 Uhr", utc(2025, 7, 14, 8, 0)),
    ("14. Jul 2025 10:00", utc(2025, 7, 14, 8, 0)),
]
# The hours around the switches of 2025, read with fold=0 (dates.py says why).
DST_SWITCH = [
    ("30.03.2025 01:59", utc(2025, 3, 30, 0, 59)),  # last minute of CET
    ("30.03.2025 02:30", utc(2025, 3, 30, 1, 30)),  # skipped: read as +01:00
    ("30.03.2025 03:00", utc(2025, 3, 30, 1, 0)),  # first minute of CEST
    ("So, 26 Okt 2025 01:59:00", utc(2025, 10, 25, 23, 59)),
    ("So, 26 Okt 2025 02:30:00", utc(2025, 10, 26, 0, 30)),  # twice: the first, CEST
    ("So, 26 Okt 2025 03:00:00", utc(2025, 10, 26, 2, 0)),  # CET from here
]
READ = GERMAN + BERLIN + DST_SWITCH
GARBAGE = [
    "Mo, 99 Foo 2025",
    "Mo, 99 Mär 2025",
    "Mo, 30 Feb 2025 10:00:00 +0100",
    "Mo, 03 Mär 2025 25:00:00 +0100",
    "Mo, 03 Mär 2025 10:00:00 XYZ",
    "Xy, 03 Mär 2025 10:00:00 +0100",
    "32.13.2025 10:00",
]
# English dates feedparser already reads: unchanged, whatever the zone.
ENGLISH = [
    ("Fri, 14 Mar 2025 10:05:00 GMT", utc(2025, 3, 14, 10, 5)),
    ("Fri, 14 Mar 2025 10:00:00 +0100", utc(2025, 3, 14, 9, 0)),
    ("Friday, 14 Mar 25 10:00 -0530", utc(2025, 3, 14, 15, 30)),
    ("Fri, 14 Mar 2025 05:00:00 EST", utc(2025, 3, 14, 10, 0)),
    ("Fri, 14 Mar 2025 10:00:00 XYZ", utc(2025, 3, 14, 10, 0)),
    ("14 Mar 2025 10:00:00", utc(2025, 3, 14, 10, 0)),
    ("Fri, 14 Mar 2025", utc(2025, 3, 14, 0, 0)),
    ("2025-03-14T10:00:00+01:00", utc(2025, 3, 14, 9, 0)),
    ("Sun Jan  4 16:29:06 PST 2004", utc(2004, 1, 5, 0, 29, 6)),
    # Without a zone, in summer too, and with a month named alike in German: UTC.
    ("Mon, 14 Jul 2025 10:00:00", utc(2025, 7, 14, 10, 0)),
    ("14 Apr 2025 10:00:00", utc(2025, 4, 14, 10, 0)),
    ("Thu, 14 August 2025 10:00", utc(2025, 8, 14, 10, 0)),
    ("Mon, 14 Jul 2025", utc(2025, 7, 14, 0, 0)),
    ("Mon, 14 Jul 2025 10:00:00 +0200", utc(2025, 7, 14, 8, 0)),
]


def rss(*dates: str) -> bytes:
    items = "".join(
        f"<item><title>Meldung {n}</title><link>https://example.org/{n}</link>"
        f"<pubDate>{escape(date)}</pubDate></item>"
        for n, date in enumerate(dates)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>Beispielblatt</title><link>https://example.org/</link>{items}"
        "</channel></rss>"
    ).encode()


def atom(date: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Beispielblatt</title><id>urn:beispielblatt</id>"
        "<entry><title>Meldung</title><id>urn:meldung:1</id>"
        '<link href="https://example.org/1"/>'
        f"<published>{escape(date)}</published></entry></feed>"
    ).encode()


def parse(content: bytes, reader: Reader) -> ParsedFeed:
    # reader="fast" raises FastPathDeclined if the fast path does not take the document
    return parse_xml(content, "application/xml", CTX, reader)


def as_datetime(value: time.struct_time | None) -> datetime | None:
    return None if value is None else datetime(*value[:6], tzinfo=UTC)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("date", "expected"), READ, ids=[date for date, _ in READ])
def test_european_date_in_rss(date: str, expected: datetime, reader: Reader) -> None:
    (entry,) = parse(rss(date), reader).entries
    assert (entry.published, entry.published_estimated) == (expected, False)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("date", "expected"), READ, ids=[date for date, _ in READ])
def test_european_date_in_atom(date: str, expected: datetime, reader: Reader) -> None:
    (entry,) = parse(atom(date), reader).entries
    assert (entry.published, entry.published_estimated) == (expected, False)


def test_both_readers_give_the_same_feed_for_european_dates() -> None:
    content = rss(*(date for date, _ in READ), *GARBAGE)
    fast, slow = parse(content, "fast"), parse(content, "feedparser")
    assert fast == slow
    assert [e.published for e in fast.entries[: len(READ)]] == [e for _, e in READ]


def test_parse_feed_stores_a_zone_less_german_date_in_utc() -> None:
    """The whole way in: parse_feed, as fetch calls it, gives the instant in UTC."""
    feed = parse_feed(
        rss("14.03.2025 10:00", "Mo, 14 Jul 2025 10:00:00"),
        url=CTX.url,
        content_type="application/rss+xml",
        outlet=CTX.outlet,
        outlet_language=CTX.outlet_language,
        now=NOW,
    )
    published = [entry.published for entry in feed.entries]
    assert [str(value) for value in published] == [
        "2025-03-14 09:00:00+00:00",
        "2025-07-14 08:00:00+00:00",
    ]
    assert [value.tzinfo for value in published] == [UTC, UTC]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("date", GARBAGE)
def test_garbage_date_gives_no_date(date: str, reader: Reader) -> None:
    assert parse_date(date) is None
    (entry,) = parse(rss(date), reader).entries
    assert (entry.published, entry.published_estimated) == (NOW, True)


@pytest.mark.parametrize(("date", "expected"), ENGLISH, ids=[date for date, _ in ENGLISH])
def test_english_dates_parse_as_before(date: str, expected: datetime) -> None:
    assert as_datetime(parse_date(date)) == expected
    (entry,) = parse(rss(date), "fast").entries
    assert entry.published == expected


@pytest.mark.parametrize("date", [date for date, _ in ENGLISH[:5]])
def test_english_dates_with_a_zone_are_left_to_feedparser(date: str) -> None:
    """The handler runs first: it must not claim what feedparser's own rules read."""
    assert parse_european_date(date) is None


# RFC 822 dates in the form parse_date computes itself, days, hours and zones in
# range and out of it, with years datetime cannot take and zones that overflow.
_RFC822_DATES = st.builds(
    "{}, {:02d} {} {:04d} {:02d}:{:02d}:{:02d} {}{:02d}{:02d}".format,
    st.sampled_from(["Mon", "Sat", "Sun"]),
    st.integers(0, 39),
    st.sampled_from(["Jan", "Feb", "Mar", "Oct", "Dec"]),
    st.sampled_from([0, 1, 1999, 2024, 2025, 9999]),
    st.integers(0, 29),
    st.integers(0, 69),
    st.integers(0, 69),
    st.sampled_from("+-"),
    st.sampled_from([0, 1, 2, 5, 14, 23, 24, 99]),
    st.sampled_from([0, 30, 45, 59, 60, 99]),
)


@given(_RFC822_DATES)
def test_parse_date_computes_rfc822_dates_as_feedparser_does(date: str) -> None:
    assert parse_date(date) == feedparser_date(date)


@pytest.mark.parametrize(
    "date",
    ["Wed, 25 Nov 2026 05:01:30 +0000", "Sat, 01 Jan 0001 00:30:00 +0100",
     "Fri, 31 Dec 9999 23:30:00 -0100", "Mon, 29 Feb 2025 10:00:00 +0000",
     "Tue, 5 Mar 2024 24:00:00 +0000", "Thu, 14 Mar 2024 10:00:00 -0530"],
)  # fmt: skip
def test_parse_date_at_the_edges_of_its_own_form(date: str) -> None:
    assert parse_date(date) == feedparser_date(date)


def test_a_handler_registered_later_is_heard_by_both_readers() -> None:
    """The shortcut for the usual RFC 822 form must not bypass a handler feedparser.parse runs."""
    epoch = time.gmtime(0)
    value = "Wed, 25 Nov 2026 05:01:30 +0000"
    assert parse_date(value)[:6] == (2026, 11, 25, 5, 1, 30)  # type: ignore[index]
    handlers = feedparser.datetimes._date_handlers
    registered = handlers[:]
    feedparser.registerDateHandler(lambda text: epoch if text == value else None)
    try:
        assert parse_date(value) == epoch
        assert feedparser_date(value) == epoch
    finally:
        handlers[:] = registered


def _from_struct_time_in_general(value: time.struct_time) -> datetime | None:
    """from_struct_time without its shortcut for fields that name a real moment."""
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


# Time tuples as date handlers make them, fields in range and just beyond it (a
# leap second, "24:00", the 31st of a short month), years datetime cannot take.
@given(
    st.tuples(
        st.sampled_from([0, 1, 1969, 1970, 2024, 2025, 9999, 10000]),
        st.integers(-1, 13),
        st.integers(-1, 32),
        st.integers(-1, 25),
        st.integers(-1, 61),
        st.integers(-1, 62),
    )
)
def test_from_struct_time_gives_what_timegm_gives(fields: tuple[int, ...]) -> None:
    value = time.struct_time((*fields, 0, 1, 0))
    assert from_struct_time(value) == _from_struct_time_in_general(value)
