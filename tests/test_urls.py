"""URL canonicalization: the key that recognises one article behind many links."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
from feedparser.urls import _urljoin
from hypothesis import given
from hypothesis import strategies as st

from aggregator.parse import canonical_url, urls
from aggregator.parse.urls import http_url, is_tracking_param, joins_to_itself


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # scheme and host lower-cased, default ports dropped, path case kept
        (
            "HTTPS://WWW.Tagesschau.DE:443/Inland/Artikel.html",
            "https://www.tagesschau.de/Inland/Artikel.html",
        ),
        ("http://example.de:80/a", "http://example.de/a"),
        ("http://example.de:8080/a", "http://example.de:8080/a"),
        ("https://example.de:80/a", "https://example.de:80/a"),
        # tracking parameters removed, others kept in their order and spelling
        (
            "https://www.spiegel.de/politik/a-123?utm_source=twitter&b=2&utm_medium=social&a=1",
            "https://www.spiegel.de/politik/a-123?b=2&a=1",
        ),
        (
            "https://x.de/p?fbclid=1&gclid=2&dclid=3&msclkid=4&mc_cid=5&mc_eid=6&id=9",
            "https://x.de/p?id=9",
        ),
        (
            "https://x.de/p?wt_mc=rss.x&wt_zmc=a&WT.mc_id=b&ref=tw&ref_src=twsrc&seite=3",
            "https://x.de/p?seite=3",
        ),
        (
            "https://x.de/p?at_medium=rss&at_campaign=c&ns_mchannel=x&ns_source=y&xtor=RSS-2"
            "&ocid=msn&igshid=z&_ga=1.2&UTM_Campaign=up",
            "https://x.de/p",
        ),
        # names are compared decoded and case-insensitively; values never touched
        ("https://x.de/p?%75tm_source=x&q=%C3%A4+b", "https://x.de/p?q=%C3%A4+b"),
        # not tracking: names that merely contain a tracking name
        (
            "https://x.de/p?preference=1&atom=2&reference=3",
            "https://x.de/p?preference=1&atom=2&reference=3",
        ),
        # fragment dropped, trailing "?" and empty pairs removed
        ("https://x.de/artikel.html?#kommentare", "https://x.de/artikel.html"),
        ("https://x.de/artikel.html?utm_source=rss#top", "https://x.de/artikel.html"),
        ("https://x.de/a?&&id=1&", "https://x.de/a?id=1"),
        # empty path is "/"; IPv6 hosts keep their brackets
        ("https://Example.DE", "https://example.de/"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
        # surrounding whitespace from feeds is stripped
        ("  https://x.de/a\n", "https://x.de/a"),
    ],
)
def test_canonical_url(url: str, expected: str) -> None:
    assert canonical_url(url) == expected


def test_canonical_url_never_raises_on_garbage() -> None:
    assert canonical_url("http://[::1") == "http://[::1"
    assert canonical_url("http://host:port/x") == "http://host:port/x"
    assert canonical_url("") == ""


@given(st.text(max_size=80))
def test_canonical_url_is_total_and_idempotent(text: str) -> None:
    once = canonical_url(text)
    assert canonical_url(once) == once


def test_is_tracking_param() -> None:
    assert is_tracking_param("utm_content")
    assert is_tracking_param("WT.mc_id")
    assert not is_tracking_param("id")


@pytest.mark.parametrize(
    ("link", "base", "expected"),
    [
        ("https://x.de/a", None, "https://x.de/a"),
        ("/lokales/1.html", "https://x.de/rss/feed.xml", "https://x.de/lokales/1.html"),
        ("javascript:alert(1)", None, None),
        ("JavaScript:alert(1)", "https://x.de/", None),
        ("java\tscript:alert(1)", None, None),
        ("data:text/html,<script>alert(1)</script>", None, None),
        ("mailto:redaktion@x.de", None, None),
        ("ftp://x.de/file", None, None),
        ("https:///nohost", None, None),
        ("http://x.de:99999/", None, None),
        ("", "https://x.de/", None),
        (None, "https://x.de/", None),
    ],
)
def test_http_url_keeps_only_http_links(
    link: str | None, base: str | None, expected: str | None
) -> None:
    assert http_url(link, base) == expected


def test_a_link_is_returned_as_it_was_checked() -> None:
    """urlsplit drops tabs and newlines before the scheme check; the URL returned must too."""
    assert http_url("ht\ttps://news.example.de/a") == "https://news.example.de/a"
    assert http_url("https://news.example.de/a\nb") == "https://news.example.de/ab"


# URL-ish text: the prefixes and characters on which urllib's rules turn.
_URLISH = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["http://", "https://", "HTTP://", "http:", "ftp://", "//", " http://"]),
        st.text(alphabet="aZ09.-_~/:;?#@[]%&=+ \t\n\x00\x7f\xa0éß", max_size=30),
    ),
)
_BASES = ["", "https://example.org/feed/", "http://example.org", "http://[::1/", "ftp://x/"]
_PLAIN_EXAMPLES = [
    "https://www.tagesblick0.example/politik/fernwaermeabgabe-a0000001.html",
    "http://A.B.example./x?utm_source=a&id=1#top",
    "http://./", "http://x.de?", "http://x.de#", "http://x.de/a;b", "http://x.de/?a?b#c#d",
    "https://x.de:443/", "http://user@x.de/", "http://x.de/ä?ü=1", "HTTP://x.de/",
]  # fmt: skip


def _general(function: Callable[..., object], *args: object) -> object:
    """`function` with the plain-URL shortcut switched off: urllib decides."""
    plain = urls._PLAIN_URL
    urls._PLAIN_URL = re.compile(r"(?!)")
    try:
        return function(*args)
    finally:
        urls._PLAIN_URL = plain


def _check_plain_url_shortcut(url: str, base: str) -> None:
    assert canonical_url(url) == _general(canonical_url, url)
    assert http_url(url, base) == _general(http_url, url, base)
    if joins_to_itself(url, base):
        assert urljoin(base, url) == url == urlunsplit(urlsplit(url))
        assert _urljoin(base, url) == url  # feedparser's, as fast.py uses it


@pytest.mark.parametrize("url", _PLAIN_EXAMPLES)
@pytest.mark.parametrize("base", _BASES)
def test_plain_url_shortcut_changes_nothing(url: str, base: str) -> None:
    _check_plain_url_shortcut(url, base)


@given(_URLISH, st.sampled_from(_BASES))
def test_plain_url_shortcut_changes_nothing_on_any_text(url: str, base: str) -> None:
    _check_plain_url_shortcut(url, base)
