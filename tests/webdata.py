"""Stories for the dashboard tests: real feeds, entries and clustering in a real database."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from aggregator.config import Settings
from aggregator.models import Entry, Match, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Store

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# (outlet, headline, lead, minutes before NOW)
ELECTION = [
    (
        "tagesschau.de",
        "Landtagswahl in Sachsen: CDU knapp vor AfD",
        "Nach der Hochrechnung liegt die CDU bei der Landtagswahl in Sachsen knapp vorn.",
        300,
    ),
    (
        "spiegel.de",
        "Landtagswahl Sachsen: CDU knapp vor AfD",
        "Die CDU liegt bei der Landtagswahl in Sachsen laut Hochrechnung knapp vor der AfD.",
        290,
    ),
    (
        "zeit.de",
        "Landtagswahl in Sachsen – CDU knapp vor der AfD",
        "Hochrechnung zur Landtagswahl in Sachsen: die CDU knapp vor der AfD.",
        240,
    ),
    (
        "news.de",
        "Landtagswahl Sachsen: CDU liegt knapp vor AfD",
        "Bei der Landtagswahl in Sachsen liegt die CDU nach der Hochrechnung knapp vorn.",
        60,
    ),
]
STORM = [
    (
        "spiegel.de",
        "Sturmtief „Zoltan“ legt Bahnverkehr in Norddeutschland lahm",
        "Das Sturmtief Zoltan hat den Bahnverkehr in Norddeutschland weitgehend lahmgelegt.",
        500,
    ),
    (
        "zeit.de",
        "Sturmtief Zoltan legt Bahnverkehr in Norddeutschland lahm",
        "Wegen Sturmtief Zoltan steht der Bahnverkehr in Norddeutschland weitgehend still.",
        480,
    ),
    (
        "news.de",
        "Sturmtief Zoltan: Bahnverkehr in Norddeutschland lahmgelegt",
        "Sturmtief Zoltan hat den Bahnverkehr im Norden Deutschlands lahmgelegt.",
        470,
    ),
]
SCOOP = [
    (
        "tagesschau.de",
        "Bundesbank senkt Wachstumsprognose für 2026 deutlich",
        "Die Bundesbank hat ihre Wachstumsprognose für das Jahr 2026 deutlich gesenkt.",
        200,
    ),
    (
        "spiegel.de",
        "Bundesbank senkt Wachstumsprognose für 2026",
        "Die Bundesbank senkt ihre Prognose für das Wachstum 2026 deutlich.",
        150,
    ),
]
HOSTILE = [
    (
        "news.de",
        "<script>alert('x')</script> Ärger um Maut-Pläne",
        "Die Maut-Pläne sorgen für Ärger <b>bei</b> Spediteuren.",
        30,
    ),
]
ALL = ELECTION + STORM + SCOOP + HOSTILE


def add(store: Store, rows: list[tuple[str, str, str, int]], now: datetime = NOW) -> list[int]:
    """Store the rows as entries of one feed per outlet; return their ids in order."""
    ids = []
    for outlet, title, lead, minutes in rows:
        feed, _ = store.add_feed(
            f"https://{outlet}/feed.xml",
            Outlet(outlet, "de"),
            source="config",
            interval_seconds=1800,
            now=now,
        )
        guid = hashlib.sha256(title.encode()).hexdigest()[:16]
        entry = Entry(
            guid=guid,
            url=f"https://{outlet}/{guid}.html",
            canonical_url=f"https://{outlet}/{guid}.html",
            title=title,
            summary=lead,
            published=now - timedelta(minutes=minutes),
            language="de",
            content_hash=hashlib.sha256((title + lead).encode()).hexdigest(),
            outlet=outlet,
        )
        store.save_fetch(feed, [entry], now)
        ids.append(_entry_id(store, guid))
    return ids


def _entry_id(store: Store, guid: str) -> int:
    from sqlalchemy import select

    from aggregator.store.schema import entries

    with store.engine.begin() as conn:
        return int(conn.execute(select(entries.c.id).where(entries.c.guid == guid)).scalar_one())


def seeded(url: str, settings: Settings | None = None) -> tuple[Store, dict[str, list[int]]]:
    """A store with the four stories above, clustered by the real matcher."""
    store = Store(url)
    ids = {
        "election": add(store, ELECTION),
        "storm": add(store, STORM),
        "scoop": add(store, SCOOP),
        "hostile": add(store, HOSTILE),
    }
    Pipeline(settings or Settings(), store).cluster()
    return store, ids


def clustered(store: Store, stories: list[list[tuple[str, int]]]) -> list[list[int]]:
    """Store each story's (outlet, minutes before NOW) entries as one cluster; return their ids.

    The clusters are recorded through `save_matches` as the matcher would
    leave them (the founder is the earliest entry), so a test can build many
    stories of exactly known shape without depending on headline similarity.
    """
    ids = []
    for number, story in enumerate(stories):
        rows = [
            (outlet, f"Story {number} entry {index} at {outlet}", f"Lead {number}", minutes)
            for index, (outlet, minutes) in enumerate(sorted(story, key=lambda e: -e[1]))
        ]
        ids.append(add(store, rows))
    store.save_matches(
        Match(entry_id, members[0], None if entry_id == members[0] else members[0], 90.0, "test")
        for members in ids
        for entry_id in members
    )
    return ids
