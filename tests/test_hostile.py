"""Crafted attacks through the whole path: loopback server -> fetch -> parse -> SQLite.

Each test serves one hostile document, runs the real pipeline's fetch stage
against a fresh database, and asserts what reached the database: the attack is
refused with a reason, or its payload is defused (truncated, stripped, dropped).
Cases already covered at the stage level live in test_fetch.py and
test_parse.py (gzip and brotli bombs, a redirect loop, ftp:/file: redirects,
billion laughs and external entities in the parser); here they travel the
whole way, and the remaining attacks of the issue are added.
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer
from test_fetch import make_settings

from aggregator.config import Settings
from aggregator.models import Feed, Outlet
from aggregator.pipeline import FetchSummary, Pipeline
from aggregator.store import Store

Rows = list[dict[str, Any]]

# Everything below U+0020 except whitespace, DEL, C1 controls, lone surrogates.
FORBIDDEN = {chr(c) for c in [*range(0x09), *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)]}


class Run:
    """One feed URL, fetched into a fresh SQLite database by the real pipeline."""

    def __init__(self, tmp_path: Path, **fetch: Any) -> None:
        self.path = tmp_path / "hostile.db"
        self.settings = Settings(fetch=make_settings(**fetch))
        self.store = Store(f"sqlite:///{self.path}")

    def fetch(self, url: str) -> FetchSummary:
        now = datetime.now(UTC)
        self.store.add_feed(url, Outlet("hostile"), source="cli", interval_seconds=1800, now=now)
        return asyncio.run(Pipeline(self.settings, self.store).fetch(all_feeds=True))

    def feed(self) -> Feed:
        (feed,) = self.store.feeds()
        return feed

    def rows(self, table: str) -> Rows:
        with sqlite3.connect(self.path) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(f"SELECT * FROM {table}")]

    def stored_text(self) -> Iterator[str]:
        for table in ("feeds", "entries", "outlets"):
            for row in self.rows(table):
                yield from (value for value in row.values() if isinstance(value, str))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    result = Run(tmp_path)
    yield result
    result.store.close()


def rss(items: str, *, prolog: str = "", channel_title: str = "Hostile") -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<rss version="2.0"><channel>'
        f"<title>{channel_title}</title><link>https://example.org/</link>{items}</channel></rss>"
    )


def item(n: int | str, title: str = "", description: str = "", link: str = "") -> str:
    link = link or f"https://example.org/{n}"
    return (
        f"<item><guid>g{n}</guid><title>{title or f'Meldung {n}'}</title>"
        f"<link>{link}</link><description>{description}</description></item>"
    )


def assert_failed(run: Run, summary: FetchSummary, reason: str) -> None:
    assert (summary.ok, summary.failed) == (0, 1)
    feed = run.feed()
    assert feed.last_status == "failed"
    assert feed.last_error is not None and reason in feed.last_error
    assert run.rows("entries") == []


# -- entities ------------------------------------------------------------------------


def test_billion_laughs_is_refused_and_nothing_stored(feed_server: FeedServer, run: Run) -> None:
    lols = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = rss(item(1, "&l9;"), prolog=f'<!DOCTYPE rss [<!ENTITY l0 "lol">{lols}]>')
    started = time.monotonic()
    summary = run.fetch(feed_server.add("/lol.xml", doc))
    assert time.monotonic() - started < 3
    assert_failed(run, summary, "entity expansion")


def test_external_entity_never_reaches_the_database(
    feed_server: FeedServer, run: Run, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("GEHEIM-4711")
    dtd = (
        '<!DOCTYPE rss [<!ENTITY passwd SYSTEM "file:///etc/passwd">'
        f'<!ENTITY secret SYSTEM "{secret.as_uri()}">]>'
    )
    doc = rss(
        item(1, "Titel &passwd; &secret; Ende", "Text &passwd;&secret;", "file:///etc/passwd"),
        prolog=dtd,
        channel_title="Kanal &passwd;",
    )
    summary = run.fetch(feed_server.add("/xxe.xml", doc))
    assert summary.failed + summary.ok == 1
    text = "\n".join(run.stored_text())
    assert "root:" not in text and "GEHEIM" not in text and "file:" not in text
    for entry in run.rows("entries"):
        assert entry["url"] is None


# -- transport ---------------------------------------------------------------------------


def test_gzip_bomb_is_refused_at_the_cap(feed_server: FeedServer, tmp_path: Path) -> None:
    # A valid feed padded to 64 MiB: about 64 KB on the wire, 64 times the cap.
    padding = b" " * (64 << 20)
    body = gzip.compress(rss(item(1)).encode().replace(b"<channel>", b"<channel>" + padding))
    assert len(body) < 128_000
    url = feed_server.add("/bomb.xml", body, headers={"Content-Encoding": "gzip"})
    bomb = Run(tmp_path, max_bytes=1 << 20)
    started = time.monotonic()
    assert_failed(bomb, bomb.fetch(url), "response larger than 1 MiB")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("max_bytes", [64 * 1024, 10 * 1024 * 1024])
def test_endless_chunked_response_is_cut_off(
    feed_server: FeedServer, tmp_path: Path, max_bytes: int
) -> None:
    url = feed_server.add("/endless.xml", item("x") * 100, endless=True)
    endless = Run(tmp_path, max_bytes=max_bytes, total_timeout=3)
    started = time.monotonic()
    summary = endless.fetch(url)
    assert time.monotonic() - started < 5
    # Whichever limit comes first: the size cap, or (on a slow machine) the wall clock.
    error = endless.feed().last_error or ""
    assert error.startswith("response larger than") or error.startswith("response took longer")
    assert_failed(endless, summary, "response")


def test_one_byte_per_second_is_bounded_by_total_timeout(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.add("/slow.xml", rss(item(1)), trickle=1.0)
    slow = Run(tmp_path, read_timeout=2, total_timeout=1.5)
    started = time.monotonic()
    assert_failed(slow, slow.fetch(url), "response took longer than 1.5 s")
    assert time.monotonic() - started < 3


def test_redirect_loop_is_recorded_as_the_feeds_error(feed_server: FeedServer, run: Run) -> None:
    feed_server.redirect("/a.xml", "/b.xml", status=301)
    feed_server.redirect("/b.xml", "/a.xml", status=302)
    assert_failed(run, run.fetch(feed_server.url("/a.xml")), "too many redirects")
    assert run.feed().url == feed_server.url("/a.xml")  # a loop moves nothing


@pytest.mark.parametrize(
    "target",
    ["javascript:alert(1)", "data:application/rss+xml,<rss/>", "gopher://127.0.0.1/", "mailto:x@y"],
)
def test_redirect_to_non_http_schemes_is_refused(
    feed_server: FeedServer, run: Run, target: str
) -> None:
    url = feed_server.redirect("/feed.xml", target, status=301)
    scheme = target.split(":")[0]
    assert_failed(run, run.fetch(url), f"redirect to a '{scheme}' URL refused")
    assert run.feed().url == url


# -- size --------------------------------------------------------------------------


def test_5000_item_feed_is_stored_whole(feed_server: FeedServer, run: Run) -> None:
    doc = rss("".join(item(n, description=f"Text {n}") for n in range(5000)))
    started = time.monotonic()
    summary = run.fetch(feed_server.add("/big.xml", doc))
    assert time.monotonic() - started < 15
    assert (summary.ok, summary.new) == (1, 5000)
    assert len({row["guid"] for row in run.rows("entries")}) == 5000


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_50_mb_item_is_refused_by_the_size_cap(
    feed_server: FeedServer, run: Run, chunked: bool
) -> None:
    doc = rss(item(1, description="Wort " * (10 << 20)))  # 50 MiB in one description
    url = feed_server.add("/huge.xml", doc, chunked=chunked)
    started = time.monotonic()
    assert_failed(run, run.fetch(url), "response larger than 10 MiB")
    assert time.monotonic() - started < 5


def test_large_item_under_the_cap_is_stored_truncated(feed_server: FeedServer, run: Run) -> None:
    huge = "<p>" + "Wort " * (1 << 20) + "</p>"  # 5 MiB of HTML in one item
    summary = run.fetch(feed_server.add("/large.xml", rss(item(1, "T" * 100_000, huge))))
    assert summary.new == 1
    (entry,) = run.rows("entries")
    assert len(entry["summary"]) <= 1001 and entry["summary"].endswith("…")
    assert len(entry["title"]) <= 301


# -- text ------------------------------------------------------------------------------


def test_invalid_utf8_is_stored_as_valid_text(feed_server: FeedServer, run: Run) -> None:
    doc = rss(item(1, "Gr\udcfc\udcdfe aus K\udcf6ln", "Bytes: \udcff\udcfe\udcc3(")).encode(
        "utf-8", "surrogateescape"
    )
    summary = run.fetch(feed_server.add("/bad-utf8.xml", doc))
    assert summary.new == 1
    for text in run.stored_text():
        text.encode("utf-8")  # strict: no surrogates made it through
    (entry,) = run.rows("entries")
    assert entry["title"].startswith("Gr") and entry["title"].endswith("ln")


CONTROLS = "".join(map(chr, [0, 1, 7, 8, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F]))


def test_nul_and_control_characters_never_stored(feed_server: FeedServer, run: Run) -> None:
    doc = rss(
        item(f"1{CONTROLS}", f"Eil{CONTROLS}meldung", f"Te{CONTROLS}xt\x9b[31m", "")
        + item(2, "Zwei", link=f"https://example.org/\x00{CONTROLS}"),
        channel_title=f"Kanal{CONTROLS}",
    ).encode()
    summary = run.fetch(feed_server.add("/ctl.xml", doc))
    assert summary.new == 2
    for text in run.stored_text():
        assert not FORBIDDEN & set(text), repr(text)
    # Control characters vanish; the vertical tab, form feed and separators count as spaces.
    titles = {row["title"] for row in run.rows("entries")}
    assert titles == {"Eil meldung", "Zwei"}
    assert run.feed().title == "Kanal"


def test_control_characters_in_json_feed_never_stored(feed_server: FeedServer, run: Run) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in CONTROLS) + "\\ud800"
    doc = (
        '{"version": "https://jsonfeed.org/version/1.1", "title": "J' + escaped + '", "items": ['
        '{"id": "1' + escaped + '", "title": "Eil' + escaped + 'meldung",'
        ' "content_text": "x' + escaped + '", "url": "https://example.org/1"}]}'
    )
    summary = run.fetch(feed_server.add("/ctl.json", doc, content_type="application/feed+json"))
    assert summary.new == 1
    for text in run.stored_text():
        text.encode("utf-8")
        assert not FORBIDDEN & set(text), repr(text)
    assert run.rows("entries")[0]["title"] == "Eil meldung"


# -- links ---------------------------------------------------------------------------------


BAD_LINKS = [
    "javascript:alert(document.cookie)",
    " JaVaScRiPt:alert(1)",
    "java&#x09;script:alert(1)",
    "jav&#x0A;ascript:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
]


def test_javascript_and_data_links_never_kept(feed_server: FeedServer, run: Run) -> None:
    atom = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>A</title>'
        + "".join(
            f'<entry><id>a{n}</id><title>Atom {n}</title><link href="{link}"/></entry>'
            for n, link in enumerate(BAD_LINKS)
        )
        + "</feed>"
    )
    rss_doc = rss("".join(item(n, link=link) for n, link in enumerate(BAD_LINKS)))
    json_items = ",".join(
        f'{{"id": "j{n}", "title": "JSON {n}", "url": "{link}", "external_url": "{link}"}}'
        for n, link in enumerate(BAD_LINKS)
        if "&" not in link
    )
    json_doc = '{"version": "https://jsonfeed.org/version/1", "items": [' + json_items + "]}"
    for path, doc, kind in (
        ("/a.atom", atom, "application/atom+xml"),
        ("/r.rss", rss_doc, "application/rss+xml"),
        ("/j.json", json_doc, "application/feed+json"),
    ):
        run.store.add_feed(
            feed_server.add(path, doc, content_type=kind),
            Outlet("hostile"),
            source="cli",
            interval_seconds=1800,
            now=datetime.now(UTC),
        )
    summary = asyncio.run(Pipeline(run.settings, run.store).fetch(all_feeds=True))
    assert summary.ok == 3
    entries = run.rows("entries")
    assert len(entries) >= 2 * len(BAD_LINKS)
    for entry in entries:
        assert entry["url"] is None and entry["canonical_url"] is None, entry
    text = "\n".join(run.stored_text()).lower()
    assert "javascript:" not in text and "data:" not in text and "vbscript:" not in text
