"""The dashboard's queries and corrections against a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, text
from webdata import NOW, clustered, seeded

from aggregator import models
from aggregator.cluster import Merge
from aggregator.config import Settings
from aggregator.dedupe import dedupe, gold_report, load_rows
from aggregator.pipeline import Pipeline
from aggregator.store import Fetched, Store
from aggregator.store import dashboard as dashboard_module
from aggregator.store.dashboard import MERGE, SPLIT, DashboardStore, apply_corrections
from aggregator.store.schema import sessions

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


OUTLETS = ["home.de", "a.de", "b.de", "c.de", "d.de", "e.de", "f.de", "g.de"]


def _wide_stories(count: int) -> list[list[tuple[str, int]]]:
    """Stories starting at random over the last 30 h, on a 30-minute grid (so with ties).

    Every other story is slow: its later outlets follow hours apart, so an
    early-starting story can open late and a later-starting quick one (ranked
    in a later chunk) early. Stories are stored in random order of start, so
    cluster ids, the tie-breaker, do not follow the chunk order.
    """
    rng = random.Random(7)
    stories = []
    for number in range(count):
        start = rng.randrange(0, 1800, 30)
        spread = 600 if number % 2 == 0 else 30
        outlets = rng.sample(OUTLETS, rng.randint(1, 6))
        story = [(outlets[0], start)]
        story += [
            (outlet, max(0, start - rng.randrange(0, spread + 1, 10))) for outlet in outlets[1:]
        ]
        if rng.random() < 0.3:  # a second, later entry of one outlet
            story.append((outlets[-1], max(0, story[-1][1] - 60)))
        stories.append(story)
    return stories


def _brute_force_gaps(
    stories: list[list[tuple[str, int]]],
    ids: list[list[int]],
    home: list[str],
    since: datetime,
    min_outlets: int,
) -> list[tuple[int, datetime]]:
    """The gaps by their definition, from the stories as generated: (cluster id, open since).

    A story no outlet of `home` carries, with an entry since `since` and at
    least `min_outlets` outlets, opens when its `min_outlets`-th outlet first
    published; oldest gap first, ties by cluster id.
    """
    found = []
    for story, members in zip(stories, ids, strict=True):
        firsts: dict[str, datetime] = {}
        for outlet, minutes in story:
            published = NOW - timedelta(minutes=minutes)
            firsts[outlet] = min(published, firsts.get(outlet, published))
        latest = max(NOW - timedelta(minutes=minutes) for _, minutes in story)
        if set(home) & set(firsts) or latest < since or len(firsts) < min_outlets:
            continue
        found.append((sorted(firsts.values())[min_outlets - 1], members[0]))
    return [(cluster_id, opened) for opened, cluster_id in sorted(found)]


def _first_seen_rank(store: Store, cluster_ids: list[int]) -> dict[int, int]:
    """Each cluster's position among the candidates when ordered by first_seen (chunk order)."""
    loaded = DashboardStore(store).clusters(cluster_ids)
    order = sorted(cluster_ids, key=lambda i: (loaded[i].entries[0].published, i))
    return {cluster_id: rank for rank, cluster_id in enumerate(order)}


@pytest.mark.parametrize("chunk", [4, 500])
def test_gaps_ranked_in_chunks_equal_brute_force(
    database_url: str, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(dashboard_module, "_CHUNK", chunk)
    store = Store(database_url)
    stories = _wide_stories(48)
    ids = clustered(store, stories)
    data = DashboardStore(store)
    later_chunk_hits = 0
    for home in (["home.de"], ["home.de", "a.de"], ["g.de"], ["nobody.example"]):
        for min_outlets in (1, 2, 3, 5):
            expected = _brute_force_gaps(stories, ids, home, DAY, min_outlets)
            rank = _first_seen_rank(store, [cluster_id for cluster_id, _ in expected])
            for limit in (*range(1, 9), 1000):
                gaps = data.gaps(home, DAY, min_outlets, limit)
                assert [(g.cluster.id, g.open_since) for g in gaps] == expected[:limit]
                if limit < len(expected):  # cut short, where the early stop matters
                    later_chunk_hits += sum(rank[g.cluster.id] >= 4 for g in gaps)
    # The data must exercise what the chunks could get wrong: gaps in a cut-short
    # answer whose story starts after the first chunk yet opens early enough.
    assert later_chunk_hits > 0
    assert len(_brute_force_gaps(stories, ids, ["home.de"], DAY, 2)) > 3 * 4


def test_gaps_tie_on_a_chunk_boundary_goes_to_the_lower_id(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later chunk's story opening exactly when the last kept gap did still competes."""
    monkeypatch.setattr(dashboard_module, "_CHUNK", 4)
    store = Store(database_url)
    tie = [("b.de", 300), ("c.de", 300)]  # stored first: the lowest id; opens at its start
    slow = [[("b.de", 600 - n), ("c.de", 10)] for n in range(3)]  # early start, late opening
    kept = [("d.de", 400), ("e.de", 300)]  # fourth by start, opens with `tie`
    ids = clustered(store, [tie, *slow, kept])
    gaps = DashboardStore(store).gaps(["home.de"], DAY, 2, 1)
    assert [(g.cluster.id, g.open_since) for g in gaps] == [
        (ids[0][0], NOW - timedelta(minutes=300))
    ]


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


# Entries as a fetch brings them: (guid, headline); the lead repeats the headline.
Items = list[tuple[str, str]]


def _fetched(store: Store, outlet: str, items: Items) -> Fetched:
    feed, _ = store.add_feed(
        f"https://{outlet}/feed.xml",
        models.Outlet(outlet, "de"),
        source="config",
        interval_seconds=1800,
        now=NOW,
    )
    items_as_entries = [
        models.Entry(
            guid=guid,
            url=f"https://{outlet}/{guid}.html",
            canonical_url=f"https://{outlet}/{guid}.html",
            title=title,
            summary=f"{title}. Mehr in Kürze.",
            published=NOW - timedelta(minutes=10),
            language="de",
            content_hash=hashlib.sha256(title.encode()).hexdigest(),
        )
        for guid, title in items
    ]
    return Fetched(feed, items_as_entries, NOW)


def _found(store: Store, query: str) -> set[str]:
    return {hit.entry.guid for hit in DashboardStore(store).search(query)}


def _assert_search_index_matches_entries(store: Store) -> None:
    """SQLite: FTS5 compares its index with `entries`, row by row (missing, stale or twice)."""
    if store.engine.dialect.name == "sqlite":
        with store.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO entries_fts(entries_fts, rank) VALUES ('integrity-check', 1)")
            )


def test_search_finds_entries_of_a_save_fetches_batch_and_their_edits(
    database_url: str,
) -> None:
    store = Store(database_url)
    store.save_fetches(
        [
            _fetched(store, "a.de", [("a1", "Hochwasser in Passau"), ("a2", "Deichbruch")]),
            _fetched(store, "b.de", [("b1", "Hochwasser: Passau evakuiert")]),
            _fetched(store, "c.de", []),
        ]
    )
    assert _found(store, "Passau") == {"a1", "b1"}
    results = store.save_fetches(
        [
            # a1's headline changed: found by its new words, no longer by its old ones.
            _fetched(store, "a.de", [("a1", "Pegel in Passau sinkt"), ("a3", "Brückensperrung")]),
            _fetched(store, "c.de", [("c1", "Passauer Pegel sinkt wieder")]),
        ]
    )
    assert [(r.new, r.updated) for r in results] == [(1, 1), (1, 0)]
    assert _found(store, "Passau") == {"a1", "b1", "c1"}
    assert _found(store, "Pegel sinkt") == {"a1", "c1"}
    assert _found(store, "Hochwasser") == {"b1"}
    assert _found(store, "Brückensperrung") == {"a3"}
    assert _found(store, "Deichbruch") == {"a2"}
    _assert_search_index_matches_entries(store)


def test_a_failed_edit_leaves_the_search_index_as_it_was(database_url: str) -> None:
    store = Store(database_url)
    store.save_fetches([_fetched(store, "a.de", [("a1", "Hochwasser in Passau")])])

    def fail_after_the_update(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE entries SET"):
            raise RuntimeError("crash after the edit, before the commit")

    event.listen(store.engine, "after_cursor_execute", fail_after_the_update)
    edit = _fetched(store, "a.de", [("a1", "Pegel in Passau sinkt"), ("a2", "Deichbruch")])
    with pytest.raises(RuntimeError, match="before the commit"):
        store.save_fetches([edit])
    event.remove(store.engine, "after_cursor_execute", fail_after_the_update)
    assert _found(store, "Hochwasser") == {"a1"}
    assert _found(store, "Pegel") == _found(store, "Deichbruch") == set()
    _assert_search_index_matches_entries(store)


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


def test_correction_pass_redoes_only_undone_corrections(database_url: str) -> None:
    store, ids = seeded(database_url)
    data = DashboardStore(store)
    election, storm, scoop = ids["election"], ids["storm"][0], ids["scoop"][0]
    data.add_correction(SPLIT, election[3], election[0], "ed", NOW)
    data.add_correction(SPLIT, election[2], election[0], "ed", NOW)
    data.add_correction(MERGE, storm, scoop, "ed", NOW)
    assert apply_corrections(store) == 3
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert apply_corrections(store) == 0
    assert len(statements) == 1  # not two per correction

    # A story merge of the matcher takes one split entry back: only that is redone.
    store.save_matches([], [Merge(absorbed=election[3], into=election[0], score=80.0)])
    assert apply_corrections(store) == 1
    assert data.entries_by_id([election[3]])[election[3]].cluster_id == election[3]

    # A whole re-clustering undoes all three; its closing pass restores them.
    Pipeline(Settings(), store).recluster(NOW - timedelta(days=2))
    found = data.clusters([election[0], election[2], election[3], storm])
    assert [len(found[i].entries) for i in (election[0], election[2], election[3])] == [2, 1, 1]
    assert {e.id for e in found[storm].entries} >= {storm, scoop}
    statements.clear()
    assert apply_corrections(store) == 0
    assert len(statements) == 1


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


def test_sessions_end_by_logout_expiry_password_change_and_removal(database_url: str) -> None:
    store, _ = seeded(database_url)
    data = DashboardStore(store)
    data.set_password("anna", "h1", NOW)
    data.set_password("bob", "h1", NOW)
    later = NOW + timedelta(hours=1)
    assert data.start_session("anna", "h1", "a" * 64, NOW, later)
    assert not data.start_session("carl", "h1", "c" * 64, NOW, later)  # no such user
    assert data.session_valid("anna", "a" * 64, NOW)
    assert not data.session_valid("bob", "a" * 64, NOW)  # another editor's session
    assert not data.session_valid("anna", "a" * 64, later)  # expired
    data.end_session("a" * 64)
    assert not data.session_valid("anna", "a" * 64, NOW)
    for name, hash_ in (("anna", "1"), ("anna", "2"), ("bob", "3")):
        assert data.start_session(name, "h1", hash_ * 64, NOW, later)
    data.set_password("anna", "h2", NOW)
    assert not data.session_valid("anna", "1" * 64, NOW)
    assert not data.session_valid("anna", "2" * 64, NOW)
    assert data.session_valid("bob", "3" * 64, NOW)  # only anna's sessions ended
    assert data.remove_user("bob")
    data.set_password("bob", "h1", NOW)  # a new bob does not inherit the old one's sessions
    assert not data.session_valid("bob", "3" * 64, NOW)


def test_a_login_checked_against_a_password_changed_meanwhile_gets_no_session(
    database_url: str,
) -> None:
    """The password is verified (argon2, slow) before the session starts: a change between wins."""
    store, _ = seeded(database_url)
    data = DashboardStore(store)
    data.set_password("anna", "old", NOW)
    checked_against = data.password_hash("anna")  # the login verifies the old password...
    data.set_password("anna", "new", NOW)  # ...while a leaked password is being reset
    later = NOW + timedelta(hours=1)
    assert checked_against == "old"
    assert not data.start_session("anna", checked_against, "a" * 64, NOW, later)
    assert data.start_session("anna", "new", "b" * 64, NOW, later)


def test_a_new_login_ends_the_session_it_replaces(database_url: str) -> None:
    store, _ = seeded(database_url)
    data = DashboardStore(store)
    data.set_password("anna", "h1", NOW)
    later = NOW + timedelta(hours=1)
    assert data.start_session("anna", "h1", "a" * 64, NOW, later)
    assert data.start_session("anna", "h1", "b" * 64, NOW, later, replaces="a" * 64)
    assert not data.session_valid("anna", "a" * 64, NOW)
    assert data.session_valid("anna", "b" * 64, NOW)


def test_a_login_deletes_expired_sessions(database_url: str) -> None:
    store, _ = seeded(database_url)
    data = DashboardStore(store)
    data.set_password("anna", "h1", NOW)
    for hour in range(3):  # logins an hour apart, each lasting 90 minutes
        start = NOW + timedelta(hours=hour)
        assert data.start_session(
            "anna", "h1", str(hour) * 64, start, start + timedelta(minutes=90)
        )
    with store.engine.connect() as conn:
        left = conn.execute(select(sessions.c.id_hash).order_by(sessions.c.id)).scalars().all()
    assert left == ["1" * 64, "2" * 64]


def test_a_session_is_found_by_its_index(tmp_path: Path) -> None:
    """The check every dashboard request makes must not scan the sessions table."""
    store = Store(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    seen: list[tuple[str, tuple[object, ...]]] = []

    def record(
        conn: object, cursor: object, statement: str, parameters: tuple[object, ...], *rest: object
    ) -> None:
        seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    DashboardStore(store).session_valid("anna", "a" * 64, NOW)
    event.remove(store.engine, "before_cursor_execute", record)
    [(statement, parameters)] = [(s, p) for s, p in seen if "sessions" in s]
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    details = " ".join(row[3] for row in plan)
    assert "SEARCH sessions USING INDEX" in details and "SCAN" not in details, details
