"""The digest stage: choosing a period's clusters, ranking them, rendering every format.

Headlines are written for these tests (German and English), including hostile ones:
markup, a `javascript:` URL, Markdown link syntax, terminal escape sequences.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import feedparser
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from aggregator.digest import build_digest, render
from aggregator.digest.records import SCHEMA
from aggregator.digest.render import markdown_escape, web_url
from aggregator.models import Cluster, Digest, Entry, Match

START = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
END = START + timedelta(days=1)
XSS = "<script>alert(1)</script>"
QUOTED = "„Wir schaffen das“ – Größter Übergang seit 1990"


def entry(entry_id: int, outlet: str, title: str, at: datetime, url: str | None = None) -> Entry:
    return Entry(
        guid=f"{outlet}/{entry_id}",
        url=url if url is not None else f"https://{outlet}/artikel/{entry_id}",
        canonical_url=None,
        title=title,
        summary="",
        published=at,
        outlet=outlet,
        language="de",
        id=entry_id,
    )


def cluster(cluster_id: int, *entries: Entry) -> Cluster:
    """A cluster as the clusterer leaves it: the first entry founds it, each later one
    matched the one before it."""
    ordered = sorted(entries, key=lambda e: e.published)
    matches = {}
    for index, member in enumerate(ordered):
        assert member.id is not None
        previous = ordered[index - 1].id if index else None
        score = 100.0 if previous is None else 80.0 + index
        reason = "founded" if previous is None else "title token_set 88"
        matches[member.id] = Match(member.id, cluster_id, previous, score, reason)
    return Cluster(cluster_id, list(entries), matches)


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def sample_clusters() -> list[Cluster]:
    """Four stories: three outlets, two outlets (one hostile), one outlet, and one outside."""
    return [
        cluster(
            10,
            entry(1, "tagesschau.de", "Bundestag beschließt Heizungsgesetz", at(2)),
            entry(2, "spiegel.de", "Heizungsgesetz: Bundestag stimmt zu", at(3)),
            entry(3, "zeit.de", "Bundestag beschließt das Heizungsgesetz", at(4)),
        ),
        cluster(
            11,
            entry(4, "news.de", f"Schock-Video {XSS} [Klick](https://evil.example)", at(5)),
            entry(5, "bild.de", QUOTED, at(6), url="javascript:alert(document.cookie)"),
        ),
        cluster(12, entry(6, "bbc.co.uk", "Storm Bert hits the Welsh coast", at(20))),
        cluster(13, entry(7, "faz.net", "Gestern: Sturm über Hamburg", at(-3))),
    ]


def sample_digest() -> Digest:
    return build_digest(
        sample_clusters(),
        name="daily",
        title="Tägliche Übersicht",
        period_start=START,
        period_end=END,
        generated_at=END + timedelta(minutes=5),
    )


# -- selection and ranking ----------------------------------------------------


def test_keeps_clusters_with_an_entry_in_the_period() -> None:
    assert [c.id for c in sample_digest().clusters] == [10, 11, 12]


def test_period_is_half_open_and_later_entries_are_dropped_with_their_matches() -> None:
    straddling = cluster(
        20,
        entry(1, "tagesschau.de", "Vorher", at(-2)),
        entry(2, "spiegel.de", "Am Anfang", START),
        entry(3, "zeit.de", "Genau am Ende", END),
    )
    only_at_end = cluster(21, entry(4, "taz.de", "Zu spät", END))
    digest = build_digest(
        [straddling, only_at_end],
        name="d",
        title="d",
        period_start=START,
        period_end=END,
        generated_at=END,
    )
    (kept,) = digest.clusters
    assert [e.title for e in kept.entries] == ["Vorher", "Am Anfang"]
    assert set(kept.matches) == {1, 2}
    assert len(straddling.entries) == 3, "the input cluster must not be changed"


def test_ranks_by_distinct_outlets_then_recency_then_id() -> None:
    same_outlet_thrice = cluster(
        30,
        *(entry(i, "tagesschau.de", f"Liveblog {i}", at(i)) for i in range(1, 4)),
    )
    two_outlets_old = cluster(
        31, entry(4, "spiegel.de", "Alt", at(1)), entry(5, "zeit.de", "Alt", at(2))
    )
    two_outlets_new = cluster(
        32, entry(6, "spiegel.de", "Neu", at(8)), entry(7, "zeit.de", "Neu", at(9))
    )
    twin = cluster(29, entry(8, "spiegel.de", "Neu", at(8)), entry(9, "zeit.de", "Neu", at(9)))
    digest = build_digest(
        [same_outlet_thrice, two_outlets_old, two_outlets_new, twin],
        name="d",
        title="d",
        period_start=START,
        period_end=END,
        generated_at=END,
    )
    assert [c.id for c in digest.clusters] == [29, 32, 31, 30]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (START.replace(tzinfo=None), END, "no time zone"),
        (END, START, "is not before its end"),
    ],
)
def test_rejects_a_bad_period(start: datetime, end: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_digest([], name="d", title="d", period_start=start, period_end=end, generated_at=END)


# -- JSON -----------------------------------------------------------------------


def test_json_is_the_complete_record_whatever_the_display_limits() -> None:
    data = json.loads(render(sample_digest(), "json", max_stories=1, min_outlets=3))
    assert data["schema"] == SCHEMA
    assert data["name"] == "daily"
    assert data["title"] == "Tägliche Übersicht"
    assert data["period"] == {"start": "2026-11-24T05:00:00Z", "end": "2026-11-25T05:00:00Z"}
    assert data["generated_at"] == "2026-11-25T05:05:00Z"
    assert [c["id"] for c in data["clusters"]] == [10, 11, 12]
    first = data["clusters"][0]
    assert {"id", "title", "outlets", "first_seen", "entries"} <= set(first)
    assert first["outlets"] == ["tagesschau.de", "spiegel.de", "zeit.de"]
    assert {"url", "title", "outlet", "published"} <= set(first["entries"][0])
    assert first["entries"][1]["matched"]["id"] == "tagesschau.de/1"
    hostile = data["clusters"][1]["entries"]
    assert hostile[1]["title"] == QUOTED
    assert XSS in hostile[0]["title"], "JSON keeps the text; escaping is the reader's job"


# -- HTML -----------------------------------------------------------------------


class PageParser(HTMLParser):
    """Collects what matters for safety and structure from a rendered page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.sections: list[str] = []
        self.sources: list[str] = []
        self.html_lang: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append(tag)
        if tag == "html":
            self.html_lang = found.get("lang")
        if tag == "a":
            self.links.append(found)
        if tag == "section":
            self.sections.append(found.get("id") or "")
        self.sources += [v or "" for k, v in attrs if k in ("src", "srcset")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_page(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def test_html_is_a_standalone_page_with_one_section_per_story_in_rank_order() -> None:
    page = parse_page(render(sample_digest(), "html", timezone="Europe/Berlin"))
    assert page.html_lang == "en"
    assert page.sections == ["story-10", "story-11", "story-12"]
    assert "style" in page.tags
    assert not {"script", "link", "img", "iframe"} & set(page.tags)
    assert page.sources == []
    text = " ".join(page.text)
    assert "Showing 3 of 3 stories" in text
    assert "prefers-color-scheme" in text
    assert "2026-11-24 08:00+01:00" in text, "the first report, in the digest's time zone"


def test_html_escapes_feed_text_and_links_only_web_urls() -> None:
    html = render(sample_digest(), "html")
    page = parse_page(html)
    assert "script" not in page.tags
    assert XSS not in html
    text = "".join(page.text)
    assert XSS in text, "the hostile headline is shown as text"
    assert QUOTED in text
    assert "javascript" not in html
    assert page.links
    for link in page.links:
        assert re.match(r"https?://", link["href"] or "")
        assert link["rel"] == "noopener noreferrer"
    assert "https://bild.de" not in html, "the javascript: entry is shown without a link"


def test_html_shows_why_each_entry_is_in_its_cluster() -> None:
    text = " ".join(parse_page(render(sample_digest(), "html")).text)
    assert "first report of this story" in text
    assert "matched tagesschau.de of 2026-11-24 07:00+00:00, score 81.0" in text


def test_display_limits_cut_stories_and_say_so() -> None:
    digest = sample_digest()
    page = parse_page(render(digest, "html", min_outlets=2, max_stories=1))
    assert page.sections == ["story-10"]
    assert "Showing 1 of 3 stories (reported by at least 2 outlets)" in " ".join(page.text)
    assert "story-11" not in render(digest, "md", max_stories=1)


# -- Markdown and plain text ---------------------------------------------------------


def markdown_links(text: str) -> list[str]:
    """Every link target a CommonMark renderer would produce from `text`."""
    html = MarkdownIt("commonmark").render(text)
    page = parse_page(html)
    assert "script" not in page.tags
    return [link["href"] or "" for link in page.links]


def test_markdown_renders_hostile_headlines_as_text() -> None:
    markdown = render(sample_digest(), "md")
    targets = markdown_links(markdown)
    assert targets
    assert all(re.match(r"https?://", target) for target in targets)
    assert "https://evil.example" not in targets
    rendered = MarkdownIt("commonmark").render(markdown)
    text = "".join(parse_page(rendered).text)
    assert f"Schock-Video {XSS} [Klick](https://evil.example)" in text
    assert QUOTED in text
    assert "Tägliche Übersicht" in text


@given(st.text(max_size=60))
@example("&amp; &#x6A; <b>x</b> *a* _b_ `c` [d](e) ![f](g) # h | i ~~j~~ \\k <http://x> #")
def test_markdown_escape_always_renders_back_to_the_same_text(text: str) -> None:
    line = " ".join(text.split())
    rendered = MarkdownIt("commonmark").renderInline("x " + markdown_escape(line))
    page = parse_page(rendered)
    assert page.tags == []
    assert "".join(page.text) == "x " + line.replace("\x00", "\ufffd")


def test_text_is_readable_and_clean_of_terminal_escapes() -> None:
    digest = sample_digest()
    digest.clusters[2].entries[0].title = "Storm \x1b[31mBert\x1b[0m hits\nthe coast"
    text = render(digest, "txt", timezone="Europe/Berlin")
    assert "\x1b" not in text
    assert "Storm [31mBert[0m hits the coast" in text
    assert QUOTED in text
    assert "https://tagesschau.de/artikel/1" in text
    assert "javascript" not in text
    lines = text.splitlines()
    assert lines[:2] == ["Tägliche Übersicht", "=" * len("Tägliche Übersicht")]
    assert "1. Bundestag beschließt Heizungsgesetz" in lines


def test_empty_digest_says_so() -> None:
    empty = build_digest(
        [], name="daily", title="Täglich", period_start=START, period_end=END, generated_at=END
    )
    for fmt in ("html", "md", "txt"):
        assert "No stories in this period." in render(empty, fmt)
    assert json.loads(render(empty, "json"))["clusters"] == []
    assert feedparser.parse(render(empty, "atom")).bozo == 0


# -- Atom -----------------------------------------------------------------------

ATOM = "{http://www.w3.org/2005/Atom}"


def test_atom_is_valid_and_round_trips_through_feedparser() -> None:
    document = render(sample_digest(), "atom")
    feed = feedparser.parse(document)
    assert feed.bozo == 0, feed.get("bozo_exception")
    assert feed.version == "atom10"
    assert feed.feed.id == "tag:aggregator-news.github.io,2026:digest/daily"
    assert feed.feed.title == "Tägliche Übersicht"
    assert feed.feed.author == "aggregator"
    assert feed.feed.updated == "2026-11-25T05:05:00Z"
    assert [e.id for e in feed.entries] == [
        f"tag:aggregator-news.github.io,2026:digest/daily/cluster/{n}" for n in (10, 11, 12)
    ]
    assert feed.entries[0].link.startswith("https://")
    assert feed.entries[1].title in (f"Schock-Video {XSS} [Klick](https://evil.example)", QUOTED)
    assert feed.entries[2].updated == "2026-11-25T01:00:00Z"


def test_atom_escapes_feed_text_and_links_only_web_urls() -> None:
    document = render(sample_digest(), "atom")
    assert "<script" not in document
    root = ET.fromstring(document)
    titles = [e.findtext(f"{ATOM}title") for e in root.iter(f"{ATOM}entry")]
    assert any(title and XSS in title for title in titles)
    for content in root.iter(f"{ATOM}content"):
        assert content.get("type") == "html"
        summary = parse_page(content.text or "")
        assert "script" not in summary.tags
        assert all(re.match(r"https?://", link["href"] or "") for link in summary.links)
    hostile = parse_page(next(root.iter(f"{ATOM}content")).text or "")
    assert len(hostile.links) == 3
    second = [c.text or "" for c in root.iter(f"{ATOM}content")][1]
    assert QUOTED in "".join(parse_page(second).text)
    assert len(parse_page(second).links) == 1, "the javascript: entry has no link"


def test_atom_entry_ids_are_stable_across_issues() -> None:
    tomorrow = build_digest(
        sample_clusters(),
        name="daily",
        title="Tägliche Übersicht",
        period_start=START + timedelta(hours=5),
        period_end=END + timedelta(hours=5),
        generated_at=END + timedelta(hours=6),
    )
    ids = {e.id for e in feedparser.parse(render(sample_digest(), "atom")).entries}
    later = {e.id for e in feedparser.parse(render(tomorrow, "atom")).entries}
    assert ids & later == {
        f"tag:aggregator-news.github.io,2026:digest/daily/cluster/{n}" for n in (11, 12)
    }


# -- arguments and helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://www.tagesschau.de/inland/a-100.html?x=1&y=2#k", None),
        ("http://news.de/a b(c)", "http://news.de/a%20b%28c%29"),
        ("https://zeit.de/größe", "https://zeit.de/gr%C3%B6%C3%9Fe"),
        ("  JavaScript:alert(1)", "rejected"),
        ("java\tscript:alert(1)", "rejected"),
        ("data:text/html,<b>x</b>", "rejected"),
        ("//evil.example/x", "rejected"),
        ("https://", "rejected"),
        ("http://[::1", "rejected"),
        (None, "rejected"),
    ],
)
def test_web_url(url: str | None, expected: str | None) -> None:
    result = web_url(url)
    if expected == "rejected":
        assert result is None
    else:
        assert result == (expected or url)


def test_rejects_unknown_format_and_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown digest format 'pdf'"):
        render(sample_digest(), "pdf")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        render(sample_digest(), "html", timezone="Mars/Olympus")


def test_a_lone_surrogate_is_kept_in_json_and_dropped_elsewhere() -> None:
    digest = sample_digest()
    digest.clusters[2].entries[0].title = "Sturm \ud800 Bert"
    as_json = render(digest, "json")
    as_json.encode("utf-8")
    assert json.loads(as_json)["clusters"][2]["title"] == "Sturm \ud800 Bert"
    for fmt in ("html", "md", "txt", "atom"):
        assert "Sturm Bert" in render(digest, fmt).encode("utf-8").decode("utf-8")


def test_story_headline_prefers_a_written_headline_without_outlet_suffix() -> None:
    from datetime import UTC, datetime, timedelta

    from aggregator.digest.records import cluster_record
    from aggregator.models import Cluster, Entry

    start = datetime(2026, 11, 24, 6, tzinfo=UTC)
    post = "Die EVG ruft für Donnerstag zum Warnstreik bei der Bahn auf. Der Fernverkehr steht."
    entries = [
        Entry(
            guid="m",
            url=None,
            canonical_url=None,
            title="Die EVG ruft für Donnerstag zum…",
            summary=post,
            published=start,
            outlet="@tagesschau@ard.social",
            id=1,
        ),
        Entry(
            guid="t",
            url=None,
            canonical_url=None,
            title="EVG ruft zum Warnstreik bei der Bahn auf | tagesschau.de",
            summary="",
            published=start + timedelta(minutes=5),
            outlet="tagesschau.de",
            id=2,
        ),
        Entry(
            guid="s",
            url=None,
            canonical_url=None,
            title="Bahn: EVG ruft zum Warnstreik auf",
            summary="",
            published=start + timedelta(minutes=9),
            outlet="spiegel.de",
            id=3,
        ),
    ]
    record = cluster_record(Cluster(id=1, entries=entries))
    assert record["title"] in (
        "EVG ruft zum Warnstreik bei der Bahn auf",
        "Bahn: EVG ruft zum Warnstreik auf",
    )


def test_each_outlets_line_shows_its_headline_without_the_outlet_name_beside_it() -> None:
    """ "**tagesschau.de**: … | tagesschau.de" says the outlet twice; the record keeps it."""
    entries = [
        entry(1, "tagesschau.de", "EVG ruft zum Warnstreik auf | tagesschau.de", START),
        entry(2, "news.de", "Bahn-Chaos droht! Warnstreik am Donnerstag - news.de", START),
        entry(3, "spiegel.de", "Warnstreik: Was Pendler wissen müssen - Eine Analyse", START),
    ]
    digest = build_digest(
        [Cluster(id=1, entries=entries)],
        name="daily",
        title="Tägliche Übersicht",
        period_start=START,
        period_end=END,
        generated_at=END,
    )
    for fmt in ("md", "txt", "html"):
        shown = render(digest, fmt)
        assert "| tagesschau.de" not in shown and "- news.de" not in shown, fmt
        assert "EVG ruft zum Warnstreik auf" in shown and "Bahn-Chaos droht!" in shown
        assert "Was Pendler wissen müssen - Eine Analyse" in shown  # not an outlet name
    titles = [e["title"] for e in json.loads(render(digest, "json"))["clusters"][0]["entries"]]
    assert "EVG ruft zum Warnstreik auf | tagesschau.de" in titles
