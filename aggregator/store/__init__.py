"""Persistence: the only module that speaks SQL.

Every public method is one transaction, so a crash at any point leaves the
database as it was before the call or after it, never in between.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    RowMapping,
    Select,
    Table,
    Update,
    bindparam,
    create_engine,
    event,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry

from aggregator.models import Cluster, Entry, Feed, Item, Match, Outlet
from aggregator.store import lock, schema
from aggregator.store.lock import Busy
from aggregator.store.schema import clusters, digests, entries, feeds, outlets

__all__ = ["Busy", "FeedStatusRow", "Fetched", "SaveResult", "Store"]

# Rows named in one IN (...) list: well below every database's limit on parameters.
_IN_CHUNK = 500


@dataclass(frozen=True)
class SaveResult:
    new: int
    updated: int


@dataclass(frozen=True)
class Fetched:
    """A feed's state after a fetch and the entries it brought: one item of `save_fetches`."""

    feed: Feed
    entries: Sequence[Entry]
    now: datetime


class Merged(Protocol):
    """A merge of two clusters as the matcher reports it (`aggregator.cluster.Merge`)."""

    @property
    def absorbed(self) -> int: ...
    @property
    def into(self) -> int: ...
    @property
    def score(self) -> float: ...
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class FeedStatusRow:
    feed: Feed
    entries: int


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# What the schema, full-text search and the run lock are written for. Another
# backend would run without the lock (two runs mailing twice), so it is refused.
BACKENDS = ("sqlite", "postgresql")


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() not in BACKENDS:
        raise RuntimeError(
            f"aggregator stores in SQLite or PostgreSQL, not {parsed.get_backend_name()}"
        )
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we declare; plain postgresql:// would ask for psycopg2.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def _feed(row: RowMapping) -> Feed:
    return Feed(
        id=row["id"],
        url=row["url"],
        outlet=row["outlet"],
        title=row["title"],
        language=row["language"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        last_fetched_at=row["last_fetched_at"],
        next_fetch_at=row["next_fetch_at"],
        interval_seconds=row["interval_seconds"],
        consecutive_errors=row["consecutive_errors"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        disabled=row["disabled"],
        disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"],
    )


def _clustered_since(since: datetime) -> tuple[ColumnElement[bool], ...]:
    """Entries the matcher's window holds: clustered, published since `since`."""
    return entries.c.cluster_id.is_not(None), entries.c.published >= since


def _entry(row: RowMapping) -> Entry:
    return Entry(
        id=row["id"],
        feed_id=row["feed_id"],
        guid=row["guid"],
        url=row["url"],
        canonical_url=row["canonical_url"],
        title=row["title"],
        summary=row["summary"],
        published=row["published"],
        published_estimated=row["published_estimated"],
        author=row["author"],
        language=row["language"],
        content_hash=row["content_hash"],
        outlet=row["outlet"],
        cluster_id=row["cluster_id"],
    )


def _match(row: RowMapping) -> Match:
    return Match(
        entry_id=row["id"],
        cluster_id=row["cluster_id"],
        matched_id=row["matched_id"],
        score=row["match_score"] if row["match_score"] is not None else 100.0,
        reason=row["match_reason"] or "",
    )


_FEED_COLUMNS = [*feeds.c, outlets.c.name.label("outlet")]
_FEEDS_WITH_OUTLET = select(*_FEED_COLUMNS).join_from(feeds, outlets)
_ENTRIES_WITH_OUTLET = (
    select(*entries.c, outlets.c.name.label("outlet"))
    .join_from(entries, feeds)
    .join(outlets, feeds.c.outlet_id == outlets.c.id)
)


# What the matcher reads of an entry: `Item`'s fields in its order, then the content hash.
_ITEMS = _ENTRIES_WITH_OUTLET.with_only_columns(
    entries.c.id,
    outlets.c.name,
    entries.c.title,
    entries.c.summary,
    entries.c.published,
    entries.c.canonical_url,
    entries.c.language,
    entries.c.content_hash,
)


def _unclustered(
    query: Select[Any], limit: int | None, after: tuple[datetime, int] | None
) -> Select[Any]:
    """`query` narrowed to unclustered entries in the matcher's order, from after `after` on."""
    query = query.where(entries.c.cluster_id.is_(None))
    if after is not None:
        # A row-value comparison, not "published > p OR (published = p AND id > i)":
        # the OR made SQLite read and sort every remaining entry for each page
        # (100,000 entries in pages of 2,000: 1.8 s instead of 0.6 s).
        # The right side a plain tuple, so each value is bound with its column's
        # type: as tuple_() it bound an aware datetime, which PostgreSQL compared
        # with the stored UTC times in the session's time zone.
        query = query.where(tuple_(entries.c.published, entries.c.id) > after)
    return query.order_by(entries.c.published, entries.c.id).limit(limit)


def _bulk_update(table: Table, key: str, names: Sequence[str]) -> Update:
    """An UPDATE by primary key for executemany; bind names are `key` and `new_<column>`."""
    return (
        update(table)
        .where(table.c.id == bindparam(key))
        .values({name: bindparam(f"new_{name}") for name in names})
    )


# Run with many parameter sets at once: a statement per row costs more than the rows.
_UPDATE_ENTRY = _bulk_update(
    entries,
    "entry_id",
    (
        "url",
        "canonical_url",
        "title",
        "summary",
        "author",
        "language",
        "content_hash",
        "updated_at",
    ),
)
# The columns of a new entry, in the order of the values `_entry_rows` gives.
_NEW_ENTRY = (
    "feed_id",
    "guid",
    "url",
    "canonical_url",
    "title",
    "summary",
    "published",
    "published_estimated",
    "author",
    "language",
    "content_hash",
    "first_seen_at",
    "updated_at",
)
# A DB-API placeholder in each paramstyle the drivers for SQLite and PostgreSQL use.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@dataclass(frozen=True)
class _EntryBinds:
    """How SQLAlchemy would hand the typed values of a new entry to one database's driver.

    New entries go to the driver as they are (`_insert_entries`), so their
    values are converted here, by the column types' own bind processors: the
    same values in the same form as any statement through SQLAlchemy, naive
    datetimes still refused. The fetch time is the same for a feed's entries
    and is converted once.
    """

    published: Callable[[Any], Any]
    flag: Callable[[Any], Any]
    moment: Callable[[Any], Any]

    @classmethod
    def of(cls, dialect: Dialect) -> _EntryBinds:
        def processor(column: str) -> Callable[[Any], Any]:
            kind = entries.c[column].type.dialect_impl(dialect)
            return kind.bind_processor(dialect) or (lambda value: value)

        return cls(
            processor("published"), processor("published_estimated"), processor("updated_at")
        )


@lru_cache(maxsize=64)
def _insert_entries_sql(dialect: Dialect, rows: int) -> str:
    """A multi-row INSERT of `rows` new entries in the driver's own placeholders."""
    quote = dialect.identifier_preparer.quote
    marks = ", ".join([_PLACEHOLDERS[dialect.paramstyle]] * len(_NEW_ENTRY))
    return (
        f"INSERT INTO {quote(entries.name)} ({', '.join(map(quote, _NEW_ENTRY))}) VALUES "
        + ", ".join([f"({marks})"] * rows)
    )


def _insert_entries(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert new entries (`_NEW_ENTRY` values, converted by `_EntryBinds`), many per statement.

    Many rows per statement because SQLite's full-text trigger flushes its
    index once per statement, not per row: 1.3 s instead of 2.3 s for 25,000
    entries. SQLAlchemy does the same for a list of rows ("insertmanyvalues"),
    but its handling of each row and value held the interpreter lock, which
    the fetch run's event loop needs, for about 7 us per entry: the statement
    goes to the driver as it is, in pages of the size SQLAlchemy would use
    (100,000 entries, 8 feeds per transaction: the lock held 1.5 s instead
    of 2.2 s, 5.3 s of CPU instead of 6.1 s).
    """
    dialect = conn.dialect
    page = min(
        dialect.insertmanyvalues_page_size,
        dialect.insertmanyvalues_max_parameters // len(_NEW_ENTRY),
    )
    for start in range(0, len(rows), page):
        chunk = rows[start : start + page]
        values = tuple(chain.from_iterable(chunk))
        conn.exec_driver_sql(_insert_entries_sql(dialect, len(chunk)), values)


# What a clustering decision sets in an entry's row, in the order `_assign_entries` binds it.
_ASSIGNMENT = ("cluster_id", "matched_id", "match_score", "match_reason")


# SQLite 3.38 and later have JSON built in (and UPDATE ... FROM, from 3.33): a
# batch of decisions is then a few statements, each given the whole batch as a
# JSON array, and SQLite runs each without the interpreter lock, so a thread can
# store one batch while the matcher decides the next (`MatchWriter`). With a
# statement per entry (executemany) that thread would take the lock back for
# every row, waiting each time for the matcher to give it up.
_JSON_SQLITE = (3, 38, 0)
# The ids of a batch's clusters, given as a JSON array bound to `ids`.
_JSON_IDS = func.json_each(bindparam("ids")).table_valued("value")
_ASSIGN_FROM_JSON = text(
    "UPDATE entries SET cluster_id = batch.value ->> 1, matched_id = batch.value ->> 2, "
    "match_score = batch.value ->> 3, match_reason = batch.value ->> 4 "
    "FROM json_each(:rows) AS batch WHERE entries.id = batch.value ->> 0"
)


def _cluster_figures(members: Any) -> Select[Any]:
    """Each cluster's first and last publication, size and outlets, for the clusters `members`."""
    return (
        select(
            entries.c.cluster_id,
            func.min(entries.c.published).label("first_seen"),
            func.max(entries.c.published).label("last_seen"),
            func.count().label("size"),
            func.count(feeds.c.outlet_id.distinct()).label("outlet_count"),
        )
        .join_from(entries, feeds)
        .where(entries.c.cluster_id.in_(members))
        .group_by(entries.c.cluster_id)
    )


_FIGURES_FROM_JSON = _cluster_figures(select(_JSON_IDS.c.value)).subquery()
_CLUSTER_FIGURES_FROM_JSON = (
    update(clusters)
    .where(clusters.c.id == _FIGURES_FROM_JSON.c.cluster_id)
    .values(
        {
            name: _FIGURES_FROM_JSON.c[name]
            for name in ("first_seen", "last_seen", "size", "outlet_count")
        }
    )
)


def _batches_as_json(engine: Engine) -> bool:
    """Whether `engine` is SQLite with JSON built in: batches of decisions as JSON arrays."""
    version = getattr(engine.dialect.dbapi, "sqlite_version_info", None)
    return engine.dialect.name == "sqlite" and version is not None and version >= _JSON_SQLITE


# A feed's stored entries among some guids: built once, not once per feed stored.
_KNOWN_GUIDS = select(entries.c.id, entries.c.guid, entries.c.content_hash).where(
    entries.c.feed_id == bindparam("feed_id"),
    entries.c.guid.in_(bindparam("guids", expanding=True)),
)
# What a fetch changes in a feed's row, besides a URL moved by a permanent redirect.
_FEED_STATE = (
    "title",
    "language",
    "etag",
    "last_modified",
    "last_fetched_at",
    "next_fetch_at",
    "interval_seconds",
    "consecutive_errors",
    "last_status",
    "last_error",
    "disabled",
    "disabled_reason",
    "failing_since",
)
_UPDATE_FEED = _bulk_update(feeds, "feed_id", ("url", *_FEED_STATE))
_MOVE_FEED = _bulk_update(feeds, "feed_id", ("outlet_id",))
_UPDATE_OUTLET = _bulk_update(outlets, "outlet_id", ("language", "home_url"))
_CLUSTER_FIGURES = _bulk_update(
    clusters, "cluster", ("first_seen", "last_seen", "size", "outlet_count")
)


def _prefixed(fields: dict[str, Any]) -> dict[str, Any]:
    """Bind names for `_UPDATE_ENTRY` (they may not equal column names)."""
    return {f"new_{name}": value for name, value in fields.items()}


# Seconds a process waits for another to finish migrating the schema.
MIGRATE_WAIT = 120.0

# Placeholder figures for a new cluster row; `_refresh_clusters` fills the real ones
# in the same transaction.
_EPOCH = datetime.fromtimestamp(0, UTC)
_NEW_CLUSTER = {"first_seen": _EPOCH, "last_seen": _EPOCH, "size": 0, "outlet_count": 0}
_FOUND_CLUSTERS_FROM_JSON = clusters.insert().from_select(
    ["id", *_NEW_CLUSTER],
    select(
        _JSON_IDS.c.value,
        *(literal(value, clusters.c[name].type) for name, value in _NEW_CLUSTER.items()),
    ),
)


class Store:
    """The database behind one configuration."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        # Whether a batch of cluster decisions goes to SQLite as JSON arrays,
        # a few statements for the whole batch (see `_JSON_SQLITE`).
        self.batches_as_json = _batches_as_json(self.engine)
        # Processes starting together (serve beside a cron run, several workers)
        # must not run the same migration step twice.
        with lock.exclusive(self.engine, "migrate", wait=MIGRATE_WAIT):
            self.schema_version = schema.migrate(self.engine.begin)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def saves_matches_unlocked(self) -> bool:
        """Whether `save_matches` spends its time outside the interpreter lock.

        Then it pays to store one batch on another thread while the matcher
        decides the next: SQLite running its few JSON statements, or
        PostgreSQL's server doing the work while psycopg waits. Not SQLite
        with a statement per entry, where the thread would take the lock back
        for every row.
        """
        return self.batches_as_json or self.engine.dialect.name != "sqlite"

    def exclusive(self, name: str, *, wait: float = 0.0) -> AbstractContextManager[None]:
        """A lock across processes (and, on PostgreSQL, machines) for work that must not overlap."""
        return lock.exclusive(self.engine, name, wait=wait)

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- outlets and feeds ------------------------------------------------

    def _outlet_ids(self, conn: Connection, wanted: Iterable[Outlet]) -> dict[str, int]:
        """Ids of these outlets by name; new ones are inserted, a given language or home URL kept.

        A handful of statements for any number of outlets, not a few per outlet.
        """
        by_name = {outlet.name: outlet for outlet in wanted}
        names = list(by_name)
        rows = {row.name: row for row in self._outlet_rows(conn, names)}
        missing = [by_name[name] for name in names if name not in rows]
        if missing:
            conn.execute(
                outlets.insert(),
                [{"name": o.name, "language": o.language, "home_url": o.home_url} for o in missing],
            )
            rows |= {row.name: row for row in self._outlet_rows(conn, [o.name for o in missing])}
        changes = []
        for name, outlet in by_name.items():
            row = rows[name]
            language, home_url = outlet.language or row.language, outlet.home_url or row.home_url
            if (language, home_url) != (row.language, row.home_url):
                changes.append(
                    {"outlet_id": row.id, "new_language": language, "new_home_url": home_url}
                )
        if changes:
            conn.execute(_UPDATE_OUTLET, changes)
        return {name: int(row.id) for name, row in rows.items()}

    @staticmethod
    def _outlet_rows(conn: Connection, names: Sequence[str]) -> Iterator[Any]:
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            yield from conn.execute(select(outlets).where(outlets.c.name.in_(chunk)))

    def add_feed(
        self, url: str, outlet: Outlet, *, source: str, interval_seconds: int, now: datetime
    ) -> tuple[Feed, bool]:
        """Register a feed (due at once); return it and whether it was new.

        An existing URL keeps its state and history; only its outlet is updated.
        """
        with self._tx() as conn:
            outlet_id = self._outlet_ids(conn, [outlet])[outlet.name]
            existing = conn.execute(select(feeds.c.id).where(feeds.c.url == url)).first()
            if existing is None:
                conn.execute(
                    feeds.insert().values(
                        url=url,
                        outlet_id=outlet_id,
                        source=source,
                        interval_seconds=interval_seconds,
                        consecutive_errors=0,
                        disabled=False,
                        next_fetch_at=now,
                        created_at=now,
                    )
                )
            else:
                conn.execute(
                    update(feeds).where(feeds.c.id == existing.id).values(outlet_id=outlet_id)
                )
            row = conn.execute(_FEEDS_WITH_OUTLET.where(feeds.c.url == url)).mappings().one()
            return _feed(row), existing is None

    def sync_feeds(
        self,
        wanted: Sequence[tuple[str, Outlet]],
        *,
        source: str,
        interval_seconds: int,
        now: datetime,
    ) -> int:
        """Register every (url, outlet) in one transaction; return how many were new.

        Known feeds keep their state; a feed that moved to another outlet follows it.
        The known feeds are read once, and inserts and moves go in bulk, so this
        costs a handful of statements however many feeds the configuration lists.
        """
        with self._tx() as conn:
            outlet_ids = self._outlet_ids(conn, (outlet for _, outlet in wanted))
            known = {
                row.url: (row.id, row.outlet_id)
                for row in conn.execute(select(feeds.c.id, feeds.c.url, feeds.c.outlet_id))
            }
            missing = {url: outlet for url, outlet in wanted if url not in known}
            if missing:
                conn.execute(
                    feeds.insert(),
                    [
                        {
                            "url": url,
                            "outlet_id": outlet_ids[outlet.name],
                            "source": source,
                            "interval_seconds": interval_seconds,
                            "consecutive_errors": 0,
                            "disabled": False,
                            "next_fetch_at": now,
                            "created_at": now,
                        }
                        for url, outlet in missing.items()
                    ],
                )
            moves = {
                known[url][0]: outlet_ids[outlet.name]
                for url, outlet in wanted
                if url in known and known[url][1] != outlet_ids[outlet.name]
            }
            if moves:
                conn.execute(
                    _MOVE_FEED,
                    [{"feed_id": i, "new_outlet_id": outlet} for i, outlet in moves.items()],
                )
        return len(missing)

    def set_enabled(self, url: str, enabled: bool, *, reason: str | None, now: datetime) -> bool:
        """Enable (re-arm: due now, errors forgotten) or disable a feed; False if unknown."""
        values: dict[str, Any] = {"disabled": not enabled, "disabled_reason": reason}
        if enabled:
            values |= {"consecutive_errors": 0, "failing_since": None, "next_fetch_at": now}
        with self._tx() as conn:
            return bool(
                conn.execute(update(feeds).where(feeds.c.url == url).values(values)).rowcount
            )

    def feeds(self, *, include_disabled: bool = True) -> list[Feed]:
        query = _FEEDS_WITH_OUTLET.order_by(outlets.c.name, feeds.c.url)
        if not include_disabled:
            query = query.where(feeds.c.disabled.is_(False))
        with self._tx() as conn:
            return [_feed(row) for row in conn.execute(query).mappings()]

    def due_feeds(self, now: datetime) -> list[Feed]:
        query = (
            _FEEDS_WITH_OUTLET.where(feeds.c.disabled.is_(False))
            .where(or_(feeds.c.next_fetch_at.is_(None), feeds.c.next_fetch_at <= now))
            .order_by(feeds.c.next_fetch_at, feeds.c.id)
        )
        with self._tx() as conn:
            return [_feed(row) for row in conn.execute(query).mappings()]

    def outlet_languages(self) -> dict[str, str | None]:
        with self._tx() as conn:
            return {row.name: row.language for row in conn.execute(select(outlets))}

    def feed_status(self) -> list[FeedStatusRow]:
        counts = (
            select(entries.c.feed_id, func.count().label("n"))
            .group_by(entries.c.feed_id)
            .subquery()
        )
        query = (
            select(*_FEED_COLUMNS, func.coalesce(counts.c.n, 0).label("entry_count"))
            .join_from(feeds, outlets)
            .outerjoin(counts, counts.c.feed_id == feeds.c.id)
            .order_by(outlets.c.name, feeds.c.url)
        )
        with self._tx() as conn:
            return [
                FeedStatusRow(_feed(row), int(row["entry_count"]))
                for row in conn.execute(query).mappings()
            ]

    # -- fetch results ----------------------------------------------------

    def save_fetch(self, feed: Feed, new_entries: Sequence[Entry], now: datetime) -> SaveResult:
        """Store a feed's new state and its entries in one transaction (see `save_fetches`)."""
        return self.save_fetches([Fetched(feed, new_entries, now)])[0]

    def save_fetches(self, batch: Sequence[Fetched]) -> list[SaveResult]:
        """Store several feeds' new states and entries in one transaction; a result per item.

        The commit, not the row, is what a 304 costs, so a cycle of many feeds
        stores them a batch at a time. Entries are unique per (feed, guid): a
        known guid with a new content hash is updated in place (keeping its
        cluster), an unchanged one is left alone; a guid listed twice counts once.
        A permanent redirect moves a feed's URL unless another feed has that URL.
        """
        if any(item.feed.id is None for item in batch):
            raise ValueError("save_fetches needs stored feeds")
        if not batch:
            return []
        inserts: list[tuple[Any, ...]] = []
        changes: list[dict[str, Any]] = []
        results = []
        seen: set[tuple[int, str]] = set()
        with self._tx() as conn:
            conn.execute(_UPDATE_FEED, self._feed_states(conn, [item.feed for item in batch]))
            binds = _EntryBinds.of(conn.dialect)
            for item in batch:
                new, changed = self._entry_rows(conn, item, seen, binds)
                inserts += new
                changes += changed
                results.append(SaveResult(len(new), len(changed)))
            if inserts:
                _insert_entries(conn, inserts)
            if changes:
                conn.execute(_UPDATE_ENTRY, changes)
        return results

    @staticmethod
    def _feed_states(conn: Connection, states: Sequence[Feed]) -> list[dict[str, Any]]:
        """Parameters of `_UPDATE_FEED` for each state, in order.

        A permanent redirect moves the URL only if no other feed has it; decided
        in order, as one transaction per feed would, so a feed may take a URL
        that another feed of the same batch has just left.
        """
        ids = [state.id for state in states]
        wanted = list({state.url for state in states})
        url_of: dict[int | None, str] = {}
        for start in range(0, len(states), _IN_CHUNK):
            query = select(feeds.c.id, feeds.c.url).where(
                or_(
                    feeds.c.id.in_(ids[start : start + _IN_CHUNK]),
                    feeds.c.url.in_(wanted[start : start + _IN_CHUNK]),
                )
            )
            url_of |= {row.id: row.url for row in conn.execute(query)}
        owner = {url: feed_id for feed_id, url in url_of.items()}
        rows = []
        for state in states:
            url = url_of.get(state.id, state.url)
            if owner.get(state.url, state.id) == state.id:
                owner.pop(url, None)
                owner[state.url] = state.id
                url = url_of[state.id] = state.url
            values = {f"new_{name}": getattr(state, name) for name in _FEED_STATE}
            rows.append({"feed_id": state.id, "new_url": url, **values})
        return rows

    @staticmethod
    def _entry_rows(
        conn: Connection, item: Fetched, seen: set[tuple[int, str]], binds: _EntryBinds
    ) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
        """The entries of one fetch to insert and to update.

        New ones as `_insert_entries` rows, changed ones as `_UPDATE_ENTRY` parameters.
        """
        feed_id = item.feed.id
        assert feed_id is not None
        if not item.entries:
            return [], []
        guids = list(dict.fromkeys(e.guid for e in item.entries))
        known = {
            row.guid: (row.id, row.content_hash)
            for row in conn.execute(_KNOWN_GUIDS, {"feed_id": feed_id, "guids": guids})
        }
        inserts: list[tuple[Any, ...]] = []
        changes: list[dict[str, Any]] = []
        now = binds.moment(item.now)
        for entry in item.entries:
            if (feed_id, entry.guid) in seen:
                continue  # a feed listing one item twice: the first wins
            seen.add((feed_id, entry.guid))
            if entry.guid not in known:
                inserts.append(
                    (
                        feed_id,
                        entry.guid,
                        entry.url,
                        entry.canonical_url,
                        entry.title,
                        entry.summary,
                        binds.published(entry.published),
                        binds.flag(entry.published_estimated),
                        entry.author,
                        entry.language,
                        entry.content_hash,
                        now,
                        now,
                    )
                )
            elif known[entry.guid][1] != entry.content_hash:
                fields = {
                    "url": entry.url,
                    "canonical_url": entry.canonical_url,
                    "title": entry.title,
                    "summary": entry.summary,
                    "author": entry.author,
                    "language": entry.language,
                    "content_hash": entry.content_hash,
                    "updated_at": item.now,
                }
                changes.append({"entry_id": known[entry.guid][0], **_prefixed(fields)})
        return inserts, changes

    def save_feed_state(self, feed: Feed, now: datetime) -> None:
        """Store a feed's state after a fetch that brought no entries (304, failure)."""
        self.save_fetch(feed, (), now)

    # -- clustering -------------------------------------------------------

    def unclustered(self) -> list[Entry]:
        """Entries not yet in a cluster, in the order the matcher needs (all at once)."""
        query = _unclustered(_ENTRIES_WITH_OUTLET, None, None)
        with self._tx() as conn:
            return [_entry(row) for row in conn.execute(query).mappings()]

    def unclustered_items(
        self, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[tuple[Item, str]]:
        """A page of `unclustered` as the matcher reads it: each entry's `Item`, its content hash.

        The first `limit` entries, or those coming after `after`, the
        (published, id) of the last entry of the page before: so pages can be
        read ahead of the matcher storing its results. The columns the matcher
        needs only, straight into its own type: 100,000 entries read in pages
        took 2.3 s as `Entry`, 1.4 s so.
        """
        query = _unclustered(_ITEMS, limit, after)
        with self._tx() as conn:
            return [
                (Item(id, outlet, title, summary, published, url, language), content_hash)
                for id, outlet, title, summary, published, url, language, content_hash in (
                    conn.execute(query)
                )
            ]

    def count_unclustered(self) -> int:
        """How many entries wait for the matcher."""
        query = select(func.count()).select_from(entries).where(entries.c.cluster_id.is_(None))
        with self._tx() as conn:
            return int(conn.execute(query).scalar_one())

    def clustered_since(self, since: datetime) -> list[tuple[Entry, Match]]:
        """Clustered entries published since `since`, to prime the matcher's window."""
        query = _ENTRIES_WITH_OUTLET.where(*_clustered_since(since)).order_by(
            entries.c.published, entries.c.id
        )
        with self._tx() as conn:
            return [(_entry(row), _match(row)) for row in conn.execute(query).mappings()]

    def cluster_assignments(self, since: datetime) -> dict[int, tuple[int, str]]:
        """Entry id -> (cluster id, content hash) of every clustered entry published since `since`.

        What a matcher kept between runs compares with the window it holds:
        the assignments it must agree with, and which entries' text changed
        since it read them (a fetch updates an entry in place, keeping its cluster).
        """
        query = select(entries.c.id, entries.c.cluster_id, entries.c.content_hash).where(
            *_clustered_since(since)
        )
        with self._tx() as conn:
            return {row.id: (row.cluster_id, row.content_hash) for row in conn.execute(query)}

    def save_matches(self, matches: Iterable[Match], merges: Sequence[Merged] = ()) -> int:
        """Record cluster assignments and merges, and refresh the touched clusters, atomically.

        `matches` already name the surviving clusters; `merges` (in the order
        they were decided) move the entries stored earlier in absorbed clusters.
        """
        batch = list(matches)
        if not batch and not merges:
            return 0
        with self._tx() as conn:
            founders = [m.cluster_id for m in batch if m.cluster_id == m.entry_id]
            if founders:
                self._found_clusters(conn, founders)
            for merge in merges:
                conn.execute(
                    update(entries)
                    .where(entries.c.cluster_id == merge.absorbed)
                    .values(cluster_id=merge.into)
                )
                conn.execute(
                    update(entries)
                    .where(entries.c.id == merge.absorbed, entries.c.matched_id.is_(None))
                    .values(
                        matched_id=merge.into,
                        match_score=merge.score,
                        match_reason=merge.reason,
                    )
                )
                conn.execute(clusters.delete().where(clusters.c.id == merge.absorbed))
            if batch:
                self._assign_entries(conn, batch)
            self._refresh_clusters(conn, {m.cluster_id for m in batch} | {m.into for m in merges})
        return len(batch)

    def _found_clusters(self, conn: Connection, ids: list[int]) -> None:
        """Rows for new clusters, with placeholder figures that `_refresh_clusters` replaces."""
        if self.batches_as_json:
            conn.execute(_FOUND_CLUSTERS_FROM_JSON, {"ids": json.dumps(ids)})
            return
        conn.execute(clusters.insert(), [{"id": i, **_NEW_CLUSTER} for i in ids])

    def _assign_entries(self, conn: Connection, batch: Sequence[Match]) -> None:
        """Store the decisions of `batch` in the entries' rows, in the order of their ids.

        In the order of the ids, the rows are visited as they lie in the
        table, page after page, rather than in the matcher's (publication)
        order. Elsewhere than in SQLite with JSON, the statement goes to the
        driver with plain tuples, one UPDATE by id each: the values need no
        conversion, and SQLAlchemy's handling of each parameter set was a
        sixth of storing a batch.
        """
        ordered = sorted(batch, key=attrgetter("entry_id"))
        if self.batches_as_json:
            rows = [[m.entry_id, m.cluster_id, m.matched_id, m.score, m.reason] for m in ordered]
            conn.execute(_ASSIGN_FROM_JSON, {"rows": json.dumps(rows)})
            return
        dialect = conn.dialect
        quote, mark = dialect.identifier_preparer.quote, _PLACEHOLDERS[dialect.paramstyle]
        columns = ", ".join(f"{quote(name)} = {mark}" for name in _ASSIGNMENT)
        conn.exec_driver_sql(
            f"UPDATE {quote(entries.name)} SET {columns} WHERE {quote('id')} = {mark}",
            [(m.cluster_id, m.matched_id, m.score, m.reason, m.entry_id) for m in ordered],
        )

    def _refresh_clusters(self, conn: Connection, cluster_ids: set[int]) -> None:
        """Each cluster's first and last publication, size and outlets, from its entries."""
        ids = sorted(cluster_ids)
        if self.batches_as_json:
            conn.execute(_CLUSTER_FIGURES_FROM_JSON, {"ids": json.dumps(ids)})
            return
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            figures = conn.execute(_cluster_figures(chunk))
            rows = [
                {
                    "cluster": row.cluster_id,
                    "new_first_seen": row.first_seen,
                    "new_last_seen": row.last_seen,
                    "new_size": row.size,
                    "new_outlet_count": row.outlet_count,
                }
                for row in figures
            ]
            if rows:
                conn.execute(_CLUSTER_FIGURES, rows)

    def clear_clusters_since(self, since: datetime) -> int:
        """Dissolve every cluster with an entry published since `since`; return entries freed.

        Whole clusters are dissolved, so no cluster is left pointing at a
        founder that is gone; the freed entries are clustered again.
        """
        touched = (
            select(entries.c.cluster_id)
            .where(entries.c.published >= since, entries.c.cluster_id.is_not(None))
            .distinct()
        )
        with self._tx() as conn:
            ids = list(conn.execute(touched).scalars())
            freed = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                freed += conn.execute(
                    update(entries)
                    .where(entries.c.cluster_id.in_(chunk))
                    .values(cluster_id=None, matched_id=None, match_score=None, match_reason=None)
                ).rowcount
                conn.execute(clusters.delete().where(clusters.c.id.in_(chunk)))
        return freed

    def clusters_between(self, start: datetime, end: datetime) -> list[Cluster]:
        """Clusters with an entry published in [start, end), each with all its entries."""
        touched = (
            select(entries.c.cluster_id)
            .where(entries.c.published >= start, entries.c.published < end)
            .where(entries.c.cluster_id.is_not(None))
            .distinct()
        )
        query = _ENTRIES_WITH_OUTLET.where(entries.c.cluster_id.in_(touched)).order_by(
            entries.c.cluster_id, entries.c.published, entries.c.id
        )
        result: dict[int, Cluster] = {}
        with self._tx() as conn:
            for row in conn.execute(query).mappings():
                entry = _entry(row)
                cluster = result.setdefault(row["cluster_id"], Cluster(id=row["cluster_id"]))
                cluster.entries.append(entry)
                cluster.matches[row["id"]] = _match(row)
        return list(result.values())

    # -- digests ----------------------------------------------------------

    def digest_written(self, name: str, start: datetime, end: datetime) -> bool:
        query = select(digests.c.id).where(
            digests.c.name == name, digests.c.period_start == start, digests.c.period_end == end
        )
        with self._tx() as conn:
            return conn.execute(query).first() is not None

    def unmailed_periods(self, name: str, ended_since: datetime) -> list[tuple[datetime, datetime]]:
        """Periods of `name` written but never mailed, ended since `ended_since`, oldest first."""
        query = (
            select(digests.c.period_start, digests.c.period_end)
            .where(
                digests.c.name == name,
                digests.c.mail_planned_at.is_(None),
                digests.c.period_end >= ended_since,
            )
            .order_by(digests.c.period_end)
        )
        with self._tx() as conn:
            return [(row.period_start, row.period_end) for row in conn.execute(query)]

    def mark_mail_planned(self, name: str, start: datetime, end: datetime, now: datetime) -> None:
        """Record that a written period's subscribers were decided on (see `unmailed_periods`)."""
        with self._tx() as conn:
            conn.execute(
                update(digests)
                .where(
                    digests.c.name == name,
                    digests.c.period_start == start,
                    digests.c.period_end == end,
                    digests.c.mail_planned_at.is_(None),
                )
                .values(mail_planned_at=now)
            )

    def record_digest(
        self,
        name: str,
        start: datetime,
        end: datetime,
        files: Sequence[Path],
        clusters: int,
        now: datetime,
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                digests.insert().values(
                    name=name,
                    period_start=start,
                    period_end=end,
                    created_at=now,
                    clusters=clusters,
                    files="\n".join(str(path) for path in files),
                )
            )
