"""Cluster decisions stored a batch behind the matcher, and the two ways a batch is stored."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

import aggregator.store as store_module
from aggregator.models import Entry, Match, Outlet
from aggregator.store import Store
from aggregator.store.match_writer import MatchWriter
from aggregator.store.schema import clusters, entries

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
OUTLETS = ("tagesschau.de", "spiegel.de", "zeit.de")


@dataclass(frozen=True)
class _Merge:
    absorbed: int
    into: int
    score: float
    reason: str = "merged: headlines 72"


def _filled(url: str) -> tuple[Store, list[int]]:
    """A store with nine unclustered entries from three outlets, and their ids by time."""
    store = Store(url)
    for n, outlet in enumerate(OUTLETS):
        feed, _ = store.add_feed(
            f"https://{outlet}/rss",
            Outlet(outlet, "de"),
            source="config",
            interval_seconds=1800,
            now=NOW,
        )
        store.save_fetch(
            feed,
            [
                Entry(
                    guid=f"{outlet}-{i}",
                    url=f"https://{outlet}/{i}",
                    canonical_url=f"https://{outlet}/{i}",
                    title=f"Meldung {i} über „Grüße“ aus Köln",
                    summary="Straße gesperrt.",
                    published=NOW - timedelta(hours=10 - 3 * i - n),
                    content_hash=f"{outlet}-{i}",
                )
                for i in range(3)
            ],
            NOW,
        )
    return store, [item.id for item, _ in store.unclustered_items(100)]


def _decide(store: Store, ids: list[int]) -> None:
    """Two batches: three clusters founded with members, then a merge and late members."""
    a, b, c = ids[0], ids[1], ids[2]
    store.save_matches(
        [
            Match(a, a, None, 100.0, "new cluster"),
            Match(b, b, None, 100.0, "new cluster"),
            Match(c, c, None, 100.0, "new cluster"),
            Match(ids[3], a, a, 88.4, 'title 91, „Grüße“ and "quotes"'),
            Match(ids[4], b, b, 80.0, "lead 77"),
        ]
    )
    store.save_matches(
        [Match(i, a, ids[3], 79.1 + i / 7, "title 80") for i in ids[5:]],
        [_Merge(absorbed=c, into=a, score=72.25)],
    )


def _tables(store: Store) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with store.engine.begin() as conn:
        assigned = conn.execute(
            select(
                entries.c.id,
                entries.c.cluster_id,
                entries.c.matched_id,
                entries.c.match_score,
                entries.c.match_reason,
            ).order_by(entries.c.id)
        )
        figures = conn.execute(select(clusters).order_by(clusters.c.id))
        return [tuple(row) for row in assigned], [tuple(row) for row in figures]


def test_json_statements_store_what_a_statement_per_entry_stores(tmp_path: Path) -> None:
    if sqlite3.sqlite_version_info < (3, 38, 0):
        pytest.skip(f"SQLite {sqlite3.sqlite_version} has no built-in JSON: one path only")
    by_json, ids = _filled(f"sqlite:///{tmp_path / 'json.db'}")
    by_row, same_ids = _filled(f"sqlite:///{tmp_path / 'rows.db'}")
    assert by_json.batches_as_json
    by_row.batches_as_json = False
    assert ids == same_ids
    _decide(by_json, ids)
    _decide(by_row, ids)
    assigned, figures = _tables(by_json)
    assert (assigned, figures) == _tables(by_row)
    # The merge moved the absorbed cluster's entries and dropped its row; figures are fresh.
    assert {cluster for _, cluster, *_ in assigned} == {ids[0], ids[1]}
    assert [(row[0], row[3], row[4]) for row in figures] == [(ids[0], 7, 3), (ids[1], 2, 1)]
    reasons = {entry_id: reason for entry_id, *_, reason in assigned}
    assert reasons[ids[3]] == 'title 91, „Grüße“ and "quotes"'


def _recording(store: Store) -> list[str]:
    """The names of the threads `store.save_matches` runs on, in call order."""
    threads: list[str] = []
    save = store.save_matches

    def recorded(*args: object) -> int:
        threads.append(threading.current_thread().name)
        return save(*args)  # type: ignore[arg-type]

    store.save_matches = recorded  # type: ignore[method-assign]
    return threads


def test_each_batch_is_committed_before_the_next_and_on_a_thread_where_that_pays(
    database_url: str,
) -> None:
    store, ids = _filled(database_url)
    threads = _recording(store)
    a = ids[0]
    with MatchWriter(store) as writer:
        writer.save([Match(a, a, None, 100.0, "new cluster")])
        # Names the cluster the first batch founds: fails unless that batch is committed.
        writer.save([Match(i, a, a, 81.0, "title 81") for i in ids[1:]])
    assert store.count_unclustered() == 0
    assert [cluster for _, cluster, *_ in _tables(store)[0]] == [a] * len(ids)
    expected = "match-writer" if store.saves_matches_unlocked else "MainThread"
    assert [name.split("_")[0] for name in threads] == [expected, expected]


def test_a_failed_batch_is_raised_and_stores_nothing(database_url: str) -> None:
    store, ids = _filled(database_url)
    a = ids[0]
    writer = MatchWriter(store)
    with pytest.raises(IntegrityError), writer:
        writer.save([Match(a, a, None, 100.0, "new cluster")])
        # A cluster nobody founded: the database refuses the whole batch.
        writer.save(
            [Match(ids[1], ids[1], None, 100.0, "new cluster"), Match(ids[2], 999, a, 1.0, "")]
        )
        writer.save([Match(ids[3], a, a, 90.0, "title 90")])
    assigned = {entry_id: cluster for entry_id, cluster, *_ in _tables(store)[0]}
    assert assigned[a] == a
    assert assigned[ids[1]] is None and assigned[ids[2]] is None
    assert assigned[ids[3]] is None  # never saved: the error stopped the run first


def test_sqlite_without_json_stores_row_by_row_on_the_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "_JSON_SQLITE", (99, 0, 0))  # as if SQLite were older
    store, ids = _filled(f"sqlite:///{tmp_path / 'old.db'}")
    assert not store.batches_as_json and not store.saves_matches_unlocked
    threads = _recording(store)
    with MatchWriter(store) as writer:
        writer.save([Match(i, ids[0], None if i == ids[0] else ids[0], 90.0, "") for i in ids])
    assert threads == ["MainThread"]
    assert store.count_unclustered() == 0
