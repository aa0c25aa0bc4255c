"""Feed discovery: from a site's home page to the feeds it offers.

`feeds add https://www.tagesschau.de/` should not need the user to dig for the
RSS link. The page is fetched like any feed (same client, limits, size cap and
SSRF guard, redirects checked hop by hop), then, in this order:

1. the URL already is a feed: it is the answer;
2. ``<link rel="alternate">`` elements with a feed type in the page's head;
3. otherwise the common paths (/feed, /rss.xml, ...) are tried, and those that
   answer with a feed document are kept.

Whether a document is a feed is sniffed from its first bytes (root element or
JSON Feed version), not parsed: fetch must not depend on the parse stage, and a
wrong guess only costs the user one failing feed.
"""

from __future__ import annotations

import asyncio
import codecs
import html
import json
import re
from html.parser import HTMLParser
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from aggregator.config import FetchSettings
from aggregator.fetch.client import RequestSlots, fetch_feed, make_client
from aggregator.models import Feed, FetchResult, FetchStatus

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/x-rss+xml",
        "application/x.atom+xml",
        "application/x-atom+xml",
    }
)
COMMON_PATHS = ("feed", "rss", "rss.xml", "atom.xml", "index.xml", "feed.xml", "feed.json")

_SNIFF_BYTES = 4096
_XML_FEED_ROOT = re.compile(rb"<(?:[\w-]+:)?(?:rss|feed|RDF)[\s>/]")
_HTML_ROOT = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)
_JSON_FEED = re.compile(rb'"version"\s*:\s*"https?://jsonfeed\.org/version/')
_XML_TITLE = re.compile(rb"<title[^>]*>\s*(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?\s*</title>", re.DOTALL)
_JSON_TITLE = re.compile(rb'"title"\s*:\s*"((?:[^"\\]|\\.){0,300})"')
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w-]+)""", re.IGNORECASE)


class FoundFeed(NamedTuple):
    """A feed a site offers; `title` as the site labels it, if it does."""

    url: str
    title: str | None


class DiscoveryError(ValueError):
    """The page itself could not be fetched; str() names the URL and the reason."""


async def discover_feeds(url: str, settings: FetchSettings) -> list[FoundFeed]:
    """The feeds offered at `url` (a feed, or a page linking to feeds), in the site's order.

    An empty list means the page was read but names no feed and none of the
    common paths holds one. Raises DiscoveryError when the page cannot be fetched.
    """
    slots = RequestSlots.from_settings(settings)
    async with make_client(settings) as client:

        async def get(target: str) -> FetchResult:
            return await fetch_feed(client, Feed(url=target, outlet=""), settings, slots=slots)

        page = await get(url)
        if page.status is not FetchStatus.OK or page.content is None:
            raise DiscoveryError(f"{url}: {page.error or 'no content'}")
        if is_feed_document(page.content):
            return [FoundFeed(page.url, feed_title(page.content))]
        linked = feed_links(page.content, page.url, page.content_type)
        if linked:
            return linked
        candidates = common_candidates(page.url)
        probes = await asyncio.gather(*(get(candidate) for candidate in candidates))
    found: dict[str, FoundFeed] = {}
    for probe in probes:
        if probe.status is FetchStatus.OK and probe.content and is_feed_document(probe.content):
            found.setdefault(probe.url, FoundFeed(probe.url, feed_title(probe.content)))
    return list(found.values())


def is_feed_document(content: bytes) -> bool:
    """Whether `content` starts like an RSS, Atom, RDF or JSON Feed document."""
    head = content[:_SNIFF_BYTES].replace(b"\x00", b"")  # UTF-16 markup becomes searchable
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return _JSON_FEED.search(head) is not None
    return _HTML_ROOT.search(head) is None and _XML_FEED_ROOT.search(head) is not None


def feed_title(content: bytes) -> str | None:
    """The first title of a feed document, for showing the user what was found."""
    head = content[:_SNIFF_BYTES].replace(b"\x00", b"")
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        match = _JSON_TITLE.search(head)
        if match is None:
            return None
        try:
            text = json.loads(b'"' + match.group(1) + b'"')
        except ValueError:
            return None
    else:
        match = _XML_TITLE.search(head)
        if match is None:
            return None
        text = html.unescape(match.group(1).decode("utf-8", "replace"))
    return _clean(text) or None


def feed_links(content: bytes, base: str, content_type: str | None = None) -> list[FoundFeed]:
    """The feeds a page announces with <link rel="alternate" type="...">, absolute, deduplicated.

    Only http(s) targets are kept: a javascript: or data: "feed" is nothing to subscribe to.
    """
    finder = _LinkFinder()
    text = content.decode(_charset(content, content_type), "replace")
    for start in range(0, len(text), 65536):
        finder.feed(text[start : start + 65536])
        if finder.in_body:
            break  # links belong in the head; the rest of a large page is not needed
    found: dict[str, FoundFeed] = {}
    page_base = urljoin(base, finder.base) if finder.base else base
    for href, title in finder.links:
        absolute = urljoin(page_base, href.strip())
        if urlsplit(absolute).scheme in ("http", "https"):
            found.setdefault(absolute, FoundFeed(absolute, title))
    return list(found.values())


def common_candidates(page_url: str) -> list[str]:
    """Common feed locations at the site's root and, for a page deeper down, beside it."""
    roots = [urljoin(page_url, "/")]
    directory = urljoin(page_url, ".")
    if directory not in roots:
        roots.append(directory)
    return [urljoin(root, path) for root in roots for path in COMMON_PATHS]


class _LinkFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str | None]] = []
        self.base: str | None = None
        self.in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "body":
            self.in_body = True
        elif tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "link" and _is_feed_link(values):
            self.links.append((values["href"], _clean(values.get("title", "")) or None))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def _is_feed_link(values: dict[str, str]) -> bool:
    rels = values.get("rel", "").lower().split()
    kind = values.get("type", "").split(";")[0].strip().lower()
    return "alternate" in rels and kind in FEED_TYPES and bool(values.get("href", "").strip())


def _charset(content: bytes, content_type: str | None) -> str:
    """The page's encoding: HTTP header, else <meta charset>, else UTF-8; unknown ones too."""
    declared: str | None
    if content_type and "charset=" in content_type.lower():
        declared = content_type.lower().split("charset=")[-1].split(";")[0].strip(" \"'")
    else:
        match = _META_CHARSET.search(content[:_SNIFF_BYTES])
        declared = match.group(1).decode("ascii") if match else None
    try:
        return codecs.lookup(declared).name if declared else "utf-8"
    except LookupError:
        return "utf-8"


def _clean(text: str) -> str:
    """One line without control characters, as titles are shown in a terminal."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
