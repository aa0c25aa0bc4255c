"""Tables and their versioned migrations.

SQLAlchemy Core tables describe the newest schema for queries; `MIGRATIONS`
is the ordered history that brings any older database there. A migration
never edits an earlier step: add a new one. Each step runs in its own
transaction together with its row in `schema_migrations`. SQLite's driver
commits DDL as it goes, so a step is also written to be run again after a
crash part-way (tables and indexes created if missing, columns added if
missing). `Store` runs the steps under a lock, one process at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,
    text,
    update,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    Stored as naive UTC (SQLite has no time zones; PostgreSQL `timestamp`),
    returned as aware UTC, so comparisons never mix naive and aware values.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use UTC-aware values")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

outlets = Table(
    "outlets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("language", String(20)),
    Column("home_url", Text),
)

feeds = Table(
    "feeds",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", Text, nullable=False, unique=True),
    Column("outlet_id", Integer, ForeignKey("outlets.id"), nullable=False),
    Column("title", Text),
    Column("language", String(20)),
    # Where the feed came from: "config", "cli" or "opml".
    Column("source", String(20), nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_fetched_at", UTCDateTime),
    Column("next_fetch_at", UTCDateTime),
    Column("interval_seconds", Integer, nullable=False),
    Column("consecutive_errors", Integer, nullable=False, default=0),
    Column("last_status", String(20)),
    Column("last_error", Text),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_reason", Text),
    # When the current run of consecutive failures began (None while healthy).
    Column("failing_since", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_feeds_next_fetch_at", "next_fetch_at"),
)

entries = Table(
    "entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="CASCADE"), nullable=False),
    Column("guid", Text, nullable=False),
    Column("url", Text),
    Column("canonical_url", Text),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("published", UTCDateTime, nullable=False),
    Column("published_estimated", Boolean, nullable=False, default=False),
    Column("author", Text),
    Column("language", String(20)),
    Column("content_hash", String(64), nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Set by clustering. cluster_id is the id of the entry that founded the
    # cluster; matched_id/match_score/match_reason explain the grouping.
    Column("cluster_id", Integer, ForeignKey("clusters.id")),
    Column("matched_id", Integer),
    Column("match_score", Float),
    Column("match_reason", Text),
    UniqueConstraint("feed_id", "guid", name="uq_entries_feed_guid"),
    Index("ix_entries_published", "published"),
)

clusters = Table(
    "clusters",
    metadata,
    # Not autoincrement: the founding entry's id, so cluster ids do not depend
    # on how many runs the clustering took.
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    Column("outlet_count", Integer, nullable=False),
    Index("ix_clusters_last_seen", "last_seen"),
)

digests = Table(
    "digests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("clusters", Integer, nullable=False),
    # Newline-separated paths of the files written for this period.
    Column("files", Text, nullable=False),
    # When its subscribers were decided on (`send_due`); NULL: written, not yet
    # mailed, e.g. killed in between. Such a period is mailed by a later run.
    Column("mail_planned_at", UTCDateTime),
    UniqueConstraint("name", "period_start", "period_end", name="uq_digests_period"),
)


# Mail: who gets which digest, and one row per (digest period, recipient) so a
# period is never mailed twice. Unsubscribed subscribers stay (status
# "unsubscribed") so that re-importing an old list does not sign them up again.
subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("digest", String(200), nullable=False),
    Column("name", Text),
    # Filters; NULL means "as the digest is configured". outlets: newline-separated.
    Column("outlets", Text),
    Column("language", String(20)),
    Column("min_outlets", Integer),
    Column("max_stories", Integer),
    # "active", "paused" or "unsubscribed".
    Column("status", String(20), nullable=False),
    Column("status_reason", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("email", "digest", name="uq_subscribers_email_digest"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(200), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("message_id", Text, nullable=False),
    # "queued", "sending" (claimed by a sender until next_attempt_at), "sent",
    # "retry" (temporary failure), "failed" (permanent), "skipped" (nothing
    # matched the subscriber's filters).
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    # The SMTP server's answer to the last attempt, or why it failed.
    Column("detail", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    UniqueConstraint(
        "digest", "period_start", "period_end", "recipient", name="uq_deliveries_period_recipient"
    ),
    Index("ix_deliveries_status", "status", "next_attempt_at"),
)

# Named random keys the program creates once (e.g. for signing unsubscribe links).
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", String(200), nullable=False),
)


def _create_v1(conn: Connection) -> None:
    # Creates the tables as they are defined now, so on a new database the
    # later column-adding steps find their columns present and skip them.
    tables = [outlets, feeds, clusters, entries, digests]
    metadata.create_all(conn, tables=tables)


Migration = Callable[[Connection], Any]


def _create_mail_v2(conn: Connection) -> None:
    metadata.create_all(conn, tables=[subscribers, deliveries, secrets])


def _add_column(conn: Connection, table: Table, name: str) -> None:
    """ALTER TABLE ADD COLUMN unless the column exists (see `_create_v1`)."""
    if name in {column["name"] for column in inspect(conn).get_columns(table.name)}:
        return
    column = table.c[name]
    ddl = column.type.compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {ddl}"))


def _feeds_failing_since_v3(conn: Connection) -> None:
    _add_column(conn, feeds, "failing_since")


# Dashboard: editors, their read-only API tokens (only a hash is kept), editors'
# corrections of the clustering (re-applied after every clustering run), and the
# headlines an entry had before the feed changed it.
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # SHA-256 of the token: a leaked database does not leak working tokens.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True),
    # "split": entry_id is a story of its own; "merge": entry_id and other_id are one story.
    Column("kind", String(10), nullable=False),
    Column("entry_id", Integer, nullable=False),
    Column("other_id", Integer),
    Column("created_by", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

entry_titles = Table(
    "entry_titles",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entry_id", Integer, ForeignKey("entries.id", ondelete="CASCADE"), nullable=False),
    # The headline the entry had until `replaced_at` (filled by a database trigger).
    Column("title", Text, nullable=False),
    Column("replaced_at", UTCDateTime, nullable=False),
    Index("ix_entry_titles_entry_id", "entry_id"),
)

# A cluster's members in time order without visiting the table; the Now view's
# candidates by recency and size.
ix_entries_cluster_published = Index(
    "ix_entries_cluster_published", entries.c.cluster_id, entries.c.published, entries.c.feed_id
)
ix_clusters_last_seen_outlets = Index(
    "ix_clusters_last_seen_outlets", clusters.c.last_seen, clusters.c.outlet_count
)

_SQLITE_DASHBOARD = [
    # External-content FTS5 over headlines and leads; diacritics folded so
    # "munchen" finds "München".
    "CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5(title, summary, "
    "content='entries', content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS entries_fts_insert AFTER INSERT ON entries BEGIN "
    "INSERT INTO entries_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary); END",
    "CREATE TRIGGER IF NOT EXISTS entries_fts_delete AFTER DELETE ON entries BEGIN "
    "INSERT INTO entries_fts(entries_fts, rowid, title, summary) "
    "VALUES ('delete', old.id, old.title, old.summary); END",
    "CREATE TRIGGER IF NOT EXISTS entries_fts_update AFTER UPDATE OF title, summary ON entries "
    "BEGIN INSERT INTO entries_fts(entries_fts, rowid, title, summary) "
    "VALUES ('delete', old.id, old.title, old.summary); "
    "INSERT INTO entries_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary); END",
    "INSERT INTO entries_fts(entries_fts) VALUES ('rebuild')",
    "CREATE TRIGGER IF NOT EXISTS entries_title_history AFTER UPDATE OF title ON entries "
    "WHEN old.title IS NOT new.title BEGIN INSERT INTO entry_titles(entry_id, title, replaced_at) "
    "VALUES (old.id, old.title, new.updated_at); END",
]

_POSTGRESQL_DASHBOARD = [
    "CREATE INDEX IF NOT EXISTS ix_entries_fulltext ON entries "
    "USING gin (to_tsvector('simple', title || ' ' || summary))",
    "CREATE OR REPLACE FUNCTION entries_title_history() RETURNS trigger AS $$ BEGIN "
    "IF OLD.title IS DISTINCT FROM NEW.title THEN "
    "INSERT INTO entry_titles(entry_id, title, replaced_at) "
    "VALUES (OLD.id, OLD.title, NEW.updated_at); END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS entries_title_history ON entries",
    "CREATE TRIGGER entries_title_history AFTER UPDATE OF title ON entries "
    "FOR EACH ROW EXECUTE FUNCTION entries_title_history()",
]


def _create_dashboard_v4(conn: Connection) -> None:
    metadata.create_all(conn, tables=[users, api_tokens, corrections, entry_titles])
    ix_entries_cluster_published.create(conn, checkfirst=True)
    ix_clusters_last_seen_outlets.create(conn, checkfirst=True)
    statements = _SQLITE_DASHBOARD if conn.dialect.name == "sqlite" else _POSTGRESQL_DASHBOARD
    for statement in statements:
        conn.execute(text(statement))


def _drop_cluster_id_index_v5(conn: Connection) -> None:
    # `ix_entries_cluster_published` (v4) starts with cluster_id and serves every
    # lookup the single-column index did, which only cost a second index write
    # for each entry clustered: about a quarter of storing the matches.
    conn.execute(text("DROP INDEX IF EXISTS ix_entries_cluster_id"))


def _digests_mail_planned_v6(conn: Connection) -> None:
    _add_column(conn, digests, "mail_planned_at")
    # Periods written before this version were mailed as they were written.
    conn.execute(
        update(digests)
        .where(digests.c.mail_planned_at.is_(None))
        .values(mail_planned_at=digests.c.created_at)
    )


# Dashboard logins, one row per login: the session cookie carries a random id,
# the database only its SHA-256 (like `api_tokens`), so logging out, removing an
# editor or changing a password ends the session wherever a copy of the cookie is.
sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    # The unique index is the one lookup every dashboard request makes.
    Column("id_hash", String(64), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


def _create_sessions_v7(conn: Connection) -> None:
    metadata.create_all(conn, tables=[sessions])


# Ids are `Integer` columns, 32-bit on PostgreSQL: a larger number names no row.
MAX_ROW_ID = 2**31 - 1


def row_id(raw: str) -> int | None:
    """`raw` as a row id; None unless ASCII digits up to MAX_ROW_ID.

    For ids from URLs, forms and tokens. ``"²".isdigit()`` is true but `int`
    refuses it, and `int` refuses more than 4300 digits: the length is
    checked first.
    """
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_ROW_ID)):
        return None
    number = int(raw)
    return number if number <= MAX_ROW_ID else None


def _drop_canonical_url_index_v8(conn: Connection) -> None:
    # No query ever looked entries up by canonical URL (the matcher keeps the
    # window's URLs in memory), and every new entry paid for the index: a
    # long, randomly ordered key, about 4 % of SQLite's time storing a fetch.
    conn.execute(text("DROP INDEX IF EXISTS ix_entries_canonical_url"))


# Version n is MIGRATIONS[n - 1].
MIGRATIONS: list[Migration] = [
    _create_v1,
    _create_mail_v2,
    _feeds_failing_since_v3,
    _create_dashboard_v4,
    _drop_cluster_id_index_v5,
    _digests_mail_planned_v6,
    _create_sessions_v7,
    _drop_canonical_url_index_v8,
]


def migrate(conn_factory: Callable[[], Any]) -> int:
    """Bring the database to the newest version; return the version it is at.

    `conn_factory` opens a transaction (`engine.begin`); each step gets its own.
    """
    with conn_factory() as conn:
        schema_migrations.create(conn, checkfirst=True)
        current = conn.execute(
            schema_migrations.select().order_by(schema_migrations.c.version.desc()).limit(1)
        ).first()
    version = current.version if current else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"the database is at schema version {version}, newer than this program "
            f"({len(MIGRATIONS)}); upgrade aggregator"
        )
    for number in range(version + 1, len(MIGRATIONS) + 1):
        with conn_factory() as conn:
            MIGRATIONS[number - 1](conn)
            conn.execute(
                schema_migrations.insert().values(version=number, applied_at=datetime.now(UTC))
            )
    return len(MIGRATIONS)
