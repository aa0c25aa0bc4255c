"""The dashboard in headless Chromium, against the real server on loopback.

An editor logs in, watches a story arrive after a real fetch, opens it,
splits an entry out (and sees it stay split after re-clustering), finds a
coverage gap, and sees a hostile feed title as text. Screenshots of each
view go to the artifact folder (AGGREGATOR_TEST_ARTIFACTS, default
test-artifacts/) for a person to look at.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import uvicorn
from feedserver import FeedServer
from webapp import PASSWORD
from webdata import ALL

from aggregator.config import Settings
from aggregator.pipeline import Pipeline
from aggregator.store import Store
from aggregator.store.dashboard import DashboardStore, apply_corrections
from aggregator.web import auth, create_app
from aggregator.web.dashboard import routes

CHROMIUM = Path("/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")

HOSTILE_TITLE = "<script>alert('feed')</script> news.de Schlagzeilen"
ARTIFACTS = Path(os.environ.get("AGGREGATOR_TEST_ARTIFACTS", "test-artifacts")) / "dashboard"


def _rss(title: str, items: list[tuple[str, str, datetime]]) -> str:
    body = "".join(
        f"<item><title>{escape(head)}</title><description>{escape(lead)}</description>"
        f"<link>https://example.org/{abs(hash(head))}</link><guid>{abs(hash(head))}</guid>"
        f"<pubDate>{format_datetime(when)}</pubDate></item>"
        for head, lead, when in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{escape(title)}</title><link>https://example.org/</link>{body}</channel></rss>"
    )


class Server:
    """uvicorn serving the app on a free loopback port, in a thread."""

    def __init__(self, settings: Settings, store: Store) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        app = create_app(settings, store, routes=routes(settings, store))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return f"http://127.0.0.1:{self.port}"
            threading.Event().wait(0.02)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Pipeline, FeedServer]]:
    with FeedServer() as feeds:
        outlets = sorted({row[0] for row in ALL})
        settings = Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'web.db'}"},
                "fetch": {"allow_private_addresses": True},
                "dashboard": {"home_outlets": ["tagesschau.de"], "poll_seconds": 2},
                "outlets": [
                    {"name": name, "language": "de", "feeds": [feeds.url(f"/{name}.xml")]}
                    for name in outlets
                ],
                "base_dir": tmp_path,
            }
        )
        for name in outlets:
            feeds.add(f"/{name}.xml", _rss(name, []))
        store = Store(settings.database_url)
        DashboardStore(store).set_password("anna", auth.hash_password(PASSWORD), datetime.now(UTC))
        pipeline = Pipeline(settings, store)
        pipeline.sync_config()
        with Server(settings, store) as base:
            yield base, pipeline, feeds
        store.close()


# zeit.de joins the Bundesbank story (tagesschau.de and spiegel.de) in a later fetch.
JOINER = (
    "zeit.de",
    "Wachstumsprognose für 2026: Bundesbank senkt deutlich",
    "Die Bundesbank hat ihre Wachstumsprognose für 2026 deutlich gesenkt.",
    20,
)


def _publish(feeds: FeedServer, rows: list[tuple[str, str, str, int]] = ALL) -> None:
    now = datetime.now(UTC)
    for name in sorted({row[0] for row in rows}):
        items = [(t, lead, now - timedelta(minutes=m)) for o, t, lead, m in rows if o == name]
        feeds.add(f"/{name}.xml", _rss(HOSTILE_TITLE if name == "news.de" else name, items))


def _fetch(pipeline: Pipeline) -> None:
    """What `fetch` does, in a thread: Playwright's sync API holds this thread's event loop."""

    def run() -> None:
        asyncio.run(pipeline.fetch(all_feeds=True))
        pipeline.cluster()
        apply_corrections(pipeline.store)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)


def test_editor_workflow(site: tuple[str, Pipeline, FeedServer]) -> None:
    base, pipeline, feeds = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(base + "/")
        assert page.url.startswith(base + "/login")
        page.screenshot(path=ARTIFACTS / "login.png")
        page.fill("input[name=name]", "anna")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        assert "No stories" in page.inner_text("#now-list")

        # A fetch brings the stories; the open page shows them without a reload.
        _publish(feeds)
        _fetch(pipeline)
        first = page.locator(".story.is-new").first
        first.wait_for(timeout=10_000)
        assert "Landtagswahl in Sachsen" in page.inner_text(".story >> nth=0")
        page.screenshot(path=ARTIFACTS / "now.png", full_page=True)

        # Another outlet joins a story: the story and the outlet light up, no reload.
        _publish(feeds, [*ALL, JOINER])
        _fetch(pipeline)
        page.locator('.story.is-new .chip.is-new[data-outlet="zeit.de"]').wait_for(timeout=10_000)
        joined = page.locator(".story", has=page.locator('.chip.is-new[data-outlet="zeit.de"]'))
        assert "Bundesbank" in joined.inner_text()
        page.screenshot(path=ARTIFACTS / "now-joined.png", full_page=True)

        # The story page explains each member; split one out.
        page.click("text=Landtagswahl in Sachsen: CDU knapp vor AfD")
        page.wait_for_selector("table.timeline")
        page.screenshot(path=ARTIFACTS / "story.png", full_page=True)
        rows = page.locator("table.timeline tbody tr")
        assert rows.count() == 4
        leaving = rows.nth(2).get_attribute("data-entry")
        rows.nth(2).locator("button", has_text="Split out").click()
        page.wait_for_load_state()
        assert page.locator("table.timeline tbody tr").count() == 3

        # Re-clustering puts it back; the stored correction takes it out again.
        pipeline.recluster(datetime.now(UTC) - timedelta(days=1))
        apply_corrections(pipeline.store)
        page.reload()
        ids = page.locator("table.timeline tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.entry)"
        )
        assert leaving not in ids and len(ids) == 3

        page.goto(base + "/gaps")
        assert "Sturmtief Zoltan" in page.inner_text("table.grid >> nth=0")
        page.screenshot(path=ARTIFACTS / "gaps.png", full_page=True)

        page.goto(base + "/feeds")
        assert HOSTILE_TITLE in page.inner_text("table.feeds")
        page.screenshot(path=ARTIFACTS / "feeds.png", full_page=True)
        for view in ("matrix", "search?q=Sturmtief", "chart"):
            page.goto(f"{base}/{view}")
            name = view.split("?")[0]
            page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)
        page.goto(base + "/")
        assert "<script>alert('x')</script> Ärger um Maut-Pläne" in page.inner_text("#now-list")
        browser.close()
    assert dialogs == []  # no script from a feed ever ran


def test_open_page_goes_to_login_when_the_session_ends(
    site: tuple[str, Pipeline, FeedServer],
) -> None:
    base, pipeline, _ = site
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(base + "/login")
        page.fill("input[name=name]", "anna")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
        # A new password ends the session; the next poll must not show the login
        # form inside the list but take the whole page there.
        new_hash = auth.hash_password("another password")
        DashboardStore(pipeline.store).set_password("anna", new_hash, datetime.now(UTC))
        page.dispatch_event("#now-list", "refresh")
        page.wait_for_url(base + "/login?next=/", timeout=10_000)
        assert page.locator("#now-list").count() == 0
        browser.close()
