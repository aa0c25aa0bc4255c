"""The service keeps its matcher between runs, and primes a new one when the database moved on.

An entry a fetch edits keeps its cluster, so the kept matcher reads it again
instead: later entries are compared with what it says now.
"""

from __future__ import annotations

import asyncio
import gc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pytest
from feedserver import FeedServer
from test_fetch import make_settings

from aggregator import pipeline as pipeline_module
from aggregator.cluster import Clusterer, Item, cluster_items
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


def _all_stored(database_url: str) -> tuple[Store, Pipeline]:
    """A store holding every report, unclustered, and a pipeline over it."""
    store = Store(database_url)
    _save(store, _feeds(store), range(len(REPORTS)))
    return store, Pipeline(Settings(cluster=EVENT), store)


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
    store, pipeline = _all_stored(database_url)
    assert pipeline.cluster(stop=lambda: True) == 2
    assert len(store.unclustered()) == len(REPORTS) - 2
    assert pipeline.cluster() == len(REPORTS) - 2
    assert pipeline.primed == 1  # went on with the stopped run's matcher
    assert len(_grouping(store)) == 2


def test_a_stop_asked_for_while_a_batch_fills_commits_what_was_decided(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big batch does not hold up a shutdown: the run stops within `STOP_CHECK` decisions."""
    monkeypatch.setattr(pipeline_module, "CLUSTER_BATCH", 5)
    monkeypatch.setattr(pipeline_module, "STOP_CHECK", 2)
    store, pipeline = _all_stored(database_url)
    looks = iter([False, True])
    assert pipeline.cluster(stop=lambda: next(looks, True)) == 4
    assert len(store.unclustered()) == len(REPORTS) - 4
    assert pipeline.cluster() == len(REPORTS) - 4
    assert len(_grouping(store)) == 2


def test_a_run_leaves_the_garbage_collector_as_it_found_it(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Survivors are frozen between batches, and all are unfrozen when the run ends or fails.

    Young collections are rarer while the run lasts, and as before after it.
    """
    monkeypatch.setattr(pipeline_module, "CLUSTER_BATCH", 2)
    thresholds = gc.get_threshold()
    store, pipeline = _all_stored(database_url)
    save_matches = store.save_matches
    calls = iter([save_matches, lambda *a, **k: 1 / 0])

    def save_then_fail(*args: object, **kwargs: object) -> int:
        return next(calls)(*args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(store, "save_matches", save_then_fail)
    with pytest.raises(ZeroDivisionError):
        pipeline.cluster()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds

    frozen: list[int] = []
    during: list[tuple[int, ...]] = []

    def save_and_look(*args: object, **kwargs: object) -> int:
        frozen.append(gc.get_freeze_count())
        during.append(gc.get_threshold())
        return save_matches(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "save_matches", save_and_look)
    assert pipeline.cluster() == len(REPORTS) - 2
    assert frozen[0] == 0 and all(count > 0 for count in frozen[1:])  # frozen after a batch
    assert gc.get_freeze_count() == 0
    assert {t[0] for t in during} == {pipeline_module.YOUNG_COLLECTION} != {thresholds[0]}
    assert gc.get_threshold() == thresholds


# -- entries edited after they were clustered --------------------------------------

OLD, NEW = REPORTS[1], REPORTS[0]  # a headline and lead replaced by the outlet
NEW_ELSEWHERE, OLD_ELSEWHERE = REPORTS[2], REPORTS[3]  # other outlets' words for each


def _item(number: int, report: tuple[str, str], minutes: int = 0) -> Item:
    title, lead = report
    return Item(number, f"o{number}", title, lead, T0 + timedelta(minutes=minutes), language="de")


@pytest.mark.parametrize("granularity", ["event", "story"])
def test_a_refreshed_entry_is_compared_with_its_new_text(granularity: str) -> None:
    clusterer = Clusterer(ClusterSettings(granularity=granularity))
    clusterer.add(_item(1, OLD))
    old_tokens = set(clusterer._state.index.tokens_of(1))
    documents = clusterer.frequencies.documents

    assert clusterer.refresh([_item(1, NEW), _item(99, NEW)]) == 1  # 99 is not in the window
    assert clusterer.frequencies.documents == documents  # the edit is not one more report
    new_tokens = set(clusterer._state.index.tokens_of(1))
    assert new_tokens and not new_tokens & old_tokens
    if granularity == "story":
        assert set(clusterer._state.clusters[1].profile) <= new_tokens
    assert clusterer.add(_item(2, NEW_ELSEWHERE, 20)).cluster_id == 1
    assert clusterer.add(_item(3, OLD_ELSEWHERE, 40)).cluster_id != 1
    # Nor does a copy of the old text find it as an exact duplicate.
    assert clusterer.add(_item(4, OLD, 60)).cluster_id != 1


@pytest.mark.parametrize(
    ("url", "reason"), [(False, "same normalized text"), (True, "same canonical URL")]
)
def test_a_copy_that_gave_up_its_key_leaves_it_to_the_other_copies(url: bool, reason: str) -> None:
    def copy(number: int, report: tuple[str, str], page: str) -> Item:
        item = _item(number, report, 10 * number)
        return replace(item, canonical_url=f"https://o.example/{page}" if url else None)

    clusterer = Clusterer(EVENT)
    clusterer.add(copy(1, OLD, "a"))
    assert clusterer.add(copy(2, OLD, "a")).matched_id == 1  # a copy, same text and URL
    clusterer.refresh([copy(2, NEW, "b")])

    third = clusterer.add(copy(3, OLD, "a"))
    assert (third.matched_id, third.reason) == (1, reason)
    fourth = clusterer.add(copy(4, NEW, "b"))
    assert (fourth.matched_id, fourth.reason) == (2, reason)


QUAKE = ("Erdbeben erschüttert Küste Japans schwer", "Ein Beben traf die Präfektur Ishikawa.")


def test_two_edits_that_trade_a_text_keep_its_key_on_the_newest_copy() -> None:
    """Entry 3, the newest copy of OLD, changes to NEW while entry 1 changes to OLD.

    A window primed from these texts sends a new copy of OLD to entry 2's
    cluster, its newest holder; so must the refreshed one, in either order.
    """
    for order in (1, -1):
        clusterer = Clusterer(EVENT)
        clusterer.add(_item(1, QUAKE))
        founder = clusterer.add(_item(2, OLD, 10))
        assert clusterer.add(_item(3, OLD, 20)).cluster_id == founder.cluster_id == 2
        clusterer.refresh([_item(3, NEW, 20), _item(1, OLD)][::order])
        copy = clusterer.add(_item(4, OLD, 30))
        assert (copy.matched_id, copy.reason) == (2, "same normalized text")


def _rss(number: int, report: tuple[str, str], minutes: int) -> str:
    title, lead = (escape(part) for part in report)
    published = format_datetime(T0 + timedelta(minutes=minutes))
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f'<title>o{number}</title><item><guid isPermaLink="false">g{number}</guid>'
        f"<title>{title}</title>"
        f"<description>{lead}</description><pubDate>{published}</pubDate></item>"
        "</channel></rss>"
    )


def _serve(server: FeedServer, store: Store, number: int, report: tuple[str, str]) -> None:
    """Outlet `number` lists one entry, published `number` * 20 minutes after T0."""
    url = server.add(f"/o{number}.xml", _rss(number, report, 20 * number))
    store.add_feed(url, Outlet(f"o{number}"), source="config", interval_seconds=60, now=T0)


@pytest.mark.parametrize("edited_by", ["the service", "another process"])
def test_the_kept_matcher_reads_an_edited_entry_again(
    feed_server: FeedServer, database_url: str, edited_by: str
) -> None:
    store = Store(database_url)
    settings = Settings(cluster=EVENT, fetch=make_settings())
    service = Pipeline(settings, store, clock=lambda: T0 + timedelta(hours=2))
    _serve(feed_server, store, 0, OLD)
    asyncio.run(service.fetch(all_feeds=True))
    assert service.cluster() == 1

    _serve(feed_server, store, 0, NEW)
    # A cron `run --once` beside the service is another process: another Pipeline.
    fetcher = service if edited_by == "the service" else Pipeline(settings, store, service.clock)
    assert asyncio.run(fetcher.fetch(all_feeds=True)).updated == 1
    _serve(feed_server, store, 1, NEW_ELSEWHERE)
    _serve(feed_server, store, 2, OLD_ELSEWHERE)
    asyncio.run(service.fetch(all_feeds=True))
    assert service.cluster() == 2

    assert service.primed == 1  # the kept matcher went on
    assert _grouping(store) == {frozenset({"g0", "g1"}), frozenset({"g2"})}
