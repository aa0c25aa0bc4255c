"""The service keeps its matcher between runs, and primes a new one when the database moved on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator import pipeline as pipeline_module
from aggregator.cluster import Item, cluster_items
from aggregator.config import ClusterSettings, Settings
from aggregator.models import Entry, Feed, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Store
from aggregator.store.dashboard import SPLIT, DashboardStore, apply_corrections

T0 = datetime(2026, 11, 24, 6, tzinfo=UTC)
EVENT = ClusterSettings(granularity="event")
# Two events, each reported by several outlets, arriving over two fetch rounds.
REPORTS = [
    ("Bundestag beschließt Heizungsgesetz nach langer Debatte", "Das Parlament stimmt zu."),
    ("Lokführer streiken am Montag bundesweit", "Die GDL ruft zum Ausstand auf."),
    ("Heizungsgesetz: Bundestag stimmt nach langer Debatte zu", "Das Parlament beschließt."),
    ("GDL-Streik: Lokführer legen Montag die Arbeit nieder", "Bundesweit fallen Züge aus."),
    ("Nach langer Debatte: Bundestag beschließt das Heizungsgesetz", "Mehrheit im Parlament."),
    ("Bahnstreik am Montag: Lokführer streiken bundesweit", "Die GDL hat aufgerufen."),
]


def _feeds(store: Store) -> list[Feed]:
    return [
        store.add_feed(
            f"https://o{i}.example/rss",
            Outlet(f"o{i}"),
            source="config",
            interval_seconds=60,
            now=T0,
        )[0]
        for i in range(len(REPORTS))
    ]


def _save(store: Store, feeds: list[Feed], numbers: range) -> None:
    for i in numbers:
        title, lead = REPORTS[i]
        entry = Entry(
            guid=f"g{i}",
            url=None,
            canonical_url=None,
            title=title,
            summary=lead,
            published=T0 + timedelta(minutes=20 * i),
            content_hash=title,
            language="de",
        )
        store.save_fetch(feeds[i], [entry], T0)


def _grouping(store: Store) -> set[frozenset[str]]:
    stored = store.clusters_between(T0 - timedelta(days=1), T0 + timedelta(days=1))
    return {frozenset(e.guid for e in c.entries) for c in stored}


def test_a_second_run_reuses_the_matcher_and_decides_as_one_batch(database_url: str) -> None:
    store = Store(database_url)
    feeds = _feeds(store)
    pipeline = Pipeline(Settings(cluster=EVENT), store)
    _save(store, feeds, range(3))
    assert pipeline.cluster() == 3
    _save(store, feeds, range(3, len(REPORTS)))
    assert pipeline.cluster() == len(REPORTS) - 3

    assert pipeline.primed == 1  # the second run went on from the first run's state
    items = [
        Item(i, f"o{i}", title, lead, T0 + timedelta(minutes=20 * i), language="de")
        for i, (title, lead) in enumerate(REPORTS)
    ]
    expected: dict[int, set[str]] = {}
    for match in cluster_items(items, EVENT):
        expected.setdefault(match.cluster_id, set()).add(f"g{match.entry_id}")
    assert _grouping(store) == {frozenset(g) for g in expected.values()}
    assert len(expected) == 2


def test_work_by_another_process_makes_the_next_run_prime_again(database_url: str) -> None:
    store = Store(database_url)
    feeds = _feeds(store)
    service = Pipeline(Settings(cluster=EVENT), store)
    _save(store, feeds, range(2))
    service.cluster()
    # A cron job (another Pipeline, as another process would be) clusters the next entries.
    _save(store, feeds, range(2, 4))
    Pipeline(Settings(cluster=EVENT), store).cluster()
    _save(store, feeds, range(4, len(REPORTS)))
    service.cluster()
    assert service.primed == 2
    assert len(_grouping(store)) == 2
    assert sum(len(group) for group in _grouping(store)) == len(REPORTS)


def test_an_editors_split_makes_the_next_run_prime_again(database_url: str) -> None:
    store = Store(database_url)
    feeds = _feeds(store)
    pipeline = Pipeline(Settings(cluster=EVENT), store)
    _save(store, feeds, range(4))
    pipeline.cluster()
    first_event = next(g for g in _grouping(store) if "g0" in g)
    assert "g2" in first_event
    ids = {
        e.guid: e.id for c in store.clusters_between(T0, T0 + timedelta(days=1)) for e in c.entries
    }
    DashboardStore(store).add_correction(SPLIT, ids["g2"], ids["g2"], "editor", T0)
    apply_corrections(store)  # as the dashboard's next pass would

    _save(store, feeds, range(4, len(REPORTS)))
    pipeline.cluster()
    assert pipeline.primed == 2
    assert frozenset({"g2"}) in _grouping(store)  # the split holds


def test_a_stopped_run_commits_its_batch_and_the_next_run_goes_on_from_there(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service shutting down stops clustering between batches; nothing is lost or redone."""
    monkeypatch.setattr(pipeline_module, "CLUSTER_BATCH", 2)
    store = Store(database_url)
    _save(store, _feeds(store), range(len(REPORTS)))
    pipeline = Pipeline(Settings(cluster=EVENT), store)
    assert pipeline.cluster(stop=lambda: True) == 2
    assert len(store.unclustered()) == len(REPORTS) - 2
    assert pipeline.cluster() == len(REPORTS) - 2
    assert pipeline.primed == 1  # went on with the stopped run's matcher
    assert len(_grouping(store)) == 2
