"""The dashboard's queries and corrections against a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

from webdata import NOW, seeded

from aggregator.config import Settings
from aggregator.dedupe import dedupe, gold_report, load_rows
from aggregator.pipeline import Pipeline
from aggregator.store.dashboard import MERGE, SPLIT, DashboardStore, apply_corrections

DAY = NOW - timedelta(hours=24)
GROWTH = NOW - timedelta(hours=2)


def test_now_ranks_by_outlets_and_loads_every_entry(database_url: str) -> None:
    store, ids = seeded(database_url)
    stories = DashboardStore(store).now(DAY, GROWTH, 10)
    assert [s.cluster.id for s in stories][:3] == [
        ids["election"][0],
        ids["storm"][0],
        ids["scoop"][0],
    ]
    assert stories[0].cluster.outlets == ["tagesschau.de", "spiegel.de", "zeit.de", "news.de"]
    assert stories[0].growth == 1  # news.de joined an hour ago
    assert (
        DashboardStore(store).now(NOW - timedelta(minutes=45), GROWTH, 10)[0].cluster.id
        == (ids["hostile"][0])
    )


def test_gaps_oldest_first_and_scoops(database_url: str) -> None:
    store, ids = seeded(database_url)
    data = DashboardStore(store)
    gaps = data.gaps(["tagesschau.de"], DAY, 3, 10)
    assert [g.cluster.id for g in gaps] == [ids["storm"][0]]
    assert gaps[0].open_since == NOW - timedelta(minutes=470)  # when the third outlet ran it
    assert data.gaps(["tagesschau.de"], DAY, 4, 10) == []
    assert [g.cluster.id for g in data.gaps(["spiegel.de"], DAY, 1, 10)] == ids["hostile"]
    assert [c.id for c in data.scoops(["tagesschau.de"], DAY, 10)] == [
        ids["election"][0],
        ids["scoop"][0],
    ]
    assert data.gaps([], DAY, 1, 10) == []


def test_search_folds_umlauts_and_filters(database_url: str) -> None:
    store, ids = seeded(database_url)
    data = DashboardStore(store)
    assert {h.entry.id for h in data.search("Sachsen CDU")} == set(ids["election"])
    assert [h.entry.id for h in data.search("sachs", outlet="zeit.de")] == [ids["election"][2]]
    assert data.search("Bahnverkehr", min_outlets=4) == []
    assert len(data.search("bahnverkehr", min_outlets=3)) == 3
    assert data.search('"; DROP TABLE entries; --') == []
    assert (
        data.search("Sachsen", since=NOW - timedelta(minutes=90))[0].entry.id == ids["election"][3]
    )
    if store.engine.dialect.name == "sqlite":
        assert [h.entry.id for h in data.search("arger")] == ids["hostile"]


def test_split_survives_reclustering_and_becomes_a_labelled_example(
    database_url: str, tmp_path
) -> None:
    store, ids = seeded(database_url)
    data = DashboardStore(store)
    leaving = ids["election"][2]
    data.add_correction(SPLIT, leaving, ids["election"][0], "ed", NOW)
    assert apply_corrections(store) == 1
    assert apply_corrections(store) == 0  # converged
    pipeline = Pipeline(Settings(), store)
    freed, _ = pipeline.recluster(NOW - timedelta(days=2))
    assert freed == 10
    # The matcher alone would put it back; clustering ends with the correction pass.
    assert data.entries_by_id([leaving])[leaving].cluster_id == leaving
    assert apply_corrections(store) == 0
    election = data.clusters([ids["election"][0]])[ids["election"][0]]
    assert leaving not in {e.id for e in election.entries}
    assert len(election.outlets) == 3
    alone = data.clusters([leaving])[leaving]
    assert [e.id for e in alone.entries] == [leaving]

    rows = list(data.labelled_examples())
    assert {r["story"] for r in rows} == {f"c{ids['election'][0]}", f"c{leaving}"}
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    rows_read = load_rows(path)  # the export is `dedupe --gold` input
    assert len(rows_read) == 4
    assert "BCubed" in gold_report(rows_read, dedupe(rows_read, Settings().cluster))


def test_merge_and_a_later_split_overrules_it(database_url: str) -> None:
    store, ids = seeded(database_url)
    data = DashboardStore(store)
    storm, scoop = ids["storm"][0], ids["scoop"][0]
    data.add_correction(MERGE, storm, scoop, "ed", NOW)
    assert apply_corrections(store) == 1
    merged = data.clusters([storm, scoop])
    assert scoop not in merged and len(merged[storm].entries) == 5
    assert merged[storm].matches[scoop].reason == "merged by an editor"
    data.add_correction(SPLIT, scoop, storm, "ed", NOW)
    assert [c.kind for c in data.corrections()] == [SPLIT]
    apply_corrections(store)
    assert apply_corrections(store) == 0
    assert [e.id for e in data.clusters([scoop])[scoop].entries] == [scoop]


def test_headline_changes_are_kept(database_url: str) -> None:
    from dataclasses import replace

    from aggregator.models import Entry

    store, ids = seeded(database_url)
    data = DashboardStore(store)
    feed = next(f for f in store.feeds() if f.outlet == "news.de")
    entry_id = ids["hostile"][0]
    old = data.entries_by_id([entry_id])[entry_id]
    changed: Entry = replace(old, title="Ärger um Maut-Pläne der Regierung", content_hash="new")
    store.save_fetch(feed, [changed], NOW + timedelta(minutes=5))
    history = data.title_history([entry_id])
    assert history == {entry_id: [(old.title, NOW + timedelta(minutes=5))]}


def test_users_and_tokens(database_url: str) -> None:
    store, _ = seeded(database_url)
    data = DashboardStore(store)
    assert data.set_password("anna", "h1", NOW) is True
    assert data.set_password("anna", "h2", NOW) is False
    assert data.password_hash("anna") == "h2"
    assert data.add_token("anna", "f" * 64, NOW) and not data.add_token("bob", "e" * 64, NOW)
    assert data.token_user("f" * 64) == "anna" and data.token_user("0" * 64) is None
