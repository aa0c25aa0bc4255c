"""JSON Feed 1.0 and 1.1 (https://jsonfeed.org/version/1.1), which feedparser does not read.

Every field is type-checked: a JSON document can put a list where the spec says
string, and such a value is treated as absent rather than crash the feed.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aggregator.models import ParsedFeed
from aggregator.parse.html import html_to_text, plain_to_text
from aggregator.parse.normalize import (
    SUMMARY_LIMIT,
    FeedContext,
    ParseError,
    RawEntry,
    as_utc,
    build_entries,
    describe,
    normalize_language,
)
from aggregator.parse.urls import http_url

_WHITESPACE_AND_BOM = b" \t\r\n\xef\xbb\xbf"


def is_json(content: bytes, content_type: str | None) -> bool:
    """JSON by its first character, or by a JSON content type unless it is plainly XML."""
    first = content.lstrip(_WHITESPACE_AND_BOM)[:1]
    if first == b"{":
        return True
    return first != b"<" and content_type is not None and "json" in content_type.lower()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _id(value: object) -> str | None:
    """The spec says string; integers are common. Booleans, floats, objects are no id."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


def _date(value: object) -> datetime | None:
    """RFC 3339 as the spec requires; RFC 822 as some generators write anyway.

    Returned in UTC; a date that cannot be (year 1 with a positive offset) is absent.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return as_utc(datetime.fromisoformat(value.strip()))
    except (ValueError, OverflowError):
        pass
    try:
        return as_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _author(node: dict[str, Any]) -> str | None:
    """Name of the first author: `authors` (1.1) or `author` (1.0)."""
    authors = node.get("authors")
    candidates = authors if isinstance(authors, list) else [node.get("author")]
    for author in candidates:
        name = _str(author.get("name")) if isinstance(author, dict) else None
        if name and name.strip():
            return plain_to_text(name)
    return None


def _raw_entry(item: dict[str, Any]) -> RawEntry:
    summary = _str(item.get("summary")) or _str(item.get("content_text"))
    html = _str(item.get("content_html"))
    return RawEntry(
        id=_id(item.get("id")),
        link=_str(item.get("url")) or _str(item.get("external_url")),
        title=plain_to_text(_str(item.get("title")) or ""),
        summary=plain_to_text(summary) if summary else html_to_text(html or "", SUMMARY_LIMIT),
        published=_date(item.get("date_published")),
        updated=_date(item.get("date_modified")),
        author=_author(item),
        language=_str(item.get("language")),
    )


def parse_json_feed(content: bytes, ctx: FeedContext) -> ParsedFeed:
    """Parse a JSON Feed; ParseError for invalid JSON or JSON that is no JSON Feed."""
    try:
        doc = json.loads(content.decode(json.detect_encoding(content), errors="replace"))
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"invalid JSON ({describe(exc)})") from exc
    version = _str(doc.get("version")) if isinstance(doc, dict) else None
    if version is None or "jsonfeed.org/version/" not in version:
        raise ParseError("not a feed (JSON, but not a JSON Feed)")
    items = doc.get("items", [])
    if not isinstance(items, list):
        raise ParseError("invalid JSON Feed (items is not a list)")
    language = normalize_language(doc.get("language"))
    link = http_url(_str(doc.get("home_page_url")), ctx.url)
    raws = (_raw_entry(item) for item in items if isinstance(item, dict))
    return ParsedFeed(
        entries=build_entries(raws, ctx, language, base=link or ctx.url),
        title=plain_to_text(_str(doc.get("title")) or "") or None,
        link=link,
        language=language,
    )
