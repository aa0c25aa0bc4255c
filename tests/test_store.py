"""The store against real databases: SQLite files, and PostgreSQL when configured."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, delete, event, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from aggregator.models import Entry, Feed, Item, Match, Outlet
from aggregator.store import Busy, Fetched, SaveResult, Store
from aggregator.store.schema import (
    MIGRATIONS,
    clusters,
    digests,
    entries,
    schema_migrations,
    sessions,
    users,
)

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)


def entry(guid: str, title: str = "Bundestag beschließt Haushalt", **kw: object) -> Entry:
    fields: dict[str, object] = {
        "url": f"https://example.de/{guid}",
        "canonical_url": f"https://example.de/{guid}",
        "summary": "Nach langer Debatte stimmte die Mehrheit zu.",
        "published": NOW - timedelta(hours=1),
        "content_hash": f"hash-{title}",
    }
    fields.update(kw)
    return Entry(guid=guid, title=title, **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(database_url: str) -> Store:
    return Store(database_url)


def add(store: Store, url: str = "https://example.de/rss", outlet: str = "example.de") -> Feed:
    feed, _ = store.add_feed(
        url, Outlet(outlet, "de"), source="config", interval_seconds=1800, now=NOW
    )
    return feed


def test_migrations_run_once_and_refuse_a_newer_database(database_url: str) -> None:
    first = Store(database_url)
    assert first.schema_version == len(MIGRATIONS)
    again = Store(database_url)
    with again.engine.begin() as conn:
        versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        conn.execute(schema_migrations.insert().values(version=99, applied_at=NOW))
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(database_url)


def test_processes_opening_a_new_database_together_migrate_it_once(database_url: str) -> None:
    """serve and a cron run starting together: each step must run once, none may fail."""
    opening = "import sys; from aggregator.store import Store; Store(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", opening, database_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [process.communicate(timeout=120)[1].decode() for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    with Store(database_url).engine.connect() as conn:
        versions = conn.execute(select(schema_migrations.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))


def test_the_upgrade_drops_the_cluster_index_the_covering_one_replaced(database_url: str) -> None:
    store = Store(database_url)
    # A database left at version 4 still has the single-column index.
    with store.engine.begin() as conn:
        conn.execute(text("CREATE INDEX ix_entries_cluster_id ON entries (cluster_id)"))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= 5))
    assert Store(database_url).schema_version == len(MIGRATIONS)
    with store.engine.connect() as conn:
        names = {index["name"] for index in inspect(conn).get_indexes("entries")}
    assert "ix_entries_cluster_id" not in names
    assert "ix_entries_cluster_published" in names


def test_the_upgrade_counts_periods_written_before_it_as_mailed(database_url: str) -> None:
    """Else the first run after the upgrade would mail every recent period again."""
    store = Store(database_url)
    store.record_digest("daily", NOW - timedelta(days=1), NOW, [], 3, NOW)
    with store.engine.begin() as conn:  # as a database at version 5 has it
        conn.execute(update(digests).values(mail_planned_at=None))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= 6))
    assert store.unmailed_periods("daily", NOW - timedelta(days=7)) != []
    upgraded = Store(database_url)
    assert upgraded.unmailed_periods("daily", NOW - timedelta(days=7)) == []


def test_the_upgrade_adds_the_sessions_table_and_keeps_the_data(database_url: str) -> None:
    store = Store(database_url)
    add(store)
    with store.engine.begin() as conn:  # as a database at version 6 has it
        conn.execute(users.insert().values(name="anna", password_hash="h", created_at=NOW))
        conn.execute(text("DROP TABLE sessions"))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= 7))
    assert "sessions" not in inspect(store.engine).get_table_names()
    upgraded = Store(database_url)
    assert upgraded.schema_version == len(MIGRATIONS)
    with upgraded.engine.connect() as conn:
        assert "sessions" in inspect(conn).get_table_names()
        assert conn.execute(select(users.c.name)).scalars().all() == ["anna"]
        assert conn.execute(select(sessions.c.id)).all() == []
    assert [feed.url for feed in upgraded.feeds()] == ["https://example.de/rss"]


def test_the_upgrade_drops_the_unused_canonical_url_index(database_url: str) -> None:
    store = Store(database_url)
    add(store)
    with store.engine.begin() as conn:  # as a database at version 7 has it
        conn.execute(text("CREATE INDEX ix_entries_canonical_url ON entries (canonical_url)"))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version >= 8))
    upgraded = Store(database_url)
    assert upgraded.schema_version == len(MIGRATIONS)
    with upgraded.engine.connect() as conn:
        names = {index["name"] for index in inspect(conn).get_indexes("entries")}
    assert "ix_entries_canonical_url" not in names
    assert "ix_entries_published" in names
    assert [feed.url for feed in upgraded.feeds()] == ["https://example.de/rss"]


def test_waiting_entries_are_found_by_index_without_the_single_column_one(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'plan.sqlite'}")
    with store.engine.connect() as conn:
        plan = " ".join(
            row[3]
            for row in conn.execute(
                text(
                    "EXPLAIN QUERY PLAN SELECT id FROM entries WHERE cluster_id IS NULL "
                    "ORDER BY published, id LIMIT 10"
                )
            )
        )
    assert "USING INDEX ix_entries_cluster_published" in plan or "USING COVERING INDEX" in plan
    assert "SCAN entries" not in plan


def test_add_feed_is_idempotent_and_due_at_once(store: Store) -> None:
    feed = add(store)
    again, new = store.add_feed(
        feed.url, Outlet("example.de"), source="cli", interval_seconds=60, now=NOW
    )
    assert not new and again.id == feed.id
    assert [f.url for f in store.due_feeds(NOW)] == [feed.url]
    store.save_feed_state(replace(feed, next_fetch_at=NOW + timedelta(hours=1)), NOW)
    assert store.due_feeds(NOW) == []
    assert [f.url for f in store.due_feeds(NOW + timedelta(hours=2))] == [feed.url]
    store.save_feed_state(replace(feed, disabled=True, disabled_reason="HTTP 410 Gone"), NOW)
    assert store.due_feeds(NOW + timedelta(days=9)) == []
    assert store.feeds(include_disabled=False) == []


def test_entries_are_unique_per_feed_and_updated_in_place(store: Store) -> None:
    feed = add(store)
    result = store.save_fetch(feed, [entry("a"), entry("a"), entry("b", "Zweiter Artikel")], NOW)
    assert (result.new, result.updated) == (2, 0)
    assert store.save_fetch(feed, [entry("a"), entry("b", "Zweiter Artikel")], NOW).new == 0
    pending = store.unclustered()
    store.save_matches([Match(e.id or 0, e.id or 0, None, 100.0, "founder") for e in pending])
    edited = entry("a", "Bundestag beschließt Haushalt für 2027", content_hash="new")
    result = store.save_fetch(feed, [edited], NOW)
    assert (result.new, result.updated) == (0, 1)
    stored = store.clusters_between(NOW - timedelta(days=1), NOW)
    titles = sorted(e.title for c in stored for e in c.entries)
    assert titles == ["Bundestag beschließt Haushalt für 2027", "Zweiter Artikel"]
    assert all(e.cluster_id is not None for c in stored for e in c.entries)


def test_unclustered_pages_follow_on_from_the_last_entry_read(store: Store) -> None:
    """Pages by (published, id): ties split across pages lose nothing, whatever the session zone.

    On PostgreSQL the session runs in New York time: a position bound as a
    time with zone against the column's UTC times skipped or repeated entries.
    """
    if store.engine.dialect.name == "postgresql":
        event.listen(
            store.engine,
            "connect",
            lambda dbapi_conn, _: dbapi_conn.execute("SET TIME ZONE 'America/New_York'"),
        )
        store.engine.dispose()
    feed = add(store)
    times = [
        NOW - timedelta(hours=h, minutes=m)
        for h, m in ((3, 0), (2, 0), (2, 0), (2, 0), (1, 0), (2, 0), (3, 30))
    ]
    store.save_fetch(feed, [entry(f"e{i}", published=t) for i, t in enumerate(times)], NOW)
    expected = sorted(store.unclustered(), key=lambda e: (e.published, e.id))
    read: list[tuple[Item, str]] = []
    page = store.unclustered_items(2)
    while page and len(read) <= len(times):
        read += page
        last = read[-1][0]
        page = store.unclustered_items(2, (last.published, last.id))
    assert read == [(Item.from_entry(e), e.content_hash) for e in expected]
    assert len({item.id for item, _ in read}) == len(times)


def test_same_guid_in_two_feeds_is_two_entries(store: Store) -> None:
    one, two = add(store), add(store, "https://other.de/rss", "other.de")
    store.save_fetch(one, [entry("x")], NOW)
    store.save_fetch(two, [entry("x")], NOW)
    assert len(store.unclustered()) == 2


def test_a_failing_save_stores_nothing(store: Store) -> None:
    feed = add(store)
    naive = entry("late", published=datetime(2026, 11, 25, 5, 0))
    with pytest.raises(Exception, match="naive datetime"):
        store.save_fetch(replace(feed, etag='"v2"'), [entry("ok"), naive], NOW)
    assert store.unclustered() == []
    assert store.feeds()[0].etag is None


def test_permanent_redirect_moves_the_feed_unless_the_url_is_taken(store: Store) -> None:
    feed = add(store)
    add(store, "https://taken.de/rss", "taken.de")
    store.save_feed_state(replace(feed, url="https://example.de/new-rss"), NOW)
    assert "https://example.de/new-rss" in [f.url for f in store.feeds()]
    store.save_feed_state(replace(feed, url="https://taken.de/rss"), NOW)
    assert sorted(f.url for f in store.feeds()) == [
        "https://example.de/new-rss",
        "https://taken.de/rss",
    ]


def test_clusters_keep_figures_and_explanations(store: Store) -> None:
    one, two = add(store), add(store, "https://other.de/rss", "other.de")
    store.save_fetch(one, [entry("a", published=NOW - timedelta(hours=3))], NOW)
    store.save_fetch(two, [entry("b", published=NOW - timedelta(hours=2))], NOW)
    a, b = store.unclustered()
    assert a.id is not None and b.id is not None
    store.save_matches(
        [Match(a.id, a.id, None, 100.0, "founder"), Match(b.id, a.id, a.id, 91.5, "title 91")]
    )
    assert store.unclustered() == []
    (cluster,) = store.clusters_between(NOW - timedelta(hours=4), NOW)
    assert cluster.id == a.id
    assert cluster.outlets == ["example.de", "other.de"]
    assert cluster.matches[b.id].matched_id == a.id
    assert cluster.matches[b.id].score == pytest.approx(91.5)
    with store.engine.begin() as conn:
        row = conn.execute(select(clusters)).mappings().one()
    assert (row["size"], row["outlet_count"]) == (2, 2)
    assert row["first_seen"] == NOW - timedelta(hours=3)
    # Only the period decides which clusters are selected, but each comes whole.
    assert store.clusters_between(NOW - timedelta(hours=2), NOW)[0].entries[0].guid == "a"
    assert store.clusters_between(NOW, NOW + timedelta(hours=1)) == []
    primed = store.clustered_since(NOW - timedelta(hours=2, minutes=30))
    assert [e.guid for e, _ in primed] == ["b"]


def test_a_digest_period_is_recorded_once(store: Store) -> None:
    start, end = NOW - timedelta(days=1), NOW
    assert not store.digest_written("daily", start, end)
    store.record_digest("daily", start, end, [], 0, NOW)
    assert store.digest_written("daily", start, end)
    with pytest.raises(IntegrityError):
        store.record_digest("daily", start, end, [], 0, NOW)


def test_only_one_run_holds_the_lock(database_url: str) -> None:
    first, second = Store(database_url), Store(database_url)
    with first.exclusive("run"):
        with (
            pytest.raises(Busy, match="another aggregator run"),
            second.exclusive("run", wait=0.3),
        ):
            pass
        with second.exclusive("other"):
            pass
    with second.exclusive("run"):
        pass


def test_save_fetches_stores_several_feeds_in_one_transaction(store: Store) -> None:
    one, two = add(store), add(store, "https://other.de/rss", "other.de")
    commits: list[object] = []
    event.listen(store.engine, "commit", commits.append)
    results = store.save_fetches(
        [
            Fetched(replace(one, etag='"1"'), [entry("a"), entry("b", "Zweiter Artikel")], NOW),
            Fetched(replace(two, last_status="not_modified"), [], NOW),
            # A guid listed twice in one batch is stored once.
            Fetched(replace(one, etag='"2"'), [entry("a"), entry("c", "Dritter Artikel")], NOW),
        ]
    )
    assert len(commits) == 1
    assert results == [SaveResult(2, 0), SaveResult(0, 0), SaveResult(1, 0)]
    assert sorted(e.guid for e in store.unclustered()) == ["a", "b", "c"]
    states = {f.url: f for f in store.feeds()}
    assert states[one.url].etag == '"2"'
    assert states[two.url].last_status == "not_modified"


def test_entries_stored_in_bulk_compare_equal_to_values_bound_by_sqlalchemy(store: Store) -> None:
    """New entries go to the driver without SQLAlchemy; their stored form must not differ.

    SQLite compares datetimes as text, so a time stored without its
    microseconds would never equal the same time bound by a query.
    """
    feed = add(store)
    whole = NOW.replace(hour=3)
    fraction = NOW - timedelta(minutes=1, microseconds=250)
    later = NOW + timedelta(seconds=1)
    store.save_fetches(
        [
            Fetched(
                feed,
                [
                    entry("a", published=whole),
                    entry("b", published=fraction, published_estimated=True),
                ],
                later,
            )
        ]
    )
    with store.engine.begin() as conn:

        def guids(*where: ColumnElement[bool]) -> list[str]:
            query = select(entries.c.guid).where(*where).order_by(entries.c.guid)
            return list(conn.execute(query).scalars())

        assert guids(entries.c.published == whole) == ["a"]
        assert guids(entries.c.published == fraction) == ["b"]
        assert guids(entries.c.published_estimated.is_(True)) == ["b"]
        assert guids(entries.c.first_seen_at == later, entries.c.updated_at == later) == ["a", "b"]
    assert [(e.guid, e.published) for e in store.unclustered()] == [("a", whole), ("b", fraction)]


def test_more_new_entries_than_one_statement_takes_are_all_stored(store: Store) -> None:
    feed = add(store)
    many = [entry(f"g{n}", f"Meldung {n}") for n in range(2001)]  # pages of 1000 rows
    assert store.save_fetches([Fetched(feed, many, NOW)]) == [SaveResult(2001, 0)]
    assert store.count_unclustered() == 2001
    assert store.save_fetches([Fetched(feed, many, NOW)]) == [SaveResult(0, 0)]


def test_url_moves_in_one_batch_are_decided_in_order(store: Store) -> None:
    """As one transaction per feed would: a URL left by one feed can be taken by the next."""
    one = add(store, "https://a.de/rss", "a.de")
    two = add(store, "https://b.de/rss", "b.de")
    three = add(store, "https://c.de/rss", "c.de")
    store.save_fetches(
        [
            Fetched(replace(one, url="https://a.de/new"), [], NOW),
            Fetched(replace(two, url="https://a.de/rss"), [], NOW),
            # Taken by `one` earlier in this batch: three keeps its URL.
            Fetched(replace(three, url="https://a.de/new"), [], NOW),
        ]
    )
    urls = {f.id: f.url for f in store.feeds()}
    assert urls == {one.id: "https://a.de/new", two.id: "https://a.de/rss", three.id: three.url}


def test_sync_feeds_costs_a_handful_of_statements_for_thousands_of_feeds(store: Store) -> None:
    wanted = [
        (f"https://outlet{n % 400}.example/rss/{n}", Outlet(f"outlet{n % 400}", "de"))
        for n in range(2000)
    ]
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    sync = partial(store.sync_feeds, source="config", interval_seconds=1800, now=NOW)
    assert sync(wanted) == 2000
    first = len(statements)
    assert first <= 10, statements
    moved = [(url, Outlet("merged", "en")) for url, _ in wanted[:100]] + wanted[100:]
    assert sync(moved) == 0
    assert len(statements) - first <= 10, statements[first:]
    feeds = store.feeds()
    assert len(feeds) == 2000
    assert sum(1 for f in feeds if f.outlet == "merged") == 100
    assert store.outlet_languages()["merged"] == "en"


SYNC = """
import sys
from aggregator.config import Settings
from aggregator.pipeline import Pipeline
from aggregator.store import Store
settings = Settings.model_validate({
    "database": {"url": sys.argv[1]},
    "outlets": [
        {"name": f"o{i}.example", "feeds": [f"https://o{i}.example/f{j}.xml" for j in range(5)]}
        for i in range(60)
    ],
})
store = Store(sys.argv[1])
sys.stdin.readline()  # every process is ready: sync together
Pipeline(settings, store).sync_config()
"""


def test_processes_syncing_one_configuration_together_all_succeed(database_url: str) -> None:
    """serve starting beside a cron run: both add the configuration's new outlets and feeds."""
    Store(database_url)  # migrated first, as in use
    for _ in range(3):
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", SYNC, database_url],
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        for process in processes:  # all started (and their stores open) before any syncs
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[1] for process in processes]
        assert [process.returncode for process in processes] == [0] * 6, outputs
    assert len(Store(database_url).feeds()) == 300
