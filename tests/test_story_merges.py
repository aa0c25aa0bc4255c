"""Story clusters founded in parallel and merged later: the store moves what it already holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from aggregator import pipeline as pipeline_module
from aggregator.cluster import Item, cluster_items
from aggregator.config import ClusterSettings, Settings
from aggregator.models import Entry, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Store
from aggregator.store.schema import clusters

T0 = datetime(2026, 11, 24, 6, tzinfo=UTC)
TITLES = [
    "Comcast agrees to buy Time Warner Cable",
    "Senators question cable merger",
    "Comcast Time Warner Cable merger draws questions from senators",
    "Apple releases new iPhone update",
    "Senators to hold hearing on Comcast deal",
]
STORY = ClusterSettings(granularity="story")


def test_merges_across_committed_batches_match_one_batch_run(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(database_url)
    for i, title in enumerate(TITLES):
        feed, _ = store.add_feed(
            f"https://o{i}.example/rss",
            Outlet(f"o{i}"),
            source="config",
            interval_seconds=60,
            now=T0,
        )
        entry = Entry(
            guid=f"g{i}",
            url=None,
            canonical_url=None,
            title=title,
            summary="",
            published=T0 + timedelta(hours=i),
            content_hash=title,
            language="en",
        )
        store.save_fetch(feed, [entry], T0)
    # Two entries a page: the cluster that item 2 merges away is already committed.
    monkeypatch.setattr(pipeline_module, "CLUSTER_BATCH", 2)
    assert Pipeline(Settings(cluster=STORY), store).cluster() == len(TITLES)

    stored = store.clusters_between(T0, T0 + timedelta(days=1))
    grouping = {frozenset(e.guid for e in c.entries) for c in stored}
    items = [
        Item(i, f"o{i}", title, "", T0 + timedelta(hours=i), language="en")
        for i, title in enumerate(TITLES)
    ]
    clusterer_matches = cluster_items(items, STORY)
    expected: dict[int, set[str]] = {}
    for match in clusterer_matches:
        expected.setdefault(match.cluster_id, set()).add(f"g{match.entry_id}")
    assert grouping == {frozenset(g) for g in expected.values()}
    assert len(grouping) < len(TITLES)  # something was merged

    merged = [m for c in stored for m in c.matches.values() if "merged" in m.reason]
    assert merged, "the absorbed founder explains where it went"
    with store.engine.begin() as conn:
        rows = {row.id: row.size for row in conn.execute(select(clusters))}
    assert rows == {c.id: len(c.entries) for c in stored}
