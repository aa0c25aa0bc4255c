"""The dashboard's SQL: the views editors look at, their logins, and their corrections.

Kept beside `Store` rather than in it because only the web dashboard needs
it; it uses the same engine and the same one-transaction-per-call rule.
Views answer from the `clusters` figures and the indexes of migration 4, so
a day's stories out of a month of entries come back in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)

from aggregator.models import Cluster, Entry
from aggregator.store import _ENTRIES_WITH_OUTLET, _EPOCH, Store, _entry, _match
from aggregator.store.schema import (
    api_tokens,
    clusters,
    corrections,
    entries,
    entry_titles,
    feeds,
    outlets,
    sessions,
    users,
)

SPLIT = "split"
MERGE = "merge"
_CHUNK = 500

# A story's members with only the columns `_entry` and `_match` read: the two
# bookkeeping times left out were a third of the per-row date parsing when a
# view loads thousands of members (the gaps view's wide, old stories).
_MEMBERS = _ENTRIES_WITH_OUTLET.with_only_columns(
    *(column for column in entries.c if column.name not in {"first_seen_at", "updated_at"}),
    outlets.c.name.label("outlet"),
)


@dataclass(frozen=True)
class Story:
    """A cluster with how many outlets joined it recently (how fast coverage grows)."""

    cluster: Cluster
    growth: int


@dataclass(frozen=True)
class Gap:
    """A story our outlet has not covered, open since the `min_outlets`-th other outlet ran it."""

    cluster: Cluster
    open_since: datetime


@dataclass(frozen=True)
class Hit:
    """A search result: the entry and how many outlets its story has."""

    entry: Entry
    outlet_count: int


@dataclass(frozen=True)
class OutletRow:
    name: str
    language: str | None
    feeds: int


@dataclass(frozen=True)
class HourRow:
    hour: datetime
    entries: int
    stories: int


@dataclass(frozen=True)
class Correction:
    id: int
    kind: str
    entry_id: int
    other_id: int | None
    created_by: str
    created_at: datetime


def _outlet_ids(names: Sequence[str]) -> Select[Any]:
    return select(outlets.c.id).where(outlets.c.name.in_(list(names)))


def _carried_by(outlet_ids: Select[Any]) -> Select[Any]:
    """The clusters any of the outlets has an entry in.

    Found from the outlets' side: their feeds' entries come from the
    (feed_id, guid) index, a few thousand rows, where asking each candidate
    story "is one of ours in you?" visits every entry of every candidate.
    """
    return select(entries.c.cluster_id).where(
        entries.c.feed_id.in_(select(feeds.c.id).where(feeds.c.outlet_id.in_(outlet_ids))),
        entries.c.cluster_id.is_not(None),
    )


def _kth_outlet_at(cluster_ids: Sequence[int], k: int) -> Select[Any]:
    """(cluster_id, opened): when the `k`-th outlet first published in each of the clusters."""
    firsts = (
        select(entries.c.cluster_id, func.min(entries.c.published).label("opened"))
        .join(feeds, feeds.c.id == entries.c.feed_id)
        .where(entries.c.cluster_id.in_(list(cluster_ids)))
        .group_by(entries.c.cluster_id, feeds.c.outlet_id)
        .subquery()
    )
    ranked = select(
        firsts.c.cluster_id,
        firsts.c.opened,
        func.row_number()
        .over(partition_by=firsts.c.cluster_id, order_by=firsts.c.opened)
        .label("n"),
    ).subquery()
    return select(ranked.c.cluster_id, ranked.c.opened).where(ranked.c.n == k)


class DashboardStore:
    """Queries and writes of the dashboard, over a `Store`'s engine."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    def _tx(self) -> AbstractContextManager[Connection]:
        return self.engine.begin()

    # -- stories ------------------------------------------------------------

    def clusters(self, ids: Sequence[int]) -> dict[int, Cluster]:
        """The clusters with these ids, each with all its entries in order of publication."""
        found: dict[int, Cluster] = {}
        with self._tx() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                query = _MEMBERS.where(entries.c.cluster_id.in_(chunk)).order_by(
                    entries.c.cluster_id, entries.c.published, entries.c.id
                )
                for row in conn.execute(query).mappings():
                    cluster = found.setdefault(row["cluster_id"], Cluster(id=row["cluster_id"]))
                    cluster.entries.append(_entry(row))
                    cluster.matches[row["id"]] = _match(row)
        return found

    def now(self, since: datetime, growth_since: datetime, limit: int) -> list[Story]:
        """Stories with an entry since `since`: most outlets first, then the fastest growing.

        Candidates come from the clusters table alone (a few times `limit`,
        by outlet count); only those are counted for growth and loaded.
        """
        candidates = (
            select(clusters.c.id, clusters.c.outlet_count, clusters.c.last_seen)
            .where(clusters.c.last_seen >= since)
            .order_by(clusters.c.outlet_count.desc(), clusters.c.last_seen.desc())
            .limit(limit * 4)
        )
        with self._tx() as conn:
            rows = conn.execute(candidates).all()
            ids = [row.id for row in rows]
            growth: dict[int, int] = dict(
                conn.execute(
                    select(entries.c.cluster_id, func.count(feeds.c.outlet_id.distinct()))
                    .join(feeds, feeds.c.id == entries.c.feed_id)
                    .where(entries.c.cluster_id.in_(ids), entries.c.published >= growth_since)
                    .group_by(entries.c.cluster_id)
                ).all()
            )
        ranked = sorted(
            rows, key=lambda r: (-r.outlet_count, -growth.get(r.id, 0), -r.last_seen.timestamp())
        )[:limit]
        loaded = self.clusters([row.id for row in ranked])
        return [Story(loaded[row.id], growth.get(row.id, 0)) for row in ranked if row.id in loaded]

    def gaps(self, home: Sequence[str], since: datetime, min_outlets: int, limit: int) -> list[Gap]:
        """Stories with an entry since `since` that `min_outlets` others carry and `home` does not.

        Oldest gap first: a gap opens when the `min_outlets`-th outlet publishes.
        A gap cannot open before its story's `first_seen`, so candidates are
        ranked in chunks by `first_seen` and the ranking stops once no later
        story can open early enough to be among the first `limit`: a day's
        thousands of wide stories need only the first chunk or two.
        """
        if not home or limit < 1:
            return []
        candidates = (
            select(clusters.c.id, clusters.c.first_seen)
            .where(
                clusters.c.last_seen >= since,
                clusters.c.outlet_count >= min_outlets,
                clusters.c.id.not_in(_carried_by(_outlet_ids(home))),
            )
            .order_by(clusters.c.first_seen, clusters.c.id)
        )
        opened: list[tuple[datetime, int]] = []
        with self._tx() as conn:
            pending = conn.execute(candidates).all()
            for start in range(0, len(pending), _CHUNK):
                chunk = pending[start : start + _CHUNK]
                if len(opened) >= limit and opened[limit - 1][0] < chunk[0].first_seen:
                    break
                ranked = conn.execute(_kth_outlet_at([row.id for row in chunk], min_outlets))
                opened = sorted([*opened, *((row.opened, row.cluster_id) for row in ranked)])
                del opened[limit:]
        loaded = self.clusters([cluster_id for _, cluster_id in opened])
        return [Gap(loaded[i], at) for at, i in opened if i in loaded]

    def scoops(self, home: Sequence[str], since: datetime, limit: int) -> list[Cluster]:
        """Stories other outlets followed that one of `home` published first."""
        if not home:
            return []
        first_is_ours = exists(
            select(entries.c.id)
            .join(feeds, feeds.c.id == entries.c.feed_id)
            .where(
                entries.c.cluster_id == clusters.c.id,
                entries.c.published == clusters.c.first_seen,
                feeds.c.outlet_id.in_(_outlet_ids(home)),
            )
        )
        query = (
            select(clusters.c.id)
            .where(clusters.c.last_seen >= since, clusters.c.outlet_count >= 2, first_is_ours)
            .order_by(clusters.c.outlet_count.desc(), clusters.c.first_seen.desc())
            .limit(limit)
        )
        with self._tx() as conn:
            ids = list(conn.execute(query).scalars())
        loaded = self.clusters(ids)
        return [loaded[i] for i in ids if i in loaded]

    def title_history(self, entry_ids: Sequence[int]) -> dict[int, list[tuple[str, datetime]]]:
        """Earlier headlines of each entry, oldest first, with when they were replaced."""
        history: dict[int, list[tuple[str, datetime]]] = {}
        query = (
            select(entry_titles.c.entry_id, entry_titles.c.title, entry_titles.c.replaced_at)
            .where(entry_titles.c.entry_id.in_(list(entry_ids)))
            .order_by(entry_titles.c.replaced_at, entry_titles.c.id)
        )
        with self._tx() as conn:
            for row in conn.execute(query):
                history.setdefault(row.entry_id, []).append((row.title, row.replaced_at))
        return history

    def entries_by_id(self, ids: Sequence[int]) -> dict[int, Entry]:
        with self._tx() as conn:
            rows = conn.execute(_ENTRIES_WITH_OUTLET.where(entries.c.id.in_(list(ids)))).mappings()
            return {row["id"]: _entry(row) for row in rows}

    # -- search -------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        outlet: str | None = None,
        language: str | None = None,
        min_outlets: int = 1,
        limit: int = 100,
    ) -> list[Hit]:
        """Entries whose headline or lead contain every word of `query`, newest first."""
        words = _words(query)
        if not words:
            return []
        sql = select(
            *entries.c, outlets.c.name.label("outlet"), clusters.c.outlet_count
        ).select_from(
            entries.join(feeds)
            .join(outlets, feeds.c.outlet_id == outlets.c.id)
            .outerjoin(clusters, clusters.c.id == entries.c.cluster_id)
        )
        if self.engine.dialect.name == "sqlite":
            match = " ".join('"' + word.replace('"', '""') + '"*' for word in words)
            fts = text("SELECT rowid FROM entries_fts WHERE entries_fts MATCH :match").bindparams(
                match=match
            )
            sql = sql.where(entries.c.id.in_(fts.columns(literal_column("rowid"))))
        else:
            vector = func.to_tsvector(
                literal_column("'simple'"), entries.c.title + " " + entries.c.summary
            )
            tsquery = " & ".join(f"{word.lower()}:*" for word in words)
            sql = sql.where(vector.op("@@")(func.to_tsquery(literal_column("'simple'"), tsquery)))
        if since is not None:
            sql = sql.where(entries.c.published >= since)
        if until is not None:
            sql = sql.where(entries.c.published < until)
        if outlet:
            sql = sql.where(outlets.c.name == outlet)
        if language:
            sql = sql.where(entries.c.language == language)
        if min_outlets > 1:
            sql = sql.where(clusters.c.outlet_count >= min_outlets)
        sql = sql.order_by(entries.c.published.desc(), entries.c.id.desc()).limit(limit)
        with self._tx() as conn:
            return [
                Hit(_entry(row), row["outlet_count"] or 1) for row in conn.execute(sql).mappings()
            ]

    # -- outlets, feeds, chart ---------------------------------------------

    def outlets(self) -> list[OutletRow]:
        query = (
            select(outlets.c.name, outlets.c.language, func.count(feeds.c.id).label("feeds"))
            .outerjoin(feeds, feeds.c.outlet_id == outlets.c.id)
            .group_by(outlets.c.id, outlets.c.name, outlets.c.language)
            .order_by(outlets.c.name)
        )
        with self._tx() as conn:
            return [OutletRow(r.name, r.language, r.feeds) for r in conn.execute(query)]

    def hourly(self, since: datetime, until: datetime) -> list[HourRow]:
        """Entries and new stories per hour of [since, until) (hours with none left out)."""
        entry_hours = self._per_hour(entries.c.published, since, until)
        story_hours = self._per_hour(clusters.c.first_seen, since, until)
        hours = sorted(set(entry_hours) | set(story_hours))
        return [HourRow(h, entry_hours.get(h, 0), story_hours.get(h, 0)) for h in hours]

    def _per_hour(self, column: Any, since: datetime, until: datetime) -> dict[datetime, int]:
        if self.engine.dialect.name == "sqlite":
            bucket: Any = func.strftime("%Y-%m-%dT%H:00:00+00:00", column)
        else:
            bucket = func.to_char(
                func.date_trunc("hour", column), 'YYYY-MM-DD"T"HH24":00:00+00:00"'
            )
        query = (
            select(bucket.label("hour"), func.count().label("n"))
            .where(column >= since, column < until)
            .group_by(bucket)
        )
        with self._tx() as conn:
            return {datetime.fromisoformat(r.hour): r.n for r in conn.execute(query)}

    def per_outlet(
        self, since: datetime, until: datetime, limit: int = 30
    ) -> list[tuple[str, int]]:
        """Entries per outlet in [since, until), busiest first."""
        query = (
            select(outlets.c.name, func.count().label("n"))
            .select_from(entries.join(feeds).join(outlets))
            .where(entries.c.published >= since, entries.c.published < until)
            .group_by(outlets.c.name)
            .order_by(func.count().desc(), outlets.c.name)
            .limit(limit)
        )
        with self._tx() as conn:
            return [(r.name, r.n) for r in conn.execute(query)]

    # -- users and tokens ---------------------------------------------------

    def set_password(self, name: str, password_hash: str, now: datetime) -> bool:
        """Create the user or change their password; True if the user is new.

        A changed password ends every session of the user, in the same
        transaction: a session opened with the old password must not outlive it.
        """
        with self._tx() as conn:
            changed = conn.execute(
                update(users).where(users.c.name == name).values(password_hash=password_hash)
            ).rowcount
            if changed:
                conn.execute(delete(sessions).where(sessions.c.user_id.in_(_user_id(name))))
            else:
                conn.execute(
                    users.insert().values(name=name, password_hash=password_hash, created_at=now)
                )
        return not changed

    def password_hash(self, name: str) -> str | None:
        with self._tx() as conn:
            value = conn.execute(select(users.c.password_hash).where(users.c.name == name)).scalar()
        return None if value is None else str(value)

    def add_token(self, name: str, token_hash: str, now: datetime) -> bool:
        """Store a token's hash for the user; False if there is no such user."""
        with self._tx() as conn:
            user_id = conn.execute(_user_id(name)).scalar()
            if user_id is None:
                return False
            conn.execute(
                api_tokens.insert().values(user_id=user_id, token_hash=token_hash, created_at=now)
            )
        return True

    def revoke_tokens(self, name: str) -> int | None:
        """Delete every API token of the user; how many, or None if there is no such user."""
        with self._tx() as conn:
            user_id = conn.execute(_user_id(name)).scalar()
            if user_id is None:
                return None
            deleted: int = conn.execute(
                api_tokens.delete().where(api_tokens.c.user_id == user_id)
            ).rowcount
        return deleted

    def remove_user(self, name: str) -> bool:
        """Delete the user, their API tokens and their sessions (which end at the next request)."""
        with self._tx() as conn:
            user_id = conn.execute(_user_id(name)).scalar()
            if user_id is None:
                return False
            # Explicitly, not by the foreign key's cascade: SQLite enforces it per connection.
            conn.execute(api_tokens.delete().where(api_tokens.c.user_id == user_id))
            conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
            conn.execute(users.delete().where(users.c.id == user_id))
        return True

    def token_user(self, token_hash: str) -> str | None:
        query = (
            select(users.c.name)
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == token_hash)
        )
        with self._tx() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else str(value)

    # -- sessions -----------------------------------------------------------

    def start_session(
        self,
        name: str,
        password_hash: str,
        id_hash: str,
        now: datetime,
        expires_at: datetime,
        *,
        replaces: str | None = None,
    ) -> bool:
        """Record a login verified against `password_hash`; False if that is no longer the hash.

        The user's row is read with its hash and locked, so a password change
        or a removal committed while the password was being checked wins: no
        session outlives it. `replaces` (the hash of the session this browser
        held) ends in the same transaction. Expired sessions are deleted here:
        logins are rare and each adds a row, so the table never holds more
        than the sessions of one cookie lifetime.
        """
        with self._tx() as conn:
            conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
            if replaces is not None:
                conn.execute(delete(sessions).where(sessions.c.id_hash == replaces))
            user_id = conn.execute(
                select(users.c.id)
                .where(users.c.name == name, users.c.password_hash == password_hash)
                .with_for_update()
            ).scalar()
            if user_id is None:
                return False
            conn.execute(
                sessions.insert().values(
                    id_hash=id_hash, user_id=user_id, created_at=now, expires_at=expires_at
                )
            )
        return True

    def session_valid(self, name: str, id_hash: str, now: datetime) -> bool:
        """Whether the session is recorded, unexpired and `name`'s: one lookup by `id_hash`."""
        query = (
            select(sessions.c.id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id_hash == id_hash, sessions.c.expires_at > now, users.c.name == name)
        )
        with self._tx() as conn:
            return conn.execute(query).first() is not None

    def end_session(self, id_hash: str) -> None:
        """Delete the session: every copy of its cookie is logged out."""
        with self._tx() as conn:
            conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))

    # -- corrections --------------------------------------------------------

    def add_correction(
        self, kind: str, entry_id: int, other_id: int, created_by: str, now: datetime
    ) -> None:
        """Record an editor's correction, dropping earlier ones it overrules.

        A split overrules earlier merges of the entry, a merge earlier splits of
        either entry: the latest word of an editor wins, and re-applying the
        list converges instead of undoing and redoing the same change.
        """
        if kind not in (SPLIT, MERGE):
            raise ValueError(f"unknown correction {kind!r}")
        if kind == SPLIT:
            overruled: ColumnElement[bool] = and_(
                corrections.c.kind == MERGE,
                or_(corrections.c.entry_id == entry_id, corrections.c.other_id == entry_id),
            )
        else:
            overruled = and_(
                corrections.c.kind == SPLIT, corrections.c.entry_id.in_([entry_id, other_id])
            )
        with self._tx() as conn:
            conn.execute(delete(corrections).where(overruled))
            conn.execute(
                corrections.insert().values(
                    kind=kind,
                    entry_id=entry_id,
                    other_id=other_id,
                    created_by=created_by,
                    created_at=now,
                )
            )

    def corrections(self) -> list[Correction]:
        with self._tx() as conn:
            rows = conn.execute(select(corrections).order_by(corrections.c.id)).all()
        return [
            Correction(r.id, r.kind, r.entry_id, r.other_id, r.created_by, r.created_at)
            for r in rows
        ]

    def labelled_examples(self) -> Iterator[dict[str, Any]]:
        """Entries of every corrected story as `dedupe --gold` rows; `story` is the cluster id.

        The clusters around each correction as they stand now, i.e. after the
        correction: an entry split out is one story, the cluster it left another.
        """
        ids: set[int] = set()
        for correction in self.corrections():
            ids.add(correction.entry_id)
            if correction.other_id is not None:
                ids.add(correction.other_id)
        members = self.entries_by_id(sorted(ids))
        cluster_ids = sorted({e.cluster_id for e in members.values() if e.cluster_id is not None})
        for cluster_id, cluster in sorted(self.clusters(cluster_ids).items()):
            for entry in cluster.entries:
                yield {
                    "id": str(entry.id),
                    "title": entry.title,
                    "summary": entry.summary,
                    "url": entry.link,
                    "outlet": entry.outlet,
                    "published": entry.published.isoformat(),
                    "language": entry.language,
                    "story": f"c{cluster_id}",
                }


def apply_corrections(store: Store) -> int:
    """Re-apply the editor corrections that no longer hold, oldest first; return how many.

    Called after each clustering run: the matcher does not know about
    corrections, so a re-clustering may undo them, and this puts them back.
    One query finds the undone ones, so a run that undid nothing costs one
    statement however many corrections have piled up, instead of two per
    correction. Re-applying only those gives what re-applying the whole list
    would: a correction that holds is a no-op, and putting one back never
    undoes another, since a split overrules earlier merges of its entry and a
    merge earlier splits of its entries (`DashboardStore.add_correction`).
    """
    changed = 0
    with store.engine.begin() as conn:
        touched: set[int] = set()
        for row in conn.execute(_UNDONE).all():
            if row.kind == SPLIT:
                changed += _split(conn, row.entry_id, touched)
            elif row.other_id is not None:
                changed += _merge(conn, row.entry_id, row.other_id, touched)
        if touched:
            alive = select(clusters.c.id).where(clusters.c.id.in_(touched))
            store._refresh_clusters(conn, set(conn.execute(alive).scalars()))
    return changed


def _undone_corrections() -> Select[Any]:
    """Corrections the clusters contradict: a split entry with company, a merge across clusters.

    Entries not clustered yet are left out: the correction pass after the
    run that clusters them handles them (as `_split` and `_merge` would).
    """
    entry, other, mate = entries.alias("entry"), entries.alias("other"), entries.alias("mate")
    has_company = exists(
        select(mate.c.id).where(mate.c.cluster_id == entry.c.cluster_id, mate.c.id != entry.c.id)
    )
    return (
        select(corrections.c.kind, corrections.c.entry_id, corrections.c.other_id)
        .join(entry, entry.c.id == corrections.c.entry_id)
        .outerjoin(other, other.c.id == corrections.c.other_id)
        .where(
            entry.c.cluster_id.is_not(None),
            or_(
                and_(corrections.c.kind == SPLIT, has_company),
                and_(corrections.c.kind == MERGE, other.c.cluster_id != entry.c.cluster_id),
            ),
        )
        .order_by(corrections.c.id)
    )


_UNDONE = _undone_corrections()


def _cluster_of(conn: Connection, entry_id: int) -> int | None:
    value = conn.execute(select(entries.c.cluster_id).where(entries.c.id == entry_id)).scalar()
    return None if value is None else int(value)


def _new_cluster(conn: Connection, cluster_id: int) -> None:
    conn.execute(
        clusters.insert().values(
            id=cluster_id, first_seen=_EPOCH, last_seen=_EPOCH, size=0, outlet_count=0
        )
    )


def _split(conn: Connection, entry_id: int, touched: set[int]) -> int:
    """Make the entry a story of its own (a cluster's id is always one of its members)."""
    cluster_id = _cluster_of(conn, entry_id)
    if cluster_id is None:
        return 0  # not clustered yet: the next run's correction pass handles it
    rest = (
        conn.execute(
            select(entries.c.id)
            .where(entries.c.cluster_id == cluster_id, entries.c.id != entry_id)
            .order_by(entries.c.published, entries.c.id)
        )
        .scalars()
        .all()
    )
    if not rest:
        return 0
    if cluster_id == entry_id:
        # The founder leaves: the others keep going under their earliest member's id.
        successor = rest[0]
        _new_cluster(conn, successor)
        conn.execute(
            update(entries)
            .where(entries.c.cluster_id == cluster_id, entries.c.id != entry_id)
            .values(cluster_id=successor)
        )
        touched.add(successor)
    else:
        _new_cluster(conn, entry_id)
    conn.execute(
        update(entries)
        .where(entries.c.id == entry_id)
        .values(
            cluster_id=entry_id,
            matched_id=None,
            match_score=100.0,
            match_reason="split out by an editor",
        )
    )
    touched |= {cluster_id, entry_id}
    return 1


def _merge(conn: Connection, into: int, other: int, touched: set[int]) -> int:
    """Put the other entry's whole story into the story of `into`."""
    target, source = _cluster_of(conn, into), _cluster_of(conn, other)
    if target is None or source is None or target == source:
        return 0
    conn.execute(update(entries).where(entries.c.cluster_id == source).values(cluster_id=target))
    conn.execute(
        update(entries)
        .where(entries.c.id == other)
        .values(matched_id=into, match_score=100.0, match_reason="merged by an editor")
    )
    conn.execute(delete(clusters).where(clusters.c.id == source))
    touched.discard(source)
    touched.add(target)
    return 1


def _user_id(name: str) -> Select[Any]:
    """The id of the user `name` (no row if there is none), as a statement or a subquery."""
    return select(users.c.id).where(users.c.name == name)


def _words(query: str) -> list[str]:
    """The words of a search, without the characters full-text query syntax gives meaning to."""
    cleaned = "".join(ch if ch.isalnum() else " " for ch in query)
    return cleaned.split()[:20]
