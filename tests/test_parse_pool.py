"""The parser process pool when a worker dies: killed, out of memory, a crash in lxml.

A dead worker breaks the whole `ProcessPoolExecutor`. The pool must be replaced
so later documents still parse, and only a document that kills its worker again
when parsed alone may be stored as failed with `BROKEN`: a failure counts
towards the feed's backoff and eventually disables it.

The dying documents carry a marker that `dying_parse` acts on in the worker; it
stands in for `parse_or_reason` and, being defined here, is found by the
workers, which import this module by name.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from feedserver import FeedServer
from test_fetch import make_settings

from aggregator import parse_pool
from aggregator.config import Settings
from aggregator.models import Outlet, ParsedFeed
from aggregator.parse_pool import BROKEN, Parsers, parse_or_reason
from aggregator.pipeline import PARSE_POOL_MIN_FEEDS, Pipeline
from aggregator.store import Store

KW: dict[str, Any] = {
    "url": "https://example.org/feed.xml",
    "content_type": "application/rss+xml",
    "outlet": "Beispielblatt",
    "outlet_language": "de",
    "now": datetime(2025, 3, 14, 12, 0, tzinfo=UTC),
}
DIE = "<!--die-->"


def rss(title: str, extra: str = "") -> bytes:
    return (
        f'<rss version="2.0"><channel><title>{title}</title>{extra}'
        f"<item><title>Meldung {title}</title><guid>{title}-1</guid></item></channel></rss>"
    ).encode()


def dying_parse(content: bytes, **kwargs: Any) -> ParsedFeed | str:
    """`parse_or_reason`, except that the worker is killed on a marked document.

    `<!--die-->`: every time. `<!--die-once:PATH-->`: the first time, the file at
    PATH recording that it happened (the retry runs in another process).
    """
    if DIE.encode() in content:
        os.kill(os.getpid(), signal.SIGKILL)
    once = re.search(rb"<!--die-once:(.+?)-->", content)
    if once is not None:
        flag = Path(once.group(1).decode())
        if not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return parse_or_reason(content, **kwargs)


@pytest.fixture
def dying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_pool, "parse_or_reason", dying_parse)


def titles(outcomes: list[ParsedFeed | str]) -> list[str | None]:
    return [o.title if isinstance(o, ParsedFeed) else o for o in outcomes]


def test_documents_parse_after_every_worker_was_killed() -> None:
    async def run() -> tuple[list[ParsedFeed | str], set[int], set[int]]:
        parsers = Parsers(2, pool=True)
        try:
            first = await parsers.parse(rss("vorher"), **KW)
            assert parsers._pool is not None
            killed = {p.pid for p in parsers._pool._processes.values()}
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.3)
            later = [await parsers.parse(rss(f"danach{n}"), **KW) for n in range(2)]
            later += await asyncio.gather(
                *(parsers.parse(rss(f"zugleich{n}"), **KW) for n in range(4))
            )
            assert parsers._pool is not None
            return [first, *later], killed, {p.pid for p in parsers._pool._processes.values()}
        finally:
            parsers.close()

    outcomes, killed, workers = asyncio.run(run())
    assert titles(outcomes) == ["vorher", "danach0", "danach1", *(f"zugleich{n}" for n in range(4))]
    assert workers and not killed & workers


def test_a_document_that_kills_its_worker_every_time_is_the_only_one_blamed(dying: None) -> None:
    async def run() -> list[ParsedFeed | str]:
        parsers = Parsers(2, pool=True)
        try:
            docs = [rss(f"gut{n}") for n in range(3)] + [rss("böse", DIE)]
            docs += [rss(f"gut{n}") for n in range(3, 6)]
            together = await asyncio.gather(*(parsers.parse(doc, **KW) for doc in docs))
            return [*together, await parsers.parse(rss("danach"), **KW)]
        finally:
            parsers.close()

    assert titles(asyncio.run(run())) == [
        *(f"gut{n}" for n in range(3)),
        BROKEN,
        *(f"gut{n}" for n in range(3, 6)),
        "danach",
    ]


def test_a_document_whose_worker_died_once_is_parsed_again_not_blamed(
    dying: None, tmp_path: Path
) -> None:
    flag = tmp_path / "died"

    async def run() -> list[ParsedFeed | str]:
        parsers = Parsers(2, pool=True)
        try:
            docs = [rss("einmal", f"<!--die-once:{flag}-->"), rss("daneben")]
            return list(await asyncio.gather(*(parsers.parse(doc, **KW) for doc in docs)))
        finally:
            parsers.close()

    assert titles(asyncio.run(run())) == ["einmal", "daneben"]
    assert flag.exists()


def test_a_run_stores_every_feed_but_the_one_that_kills_the_parser(
    dying: None, feed_server: FeedServer, tmp_path: Path
) -> None:
    path = tmp_path / "pool.db"
    store = Store(f"sqlite:///{path}")
    try:
        now = datetime.now(UTC)
        urls = [
            feed_server.add(f"/{n}.xml", rss(f"f{n}", DIE if n == 3 else "").decode())
            for n in range(PARSE_POOL_MIN_FEEDS)
        ]
        for url in urls:
            store.add_feed(url, Outlet("o"), source="cli", interval_seconds=1800, now=now)
        settings = Settings(fetch=make_settings(parse_workers=2))
        summary = asyncio.run(Pipeline(settings, store).fetch(all_feeds=True))
        assert (summary.ok, summary.failed) == (PARSE_POOL_MIN_FEEDS - 1, 1)
        feeds = {feed.url: feed for feed in store.feeds()}
        assert (feeds[urls[3]].last_status, feeds[urls[3]].last_error) == ("failed", BROKEN)
        assert all(feeds[url].last_status == "ok" for n, url in enumerate(urls) if n != 3)
        with sqlite3.connect(path) as conn:
            stored = [title for (title,) in conn.execute("SELECT title FROM entries ORDER BY id")]
        assert sorted(stored) == sorted(
            f"Meldung f{n}" for n in range(PARSE_POOL_MIN_FEEDS) if n != 3
        )
    finally:
        store.close()
