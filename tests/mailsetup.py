"""A stored digest period for the mail tests: three clustered stories, German among them.

The stories are written here (not taken from real feeds): a German one with
umlauts, ß and „German quotes“ carried by three outlets, an English one by
two, and a single-outlet one whose title and link are hostile.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.config import Settings
from aggregator.models import Entry, Match, Outlet
from aggregator.store import Store
from aggregator.store.mail import MailStore, Subscriber

START = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
END = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
NOW = END + timedelta(minutes=1)

GERMAN = "Bundestag beschließt „Klimageld“: Größere Entlastung für Bürger"
ENGLISH = "Storm Ciarán hits the Atlantic coast"
HOSTILE = '<script>alert("x")</script> Räumung & Co'

# (story, outlet, language, title, url, minutes after START)
TAGESSCHAU = "https://www.tagesschau.de/inland/klimageld-100.html"
STORIES = [
    ("de", "tagesschau.de", "de", GERMAN, TAGESSCHAU, 60),
    ("de", "spiegel.de", "de", GERMAN + " – SPIEGEL", "https://www.spiegel.de/a-1.html", 75),
    ("de", "zeit.de", "de", "Klimageld: Bundestag beschließt Entlastung", "https://zeit.de/k", 90),
    ("en", "bbc.co.uk", "en", ENGLISH, "https://www.bbc.co.uk/news/storm", 120),
    ("en", "tagesschau.de", "de", "Sturm „Ciarán“ trifft Küste", "https://tagesschau.de/s", 130),
    ("x", "news.de", "de", HOSTILE, "javascript:alert(1)", 200),
]


def loopback_smtp(port: int, sender: str = "digest@example.org") -> dict[str, Any]:
    """The `[smtp]` section for a test server on 127.0.0.1: no TLS, no pacing."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from": sender,
        "rate_per_minute": 100000,
    }


def settings(
    tmp_path: Path,
    *,
    smtp_port: int = 25,
    base_url: str = "https://news.example.org",
    database_url: str | None = None,
    **smtp: Any,
) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": database_url or f"sqlite:///{tmp_path / 'mail.db'}"},
            "smtp": {
                **loopback_smtp(smtp_port, "Nachrichten-Überblick <digest@example.org>"),
                "reply_to": "redaktion@example.org",
                "secret_env": "AGGREGATOR_TEST_SECRET_UNSET",
                **smtp,
            },
            "web": {"base_url": base_url},
            "digests": [
                {
                    "name": "daily",
                    "title": "Täglicher Überblick",
                    "schedule": "0 6 * * *",
                    "timezone": "Europe/Berlin",
                    "period": "24h",
                    "output_dir": str(tmp_path / "digests"),
                }
            ],
            "base_dir": str(tmp_path),
        }
    )


def fill(store: Store, start: datetime = START) -> None:
    """Store the stories' entries and cluster them as STORIES says."""
    founders: dict[str, int] = {}
    for story, outlet, language, title, url, minutes in STORIES:
        feed, _ = store.add_feed(
            f"https://{outlet}/feed.xml",
            Outlet(outlet, language),
            source="config",
            interval_seconds=3600,
            now=start,
        )
        published = start + timedelta(minutes=minutes)
        guid = f"{story}-{outlet}-{start:%Y%m%d}"
        entry = Entry(
            guid=guid,
            url=url,
            canonical_url=url,
            title=title,
            summary="",
            published=published,
            language=language,
            content_hash=hashlib.sha256(guid.encode()).hexdigest(),
            outlet=outlet,
        )
        store.save_fetch(feed, [entry], start)
        stored = next(e for e in store.unclustered() if e.guid == guid)
        assert stored.id is not None
        founder = founders.setdefault(story, stored.id)
        matched = None if founder == stored.id else founder
        store.save_matches([Match(stored.id, founder, matched, 80.0, "title")])


def subscribe(store: Store, *emails: str, **filters: Any) -> list[Subscriber]:
    mail = MailStore(store)
    for email in emails:
        mail.add_subscriber(Subscriber(email=email, digest="daily", **filters), START)
    return [s for s in mail.subscribers("daily") if s.email in emails]
