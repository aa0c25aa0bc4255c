"""Feed discovery against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest
from feedserver import FeedServer
from test_fetch import make_settings

from aggregator.config import FetchSettings
from aggregator.fetch.discover import (
    DiscoveryError,
    FoundFeed,
    common_candidates,
    discover_feeds,
    feed_links,
    is_feed_document,
)

HTML = "text/html; charset=utf-8"
RSS = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
    "<title>tagesschau.de - Nachrichten</title><item><title>Eins</title></item></channel></rss>"
)
ATOM = '<feed xmlns="http://www.w3.org/2005/Atom"><title>Blog &amp; Mehr</title></feed>'
JSON_FEED = '{"version": "https://jsonfeed.org/version/1.1", "title": "Zeit \\"Online\\""}'


def discover(url: str, settings: FetchSettings | None = None) -> list[FoundFeed]:
    return asyncio.run(discover_feeds(url, settings or make_settings()))


def page(head: str, body: str = "") -> str:
    return f"<!DOCTYPE html><html><head><title>Seite</title>{head}</head><body>{body}</body></html>"


def test_link_alternate_in_page_order(feed_server: FeedServer) -> None:
    head = (
        '<link rel="alternate" type="application/rss+xml" title="Alle Meldungen" href="/rss.xml">'
        '<link rel="stylesheet" href="/style.css">'
        '<link rel="alternate" type="text/xml+oembed" href="/oembed">'
        '<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/5">'
        '<link rel="Alternate Home" type="application/atom+xml" href="atom/">'
        '<link rel="alternate" type="application/feed+json" href="//127.0.0.1/feed.json">'
        '<link rel="alternate" type="application/rss+xml" href="/rss.xml">'  # duplicate
        '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">'
    )
    url = feed_server.add("/de/index.html", page(head), content_type=HTML)
    found = discover(url)
    assert found == [
        FoundFeed(feed_server.url("/rss.xml"), "Alle Meldungen"),
        FoundFeed(feed_server.url("/de/atom/"), None),
        FoundFeed("http://127.0.0.1/feed.json", None),
    ]
    assert feed_server.hits("/rss.xml") == 0  # linked feeds are offered, not probed


def test_base_href_and_redirected_page(feed_server: FeedServer) -> None:
    head = '<base href="/news/"><link rel="alternate" type="application/rss+xml" href="feed">'
    feed_server.add("/start/", page(head), content_type=HTML)
    feed_server.redirect("/", "/start/", status=302)
    assert discover(feed_server.url("/")) == [FoundFeed(feed_server.url("/news/feed"), None)]


def test_a_feed_url_is_its_own_answer(feed_server: FeedServer) -> None:
    url = feed_server.add("/rss", RSS)
    assert discover(url) == [FoundFeed(url, "tagesschau.de - Nachrichten")]


def test_common_paths_are_probed_when_the_page_names_none(feed_server: FeedServer) -> None:
    url = feed_server.add("/", page(""), content_type=HTML)
    feed_server.add("/feed", "<html><body>not a feed</body></html>", content_type=HTML)
    feed_server.add("/atom.xml", ATOM, content_type="application/atom+xml")
    feed_server.add("/feed.json", JSON_FEED, content_type="application/feed+json")
    feed_server.add("/rss.xml", "", status=500)
    feed_server.redirect("/index.xml", "/atom.xml", status=301)  # same feed twice
    found = discover(url)
    assert found == [
        FoundFeed(feed_server.url("/atom.xml"), "Blog & Mehr"),
        FoundFeed(feed_server.url("/feed.json"), 'Zeit "Online"'),
    ]


def test_nothing_found_is_an_empty_list(feed_server: FeedServer) -> None:
    url = feed_server.add("/", page(""), content_type=HTML)
    assert discover(url) == []


def test_unreachable_page_is_an_error_naming_it(feed_server: FeedServer) -> None:
    url = feed_server.url("/missing")
    with pytest.raises(DiscoveryError, match=r"/missing: HTTP 404"):
        discover(url)


def test_ssrf_guard_applies_to_discovery(feed_server: FeedServer) -> None:
    url = feed_server.add("/", page(""), content_type=HTML)
    with pytest.raises(DiscoveryError, match="loopback"):
        discover(url, make_settings(allow_private_addresses=False))


def test_page_over_the_size_cap_is_refused(feed_server: FeedServer) -> None:
    url = feed_server.add("/", page("", "x" * 5000), content_type=HTML)
    with pytest.raises(DiscoveryError, match="larger than 1 KiB"):
        discover(url, make_settings(max_bytes=1024))


def test_latin1_page_title() -> None:
    content = page(
        '<meta charset="iso-8859-1">'
        '<link rel="alternate" type="application/rss+xml" title="Gr\xfc\xdfe" href="/f">'
    ).encode("latin-1")
    assert feed_links(content, "https://a.de/") == [FoundFeed("https://a.de/f", "Grüße")]


def test_links_in_the_body_of_a_long_page_are_not_searched_for() -> None:
    body = "<p>text</p>" * 20000 + '<link rel="alternate" type="application/rss+xml" href="/x">'
    assert feed_links(page("", body).encode(), "https://a.de/") == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (RSS.encode(), True),
        (ATOM.encode(), True),
        (JSON_FEED.encode(), True),
        (b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="x"></rdf:RDF>', True),
        (RSS.encode("utf-16"), True),
        (b"<!doctype html><html><head><link rel=alternate type=application/rss+xml>", False),
        (b'{"title": "no json feed"}', False),
        (b"", False),
    ],
)
def test_is_feed_document(content: bytes, expected: bool) -> None:
    assert is_feed_document(content) is expected


def test_common_candidates() -> None:
    assert common_candidates("https://a.de/")[:2] == ["https://a.de/feed", "https://a.de/rss"]
    deep = common_candidates("https://a.de/blog/post.html")
    assert "https://a.de/rss.xml" in deep and "https://a.de/blog/rss.xml" in deep
