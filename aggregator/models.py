"""Plain data that travels between the stages.

No I/O here: every stage takes and returns these, so each stage can be tested
and benchmarked on its own, and `store` is the only place that knows how they
map to tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Outlet:
    """A publisher; several feeds may belong to one outlet."""

    name: str
    language: str | None = None
    home_url: str | None = None

    @classmethod
    def for_feed(cls, url: str, name: str | None = None) -> Outlet:
        """`name`, else the feed's host without ``www.``, else the URL (``file:`` feeds).

        One rule for the CLI, OPML imports and the dashboard, so a feed added
        anywhere joins the same outlet.
        """
        host = (urlsplit(url).hostname or "").removeprefix("www.")
        return cls(name or host or url)


@dataclass
class Feed:
    """A feed URL and everything the fetcher remembers between fetches."""

    url: str
    outlet: str
    id: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_fetched_at: datetime | None = None
    next_fetch_at: datetime | None = None
    interval_seconds: int = 3600
    consecutive_errors: int = 0
    last_status: str | None = None
    last_error: str | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    title: str | None = None
    language: str | None = None
    # When the current run of failures began; None while the feed works.
    failing_since: datetime | None = None


class FetchStatus(enum.StrEnum):
    """What one fetch of a feed came to; stored as `feeds.last_status`."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"
    GONE = "gone"


@dataclass
class FetchResult:
    """The outcome of one HTTP exchange with a feed, before any parsing."""

    url: str
    status: FetchStatus
    http_status: int | None = None
    content: bytes | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    # Set when the server answered with a permanent redirect (301/308): the
    # feed's stored URL moves there.
    permanent_url: str | None = None
    # Set by 429/503 Retry-After, or by caching headers the server sent.
    retry_after: datetime | None = None
    error: str | None = None
    elapsed_seconds: float = 0.0
    bytes_read: int = 0


@dataclass
class Entry:
    """One item of a feed, normalized: plain text, UTC times, canonical URL."""

    guid: str
    url: str | None
    canonical_url: str | None
    title: str
    summary: str
    published: datetime
    # True when the feed gave no usable date and `published` is the time the
    # entry was first seen.
    published_estimated: bool = False
    author: str | None = None
    language: str | None = None
    content_hash: str = ""
    outlet: str = ""
    id: int | None = None
    feed_id: int | None = None
    cluster_id: int | None = None

    @property
    def link(self) -> str | None:
        """The URL shown to readers: the canonical one, without tracking parameters."""
        return self.canonical_url or self.url


@dataclass
class ParsedFeed:
    """What `parse` makes of one document."""

    entries: list[Entry]
    title: str | None = None
    link: str | None = None
    language: str | None = None
    # Publisher hints about polling (RSS <ttl>, sy:updatePeriod), in seconds.
    ttl_seconds: int | None = None
    # feedparser's "bozo" warning for a document that parsed despite errors.
    warning: str | None = None


@dataclass(frozen=True)
class Item:
    """What the matcher needs of an entry (`Store.unclustered_items` reads just this)."""

    id: int
    outlet: str
    title: str
    summary: str
    published: datetime
    canonical_url: str | None = None
    language: str | None = None

    @classmethod
    def from_entry(cls, entry: Entry) -> Item:
        """The matcher's view of an entry; the entry needs its id (stored, or numbered)."""
        if entry.id is None:
            raise ValueError("only entries with an id can be clustered")
        return cls(
            id=entry.id,
            outlet=entry.outlet,
            title=entry.title,
            summary=entry.summary,
            published=entry.published,
            canonical_url=entry.canonical_url,
            language=entry.language,
        )


@dataclass(frozen=True)
class Match:
    """Why an entry sits in its cluster: the member it matched and the score.

    `matched_id` is None for the entry that founded the cluster.
    """

    entry_id: int
    cluster_id: int
    matched_id: int | None
    score: float
    reason: str


@dataclass
class Cluster:
    """A story: entries from one or more outlets about the same event."""

    id: int
    entries: list[Entry] = field(default_factory=list)
    matches: dict[int, Match] = field(default_factory=dict)

    @property
    def outlets(self) -> list[str]:
        """Distinct outlets in order of first publication."""
        seen: dict[str, None] = {}
        for entry in sorted(self.entries, key=lambda e: e.published):
            seen.setdefault(entry.outlet, None)
        return list(seen)

    @property
    def first(self) -> Entry:
        """The entry published first: who reported first."""
        return min(self.entries, key=lambda e: (e.published, e.id or 0))

    @property
    def last_published(self) -> datetime:
        return max(e.published for e in self.entries)


@dataclass
class Digest:
    """Clusters selected for one named digest and period, ready to render."""

    name: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    clusters: list[Cluster]
    title: str = ""
