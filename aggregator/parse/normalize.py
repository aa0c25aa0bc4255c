"""Format-neutral half of parsing: item fields -> normalized `Entry`.

feeds.py (XML via feedparser) and jsonfeed.py each reduce their format to
`RawEntry` values; everything that must be identical across formats (guid,
URL policy, date rules, language tags, titles for untitled posts, content hash)
is decided here, once.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aggregator.models import Entry
from aggregator.parse.html import strip_controls, title_from_text, truncate
from aggregator.parse.urls import canonical_url, http_url

SUMMARY_LIMIT = 1000
TITLE_LIMIT = 300
UNTITLED_TITLE_LIMIT = 100
# Bytes of a guid or canonical URL the store's btree indexes take (PostgreSQL's
# limit is about 2,700 bytes an index entry, key columns and overhead included).
GUID_LIMIT = 2000
URL_INDEX_LIMIT = 2000
# Clocks of publishers drift; beyond this a date in the future is a mistake
# (or a bid for the top of every list) and is clamped to the time of parsing.
CLOCK_SKEW = timedelta(minutes=10)

_LANGUAGE = re.compile(r"[a-z]{2,3}")


class ParseError(ValueError):
    """The document is not a feed this program can read; str() is a short reason."""


@dataclass(frozen=True)
class FeedContext:
    """What the caller knows about the document, beyond its bytes."""

    url: str
    outlet: str
    outlet_language: str | None
    now: datetime


@dataclass
class RawEntry:
    """One item as its format gave it, with title and summary already plain text.

    `summary` may be longer than the limit; it is truncated here, once.
    """

    id: str | None
    link: str | None
    title: str
    summary: str
    published: datetime | None
    updated: datetime | None
    author: str | None
    language: str | None


def describe(problem: object) -> str:
    """One short line for an exception, for ParseError messages and warnings."""
    message = str(problem).strip()
    return message.splitlines()[0][:200] if message else type(problem).__name__


def normalize_language(tag: object) -> str | None:
    """Primary language subtag: "de-DE", "en_US", "IT-it" -> "de", "en", "it".

    None for anything that is not a two- or three-letter code.
    """
    if not isinstance(tag, str):
        return None
    primary = tag.strip().replace("_", "-").partition("-")[0].lower()
    return primary if _LANGUAGE.fullmatch(primary) else None


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def from_struct_time(value: object) -> datetime | None:
    """feedparser's UTC `*_parsed` struct_time as datetime; None if absent or absurd."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        # The fields as they are, where they name a real moment: what the general
        # way below gives for them, in half its time (timegm is Python code).
        return datetime(*value[:6], tzinfo=UTC)
    except (OverflowError, ValueError):
        pass  # a leap second, "24:00", "31 Feb": timegm carries them over
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _guid(raw: RawEntry, url: str | None, title: str, date: datetime | None) -> str:
    guid = strip_controls(raw.id).strip() if raw.id else ""
    if guid or url:
        return _indexable(guid or url or "")
    stamp = date.isoformat() if date else ""
    return "sha1:" + hashlib.sha1(f"{title}\n{stamp}".encode()).hexdigest()


def _indexable(guid: str) -> str:
    """`guid`, or a digest of it when it is too long for the store's unique index.

    PostgreSQL refuses a btree index entry over about 2.7 KB, so a feed with
    a longer guid (or, without a guid, a long signed link) could never be
    stored. The digest is as stable as the guid it stands for.
    """
    if len(guid.encode()) <= GUID_LIMIT:
        return guid
    return "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


def build_entries(
    raws: Iterable[RawEntry], ctx: FeedContext, feed_language: str | None, base: str | None
) -> list[Entry]:
    """Normalized entries, in feed order.

    Items with neither title nor text are dropped (nothing to show or match);
    a guid seen twice keeps its first item, because the store keys on it.
    """
    now = as_utc(ctx.now)
    default_language = feed_language or normalize_language(ctx.outlet_language)
    entries: list[Entry] = []
    seen: set[str] = set()
    for raw in raws:
        entry = _build_entry(raw, ctx, now, default_language, base)
        if entry is not None and entry.guid not in seen:
            seen.add(entry.guid)
            entries.append(entry)
    return entries


def _build_entry(
    raw: RawEntry, ctx: FeedContext, now: datetime, default_language: str | None, base: str | None
) -> Entry | None:
    summary = truncate(raw.summary, SUMMARY_LIMIT)
    title = truncate(raw.title, TITLE_LIMIT) or title_from_text(raw.summary, UNTITLED_TITLE_LIMIT)
    if not title:
        return None
    url = http_url(raw.link, base)
    date = raw.published or raw.updated
    published = as_utc(date) if date is not None else now
    if published > now + CLOCK_SKEW:
        published = now
    return Entry(
        guid=_guid(raw, url, title, date),
        url=url,
        # Beyond the limit a URL is kept as the link but not indexed for duplicates.
        canonical_url=canonical_url(url) if url and len(url.encode()) <= URL_INDEX_LIMIT else None,
        title=title,
        summary=summary,
        published=published,
        published_estimated=date is None,
        author=raw.author or None,
        language=normalize_language(raw.language) or default_language,
        content_hash=hashlib.sha256(f"{title}\n{summary}".encode()).hexdigest(),
        outlet=ctx.outlet,
    )
