"""parse: the bytes of a fetched document -> normalized entries.

The one entry point is `parse_feed`. It picks the reader (JSON Feed, else XML via
feedparser) and promises callers a single failure type: whatever a hostile or
broken document does inside the readers, the pipeline sees a `ParseError` with
a short reason it can store as the feed's last error.
"""

from __future__ import annotations

from datetime import datetime

from aggregator.models import ParsedFeed
from aggregator.parse.feeds import parse_xml
from aggregator.parse.jsonfeed import is_json, parse_json_feed
from aggregator.parse.normalize import FeedContext, ParseError, describe
from aggregator.parse.urls import canonical_url

__all__ = ["ParseError", "canonical_url", "parse_feed"]


def parse_feed(
    content: bytes,
    *,
    url: str,
    content_type: str | None,
    outlet: str,
    outlet_language: str | None,
    now: datetime,
) -> ParsedFeed:
    """Entries of the feed document `content`, fetched from `url`.

    `content_type` is the response's Content-Type header (its charset matters);
    `outlet_language` is the language assumed where the feed names none; `now`
    stands in for missing dates and caps dates in the future.

    Raises ParseError when the document is empty, not a feed (an HTML page, JSON
    that is no JSON Feed), or broken XML from which no entry could be read. A
    valid feed without items returns no entries.
    """
    if not content.strip():
        raise ParseError("empty document")
    ctx = FeedContext(url=url, outlet=outlet, outlet_language=outlet_language, now=now)
    try:
        if is_json(content, content_type):
            return parse_json_feed(content, ctx)
        return parse_xml(content, content_type, ctx)
    except ParseError:
        raise
    except Exception as exc:  # the contract: hostile input never escapes as another type
        raise ParseError(f"unreadable feed ({type(exc).__name__}: {describe(exc)})") from exc
