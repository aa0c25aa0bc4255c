"""RSS 0.9x/1.0 (RDF)/2.0 and Atom: fast.py for well-formed feeds, else feedparser.

Well-formed feeds of the usual shapes are read by fast.py (lxml and feedparser's
own rules, several times faster); every other document goes to feedparser, which
is given the bytes together with the response headers, so its encoding detection
can weigh the HTTP charset against the XML declaration and sniff undeclared
encodings. Its HTML sanitizer and relative-URI rewriting are switched off: they
run a second parser over every content field, and this stage reduces all markup
to plain text anyway. Both readers hand over the same fields, and everything after
that is shared.
"""

from __future__ import annotations

import io
import re
import xml.sax
from collections.abc import Mapping
from typing import Any, Literal

import feedparser

from aggregator.models import ParsedFeed
from aggregator.parse import fast
from aggregator.parse.html import html_to_text, plain_to_text
from aggregator.parse.normalize import (
    SUMMARY_LIMIT,
    FeedContext,
    ParseError,
    RawEntry,
    build_entries,
    describe,
    from_struct_time,
    normalize_language,
)
from aggregator.parse.urls import http_url

# sy:updatePeriod -> seconds (RSS 1.0 syndication module).
SY_PERIODS = {
    "hourly": 3600,
    "daily": 86_400,
    "weekly": 7 * 86_400,
    "monthly": 30 * 86_400,
    "yearly": 365 * 86_400,
}
MAX_TTL = 365 * 86_400

_INTERNAL_ENTITY = re.compile(rb"<!ENTITY\s+(?:%\s+)?\S+\s+(?:\"([^\"]*)\"|'([^']*)')")
_HARMLESS_ENTITY_VALUE = re.compile(rb"&#x?[0-9a-fA-F]+;|[^&%<]{0,64}")
_HTML_PAGE = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)


Reader = Literal["auto", "fast", "feedparser"]


class FastPathDeclined(ParseError):
    """`parse_xml(..., reader="fast")` on a document the fast path does not take."""


def parse_xml(
    content: bytes, content_type: str | None, ctx: FeedContext, reader: Reader = "auto"
) -> ParsedFeed:
    """Parse an XML feed; ParseError if the document is not one.

    `reader` forces one path ("fast" raises FastPathDeclined where it would fall
    back), so tests and benchmarks can compare the two on the same documents.
    """
    _refuse_expanding_entities(content)
    # Without a content type feedparser flags every document as bozo; generic
    # XML lets the XML declaration decide the encoding, as for a file on disk.
    headers = {"content-location": ctx.url, "content-type": content_type or "application/xml"}
    # Whitespace before "<?xml" (PHP templates) is a fatal error for expat and
    # would send the whole document to feedparser's slower, lossier loose parser.
    stripped = content.lstrip(b" \t\r\n")
    if stripped.startswith(b"<?xml"):
        content = stripped
    document = fast.read(content, headers) if reader != "feedparser" else None
    if document is None:
        if reader == "fast":
            raise FastPathDeclined("the fast path does not take this document")
        document = _read_with_feedparser(content, headers)
    return _parsed_feed(document, content, ctx)


def _read_with_feedparser(content: bytes, headers: dict[str, str]) -> fast.Document:
    try:
        # A file-like object, never bytes: feedparser tries to open() bytes as a path.
        result = feedparser.parse(
            io.BytesIO(content),
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser on hostile input; see parse_feed's contract
        raise ParseError(f"unreadable XML ({type(exc).__name__}: {describe(exc)})") from exc
    return fast.Document(
        feed=result.get("feed") or {},
        entries=result.get("entries") or [],
        version=result.get("version") or "",
        problem=result.get("bozo_exception") if result.get("bozo") else None,
    )


def _parsed_feed(document: fast.Document, content: bytes, ctx: FeedContext) -> ParsedFeed:
    feed, problem = document.feed, document.problem
    language = normalize_language(feed.get("language")) or _detail_language(feed, "title")
    link = http_url(feed.get("link"), ctx.url)
    raws = (_raw_entry(item) for item in document.entries)
    entries = build_entries(raws, ctx, language, link or ctx.url)
    if not entries:
        _reject_empty(content, document.version, problem)
    return ParsedFeed(
        entries=entries,
        title=_text(feed, "title") or None,
        link=link,
        language=language,
        ttl_seconds=_ttl_seconds(feed),
        warning=_describe(problem) if problem is not None else None,
    )


def _refuse_expanding_entities(content: bytes) -> None:
    """Refuse DTD entities that could expand a small document into gigabytes.

    feedparser strips entity declarations only when each starts its own line,
    and expat's own amplification limit still lets ~8 MB of text through its
    callbacks (seconds of work per document). Real feeds declare at most
    character references ("&#160;") or short literals, which stay allowed.
    External entities are left alone: expat is told not to load them.
    """
    if b"<!ENTITY" not in content and b"\x00" not in content[:4]:
        return
    probe = content.replace(b"\x00", b"")  # makes UTF-16/32 markup searchable
    for match in _INTERNAL_ENTITY.finditer(probe):
        value = match.group(1) or match.group(2) or b""
        if not _HARMLESS_ENTITY_VALUE.fullmatch(value):
            raise ParseError("refused: DTD declares an expanding entity (entity expansion attack)")


def _reject_empty(content: bytes, version: str, problem: object) -> None:
    """Tell a valid feed without items (fine) from a document that is no feed."""
    if not version and _HTML_PAGE.search(content, 0, 4096):
        raise ParseError("not a feed (got an HTML page)")
    if problem is not None and not isinstance(problem, feedparser.ThingsNobodyCaresAboutButMe):
        raise ParseError(f"not well-formed XML ({_describe(problem)})")
    if not version:
        raise ParseError("not a feed (no RSS, Atom or RDF root element)")


def _describe(problem: object) -> str:
    if isinstance(problem, xml.sax.SAXParseException):
        return f"line {problem.getLineNumber()}: {problem.getMessage()}"
    return describe(problem)


def _text(node: Mapping[str, Any], key: str, limit: int | None = None) -> str:
    """Plain text of a feedparser text construct (`key` and `key_detail`)."""
    return _construct_text(node.get(key), node.get(f"{key}_detail"), limit)


def _construct_text(value: object, detail: Mapping[str, Any] | None, limit: int | None) -> str:
    """Plain text of one value, honouring its declared type (HTML or plain text).

    Without a type the value is treated as HTML: feedparser copies content:encoded
    into `summary` without a `summary_detail`, and stripping tags from text that
    has none changes nothing.
    """
    if not isinstance(value, str):
        return ""
    if "html" in ((detail or {}).get("type") or "text/html"):
        return html_to_text(value, limit)
    return plain_to_text(value)


def _content_text(item: Mapping[str, Any]) -> str:
    """First non-empty <content> / content:encoded, for items without a summary."""
    for content in item.get("content") or ():
        text = _construct_text(content.get("value"), content, SUMMARY_LIMIT)
        if text:
            return text
    return ""


def _detail_language(node: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        detail = node.get(f"{key}_detail") or {}
        language = normalize_language(detail.get("language"))
        if language:
            return language
    return None


def _raw_entry(item: Mapping[str, Any]) -> RawEntry:
    author = (item.get("author_detail") or {}).get("name") or item.get("author")
    link = item.get("link")
    return RawEntry(
        id=item.get("id") if isinstance(item.get("id"), str) else None,
        link=link if isinstance(link, str) else None,
        title=_text(item, "title"),
        summary=_text(item, "summary", SUMMARY_LIMIT) or _content_text(item),
        published=from_struct_time(item.get("published_parsed")),
        # `in` first: feedparser's get() falls back to published_parsed, with a warning
        updated=from_struct_time(item["updated_parsed"]) if "updated_parsed" in item else None,
        author=plain_to_text(author) if isinstance(author, str) else None,
        language=_detail_language(item, "title", "summary"),
    )


def _positive_int(value: object) -> int | None:
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _ttl_seconds(feed: Mapping[str, Any]) -> int | None:
    """Polling hint from RSS <ttl> (minutes), else sy:updatePeriod/updateFrequency."""
    seconds: int | None = None
    minutes = _positive_int(feed.get("ttl"))
    if minutes is not None:
        seconds = minutes * 60
    elif "sy_updateperiod" in feed or "sy_updatefrequency" in feed:
        period = SY_PERIODS.get(str(feed.get("sy_updateperiod", "daily")).strip().lower())
        frequency = _positive_int(feed.get("sy_updatefrequency", 1))
        if period is not None and frequency is not None:
            seconds = period // frequency
    return seconds if seconds and seconds <= MAX_TTL else None
