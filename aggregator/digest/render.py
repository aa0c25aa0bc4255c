"""A Digest as the text of one format: HTML, Markdown, plain text, JSON or Atom.

Feed text is untrusted: a headline may carry markup, a URL may be
``javascript:``. Everything is prepared here as plain strings (cleaned of
control characters, URLs reduced to http(s) or nothing) and every template
escapes on output: HTML and Atom through Jinja's autoescape, Markdown through
the `md` filter. No feed markup is ever passed through, so there is nothing
for a sanitizer such as nh3 to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aggregator.config import DIGEST_FORMATS
from aggregator.digest.records import digest_record, headline, isoformat, representative
from aggregator.models import Cluster, Digest, Entry

# Tag URIs (RFC 4151) need an authority and a date it was held; ids must never
# change, so both are fixed here rather than derived from the digest.
TAG_AUTHORITY = "aggregator-news.github.io,2026"

# Characters XML 1.0 forbids (and terminals would interpret, like ESC).
_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
# Markdown syntax that could start a link, image, HTML tag, code span or emphasis.
# `(` and `!` only matter next to `]` / `[`, which are escaped.
_MD_BACKSLASH = re.compile(r"([\\`*_\[\]#|~>])")
_MD_ENTITY_LIKE = re.compile(r"&(?=#?[A-Za-z0-9]+;)")
# Reserved URL characters kept as they are; everything else (spaces, quotes,
# parentheses, angle brackets, non-ASCII) is percent-encoded.
_URL_SAFE = "/:?#[]@!$&'*+,;=%~"


def clean(text: str | None) -> str:
    """One line of printable text: control characters dropped, whitespace runs collapsed."""
    return " ".join(_ILLEGAL.sub("", text or "").split())


def web_url(url: str | None) -> str | None:
    """The URL if it is http(s) with a host, percent-encoded so no format can misread it."""
    candidate = _ILLEGAL.sub("", url or "").strip()
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return quote(candidate, safe=_URL_SAFE)


def markdown_escape(text: str) -> str:
    """Feed text as Markdown that renders as exactly that text, never as markup.

    "<" becomes an entity so no renderer sees a tag; ">" only needs a backslash
    (it matters at a line start), which keeps "->" in the raw file readable.
    """
    text = _MD_ENTITY_LIKE.sub("&amp;", text)
    text = text.replace("<", "&lt;")
    return _MD_BACKSLASH.sub(r"\\\1", text)


def tag_uri(name: str, cluster_id: int | None = None) -> str:
    """Stable Atom ids: the same story keeps its id in every issue of a digest."""
    uri = f"tag:{TAG_AUTHORITY}:digest/{quote(name, safe='')}"
    return uri if cluster_id is None else f"{uri}/cluster/{cluster_id}"


def zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (expected e.g. Europe/Berlin)") from None


@dataclass(frozen=True)
class Moment:
    """A time as shown to readers (ISO 8601 with the offset, to the minute) and to machines."""

    text: str
    iso: str

    @classmethod
    def of(cls, moment: datetime, where: tzinfo) -> Moment:
        local = moment.astimezone(where)
        return cls(local.isoformat(sep=" ", timespec="minutes"), local.isoformat())


@dataclass(frozen=True)
class EntryView:
    outlet: str
    title: str
    url: str | None
    time: Moment
    lang: str | None
    why: str | None


@dataclass(frozen=True)
class StoryView:
    rank: int
    id: int
    atom_id: str
    headline: str
    lang: str | None
    url: str | None
    outlet_count: int
    first_outlet: str
    first_time: Moment
    published: str
    updated: str
    entries: list[EntryView]


@dataclass(frozen=True)
class DigestView:
    name: str
    title: str
    feed_id: str
    start: Moment
    end: Moment
    generated: Moment
    generated_utc: str
    timezone: str
    shown: int
    total: int
    min_outlets: int
    stories: list[StoryView]

    @property
    def counts(self) -> str:
        """The line "Showing 3 of 12 stories", naming the outlet threshold if there is one."""
        line = f"Showing {self.shown} of {self.total} stories"
        if self.min_outlets > 1:
            line += f" (reported by at least {self.min_outlets} outlets)"
        return line


def _language(entry: Entry) -> str | None:
    return entry.language if entry.language and _LANGUAGE_TAG.match(entry.language) else None


def _why(entry: Entry, cluster: Cluster, by_id: dict[int, Entry], where: tzinfo) -> str | None:
    """Why the entry is in the cluster, from the clusterer's recorded match."""
    match = cluster.matches.get(entry.id) if entry.id is not None else None
    if match is None:
        return None
    if match.matched_id is None:
        return "first report of this story"
    matched = by_id.get(match.matched_id)
    target = (
        f"{clean(matched.outlet)} of {Moment.of(matched.published, where).text}"
        if matched is not None
        else "an entry outside this period"
    )
    reason = f" ({clean(match.reason)})" if clean(match.reason) else ""
    return f"matched {target}, score {match.score:.1f}{reason}"


def story_view(rank: int, name: str, cluster: Cluster, where: tzinfo) -> StoryView:
    ordered = sorted(cluster.entries, key=lambda e: (e.published, e.id or 0))
    by_id = {entry.id: entry for entry in ordered if entry.id is not None}
    lead = representative(cluster)
    first = cluster.first
    urls = [web_url(entry.link) for entry in (lead, *ordered)]
    entries = [
        EntryView(
            outlet=clean(entry.outlet),
            title=clean(headline(entry)) or "(untitled)",
            url=web_url(entry.link),
            time=Moment.of(entry.published, where),
            lang=_language(entry),
            why=_why(entry, cluster, by_id, where),
        )
        for entry in ordered
    ]
    return StoryView(
        rank=rank,
        id=cluster.id,
        atom_id=tag_uri(name, cluster.id),
        headline=clean(headline(lead)) or "(untitled)",
        lang=_language(lead),
        url=next((url for url in urls if url is not None), None),
        outlet_count=len(cluster.outlets),
        first_outlet=clean(first.outlet),
        first_time=Moment.of(first.published, where),
        published=isoformat(first.published),
        updated=isoformat(cluster.last_published),
        entries=entries,
    )


def digest_view(
    digest: Digest, *, max_stories: int | None, min_outlets: int, timezone: str
) -> DigestView:
    """What the display formats show: the digest's order, cut by the display limits."""
    if max_stories is not None and max_stories < 0:
        raise ValueError(f"max_stories must be 0 or more (got {max_stories})")
    where = zone(timezone)
    eligible = [c for c in digest.clusters if len(c.outlets) >= min_outlets]
    shown = eligible if max_stories is None else eligible[:max_stories]
    return DigestView(
        name=digest.name,
        title=clean(digest.title) or digest.name,
        feed_id=tag_uri(digest.name),
        start=Moment.of(digest.period_start, where),
        end=Moment.of(digest.period_end, where),
        generated=Moment.of(digest.generated_at, where),
        generated_utc=isoformat(digest.generated_at),
        timezone=timezone,
        shown=len(shown),
        total=len(digest.clusters),
        min_outlets=min_outlets,
        stories=[
            story_view(rank, digest.name, cluster, where)
            for rank, cluster in enumerate(shown, start=1)
        ],
    )


_ENV = Environment(
    loader=PackageLoader("aggregator", "templates"),
    autoescape=select_autoescape(
        enabled_extensions=("html.j2", "atom.j2"), disabled_extensions=("md.j2", "txt.j2")
    ),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["md"] = markdown_escape


def render(
    digest: Digest,
    fmt: str,
    *,
    max_stories: int | None = None,
    min_outlets: int = 1,
    timezone: str = "UTC",
) -> str:
    """The digest in format `fmt`; JSON ignores the display limits (it is the full record)."""
    if fmt not in DIGEST_FORMATS:
        raise ValueError(
            f"unknown digest format {fmt!r} (expected one of {', '.join(DIGEST_FORMATS)})"
        )
    if fmt == "json":
        text = json.dumps(digest_record(digest), ensure_ascii=False, indent=2) + "\n"
        # A JSON Feed can smuggle a lone surrogate (U+D800) into a title; UTF-8 cannot
        # hold it, but inside a JSON string its backslash form is the same character.
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    view = digest_view(digest, max_stories=max_stories, min_outlets=min_outlets, timezone=timezone)
    return _ENV.get_template(f"digest.{fmt}.j2").render(digest=view)
