"""Subscribers and deliveries: all the SQL of mailing digests.

A delivery row exists for every (digest period, recipient) that was decided
on, created before anything is sent and in the same transaction as that
decision. Its status moves queued -> sending (claimed by one process) ->
sent, or to retry/failed; a row marked sent is never picked again, and only the
process whose claim succeeded sends a row, which is what makes sending a period
twice, or from two processes at once, mail nobody twice.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    RowMapping,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from aggregator.store import Store
from aggregator.store.schema import deliveries, secrets, subscribers

ACTIVE = "active"
PAUSED = "paused"
UNSUBSCRIBED = "unsubscribed"

QUEUED = "queued"
# Claimed by a process that is sending it now; `next_attempt_at` is when the claim expires.
SENDING = "sending"
SENT = "sent"
RETRY = "retry"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"

# How long a claim holds before the row counts as abandoned (its sender was killed
# between claiming and recording the outcome) and is sent again. Far longer than
# one message takes (a pacing gap plus a few SMTP timeouts), so a live sender never
# loses its claim to another process.
CLAIM_TIMEOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class Subscriber:
    """One address's subscription to one digest, with the filters that narrow it."""

    email: str
    digest: str
    name: str | None = None
    outlets: tuple[str, ...] = ()
    language: str | None = None
    min_outlets: int | None = None
    max_stories: int | None = None
    status: str = ACTIVE
    status_reason: str | None = None
    consecutive_failures: int = 0
    id: int | None = None


@dataclass(frozen=True)
class Delivery:
    id: int
    digest: str
    period_start: datetime
    period_end: datetime
    recipient: str
    subscriber_id: int | None
    message_id: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    detail: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True)
class Claims:
    """Deliveries of one period held by another sender's claim, and when the last one expires."""

    digest: str
    period_start: datetime
    period_end: datetime
    count: int
    until: datetime


@dataclass
class PlanResult:
    queued: int = 0
    skipped: int = 0
    existing: int = 0
    ids: list[int] = field(default_factory=list)


def _subscriber(row: RowMapping) -> Subscriber:
    return Subscriber(
        id=row["id"],
        email=row["email"],
        digest=row["digest"],
        name=row["name"],
        outlets=tuple(row["outlets"].split("\n")) if row["outlets"] else (),
        language=row["language"],
        min_outlets=row["min_outlets"],
        max_stories=row["max_stories"],
        status=row["status"],
        status_reason=row["status_reason"],
        consecutive_failures=row["consecutive_failures"],
    )


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        digest=row["digest"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        recipient=row["recipient"],
        subscriber_id=row["subscriber_id"],
        message_id=row["message_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        detail=row["detail"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
    )


def _filters(subscriber: Subscriber) -> dict[str, object]:
    return {
        "name": subscriber.name,
        "outlets": "\n".join(subscriber.outlets) or None,
        "language": subscriber.language,
        "min_outlets": subscriber.min_outlets,
        "max_stories": subscriber.max_stories,
    }


def _due(now: datetime) -> ColumnElement[bool]:
    """Deliveries to attempt at `now`: queued, retries whose time has come, expired claims."""
    return or_(
        deliveries.c.status == QUEUED,
        and_(deliveries.c.status.in_((RETRY, SENDING)), deliveries.c.next_attempt_at <= now),
    )


def _insert_new(conn: Connection) -> Insert:
    """INSERT of delivery rows that leaves out any a concurrent `plan` already made.

    The unique (period, recipient) key would otherwise fail the whole decision on
    PostgreSQL, where two transactions do not see each other's new rows.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    key = [
        deliveries.c.digest,
        deliveries.c.period_start,
        deliveries.c.period_end,
        deliveries.c.recipient,
    ]
    return (
        insert(deliveries)
        .on_conflict_do_nothing(index_elements=key)
        .returning(deliveries.c.recipient)
    )


class MailStore:
    """Mail tables of a Store; every public method is one transaction."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- subscribers ------------------------------------------------------------

    def _upsert(self, conn: Connection, subscriber: Subscriber, now: datetime) -> bool:
        key = and_(
            subscribers.c.email == subscriber.email, subscribers.c.digest == subscriber.digest
        )
        found = conn.execute(select(subscribers.c.id).where(key)).first()
        values = {
            **_filters(subscriber),
            "status": ACTIVE,
            "status_reason": None,
            "consecutive_failures": 0,
            "updated_at": now,
        }
        if found is None:
            conn.execute(
                subscribers.insert().values(
                    email=subscriber.email, digest=subscriber.digest, created_at=now, **values
                )
            )
            return True
        conn.execute(update(subscribers).where(subscribers.c.id == found.id).values(**values))
        return False

    def add_subscriber(self, subscriber: Subscriber, now: datetime) -> bool:
        """Subscribe (or update and re-activate) an address; return whether it was new.

        Adding by hand is a deliberate act, so it also lifts a pause or an unsubscribe.
        """
        with self._tx() as conn:
            return self._upsert(conn, subscriber, now)

    def import_subscribers(self, rows: Sequence[Subscriber], now: datetime) -> tuple[int, int, int]:
        """Add or update many at once; return (added, updated, left unsubscribed).

        Whoever unsubscribed stays unsubscribed: an old list must not sign them up again.
        """
        added = updated = kept = 0
        with self._tx() as conn:
            for subscriber in rows:
                status = conn.execute(
                    select(subscribers.c.status).where(
                        subscribers.c.email == subscriber.email,
                        subscribers.c.digest == subscriber.digest,
                    )
                ).scalar()
                if status == UNSUBSCRIBED:
                    kept += 1
                elif self._upsert(conn, subscriber, now):
                    added += 1
                else:
                    updated += 1
        return added, updated, kept

    def subscribers(self, digest: str | None = None) -> list[Subscriber]:
        query = select(subscribers).order_by(subscribers.c.email, subscribers.c.digest)
        if digest is not None:
            query = query.where(subscribers.c.digest == digest)
        with self._tx() as conn:
            return [_subscriber(row) for row in conn.execute(query).mappings()]

    def subscriber(self, subscriber_id: int) -> Subscriber | None:
        with self._tx() as conn:
            row = (
                conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id))
                .mappings()
                .first()
            )
            return None if row is None else _subscriber(row)

    def remove_subscriber(self, email: str, digest: str | None = None) -> int:
        """Delete an address (from one digest or all); return how many subscriptions went."""
        query = delete(subscribers).where(subscribers.c.email == email)
        if digest is not None:
            query = query.where(subscribers.c.digest == digest)
        with self._tx() as conn:
            return conn.execute(query).rowcount

    def unsubscribe(self, subscriber_id: int, now: datetime, reason: str) -> bool:
        """Stop mailing a subscriber at once; return False if they already had left."""
        with self._tx() as conn:
            result = conn.execute(
                update(subscribers)
                .where(subscribers.c.id == subscriber_id, subscribers.c.status != UNSUBSCRIBED)
                .values(status=UNSUBSCRIBED, status_reason=reason, updated_at=now)
            )
            return result.rowcount > 0

    # -- deliveries -------------------------------------------------------------

    def plan(
        self,
        digest: str,
        start: datetime,
        end: datetime,
        now: datetime,
        *,
        message_id: Callable[[Subscriber], str],
        wanted: Callable[[Subscriber], bool],
    ) -> PlanResult:
        """Decide, in one transaction, who gets this period: a row per active subscriber.

        Subscribers with a row for the period keep it whatever its state; those for
        whom `wanted` is False (nothing matches their filters) get a skipped row.
        """
        result = PlanResult()
        with self._tx() as conn:
            have = {
                row.recipient
                for row in conn.execute(
                    select(deliveries.c.recipient).where(
                        deliveries.c.digest == digest,
                        deliveries.c.period_start == start,
                        deliveries.c.period_end == end,
                    )
                )
            }
            active = conn.execute(
                select(subscribers)
                .where(subscribers.c.digest == digest, subscribers.c.status == ACTIVE)
                .order_by(subscribers.c.id)
            ).mappings()
            rows = []
            for row in active:
                subscriber = _subscriber(row)
                if subscriber.email in have:
                    result.existing += 1
                    continue
                send = wanted(subscriber)
                rows.append(
                    {
                        "digest": digest,
                        "period_start": start,
                        "period_end": end,
                        "recipient": subscriber.email,
                        "subscriber_id": subscriber.id,
                        "message_id": message_id(subscriber),
                        "status": QUEUED if send else SKIPPED,
                        "attempts": 0,
                        "next_attempt_at": now if send else None,
                        "detail": None if send else "no story matches the subscriber's filters",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            inserted: set[str] = set()
            if rows:
                inserted = set(conn.execute(_insert_new(conn), rows).scalars())
            for new in rows:
                if new["recipient"] not in inserted:
                    result.existing += 1  # another process planned it since the read above
                elif new["status"] == QUEUED:
                    result.queued += 1
                else:
                    result.skipped += 1
        return result

    def pending(
        self,
        now: datetime,
        digest: str | None = None,
        period: tuple[datetime, datetime] | None = None,
    ) -> list[tuple[Delivery, Subscriber | None]]:
        """Deliveries to attempt now (queued, and retries whose time has come), in order.

        Each comes with its subscriber as they are now (None if removed), so a
        subscriber who left after the decision is not mailed. Rows are only
        read here: send one only after `claim` returned True for it.
        """
        query = (
            select(deliveries).where(_due(now)).order_by(deliveries.c.period_end, deliveries.c.id)
        )
        if digest is not None:
            query = query.where(deliveries.c.digest == digest)
        if period is not None:
            query = query.where(
                deliveries.c.period_start == period[0], deliveries.c.period_end == period[1]
            )
        with self._tx() as conn:
            due = [_delivery(row) for row in conn.execute(query).mappings()]
            ids = sorted({d.subscriber_id for d in due if d.subscriber_id is not None})
            people: dict[int, Subscriber] = {}
            for start in range(0, len(ids), 500):
                chunk = select(subscribers).where(subscribers.c.id.in_(ids[start : start + 500]))
                people.update(
                    (row["id"], _subscriber(row)) for row in conn.execute(chunk).mappings()
                )
        return [
            (d, people.get(d.subscriber_id) if d.subscriber_id is not None else None) for d in due
        ]

    def deliveries(self, digest: str | None = None) -> list[Delivery]:
        query = select(deliveries).order_by(
            deliveries.c.period_end.desc(), deliveries.c.digest, deliveries.c.recipient
        )
        if digest is not None:
            query = query.where(deliveries.c.digest == digest)
        with self._tx() as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def claim(self, delivery: Delivery, now: datetime) -> bool:
        """Take a due delivery for sending; False if another process has taken or finished it.

        The claim is an UPDATE of the row only while it is still due, so of two
        processes that read the same row exactly one wins. A claim expires after
        CLAIM_TIMEOUT: a sender killed between claim and record leaves the row to
        be sent again then. That is at-least-once on purpose: for a digest, a lost
        issue is worse than a rare second copy, and the copy carries the same
        Message-ID, so receiving systems can drop it. (At-most-once would fail
        every row claimed at a crash, though nearly all of them were never sent:
        the crash window of an actual repeat is the moment between the server's
        250 and the commit that records it.)
        """
        with self._tx() as conn:
            claimed = conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery.id, _due(now))
                .values(status=SENDING, next_attempt_at=now + CLAIM_TIMEOUT, updated_at=now)
            )
            return claimed.rowcount == 1

    def claims(self, now: datetime, digest: str | None = None) -> list[Claims]:
        """Claims that still hold at `now`, per period: rows no sender may take before `until`."""
        query = (
            select(
                deliveries.c.digest,
                deliveries.c.period_start,
                deliveries.c.period_end,
                func.count(),
                func.max(deliveries.c.next_attempt_at),
            )
            .where(deliveries.c.status == SENDING, deliveries.c.next_attempt_at > now)
            .group_by(deliveries.c.digest, deliveries.c.period_start, deliveries.c.period_end)
            .order_by(deliveries.c.period_end, deliveries.c.digest)
        )
        if digest is not None:
            query = query.where(deliveries.c.digest == digest)
        with self._tx() as conn:
            return [Claims(*row) for row in conn.execute(query)]

    def expire_claims(self, now: datetime, digest: str | None = None) -> int:
        """Make every claim (of `digest`, default all) due now; return how many there were.

        Only for a caller holding the run lock that every sender takes: no other
        sender is running then, so each claim was left by a killed process, and
        waiting CLAIM_TIMEOUT for it would only delay that subscriber's mail.
        `send NAME` takes over NAME's claims only, the ones it is about to send.
        """
        query = update(deliveries).where(deliveries.c.status == SENDING)
        if digest is not None:
            query = query.where(deliveries.c.digest == digest)
        with self._tx() as conn:
            return conn.execute(query.values(next_attempt_at=now, updated_at=now)).rowcount

    def release(self, delivery: Delivery, reason: str, now: datetime) -> None:
        """Give a claimed delivery back as it was, untried (the run stopped before sending it)."""
        with self._tx() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery.id)
                .values(
                    status=delivery.status,
                    next_attempt_at=delivery.next_attempt_at,
                    detail=reason,
                    updated_at=now,
                )
            )

    def _finish(
        self, conn: Connection, delivery: Delivery, now: datetime, **values: object
    ) -> None:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == delivery.id)
            .values(attempts=deliveries.c.attempts + 1, updated_at=now, **values)
        )

    def mark_sent(self, delivery: Delivery, answer: str, now: datetime, *, reset: bool) -> None:
        """The server took the message; with `reset`, end the subscriber's run of failures.

        This commit closes the window in which a crash makes the message go again,
        so it does as little as it can: one statement unless there is a failure count.
        """
        with self._tx() as conn:
            self._finish(
                conn, delivery, now, status=SENT, detail=answer, sent_at=now, next_attempt_at=None
            )
            if reset and delivery.subscriber_id is not None:
                conn.execute(
                    update(subscribers)
                    .where(subscribers.c.id == delivery.subscriber_id)
                    .values(consecutive_failures=0)
                )

    def mark_retry(self, delivery: Delivery, reason: str, at: datetime, now: datetime) -> None:
        with self._tx() as conn:
            self._finish(conn, delivery, now, status=RETRY, detail=reason, next_attempt_at=at)

    def mark_failed(
        self, delivery: Delivery, reason: str, now: datetime, *, pause_after: int | None
    ) -> bool:
        """Fail a delivery for good; with `pause_after`, count it against the subscriber.

        Returns True when this failure paused the subscriber.
        """
        with self._tx() as conn:
            self._finish(conn, delivery, now, status=FAILED, detail=reason, next_attempt_at=None)
            if pause_after is None or delivery.subscriber_id is None:
                return False
            failures = conn.execute(
                update(subscribers)
                .where(subscribers.c.id == delivery.subscriber_id)
                .values(consecutive_failures=subscribers.c.consecutive_failures + 1)
                .returning(subscribers.c.consecutive_failures, subscribers.c.status)
            ).first()
            if failures is None or failures.status != ACTIVE or failures[0] < pause_after:
                return False
            conn.execute(
                update(subscribers)
                .where(subscribers.c.id == delivery.subscriber_id)
                .values(
                    status=PAUSED,
                    status_reason=f"{failures[0]} permanent failures in a row, last: {reason}",
                    updated_at=now,
                )
            )
            return True

    def cancel(self, delivery: Delivery, reason: str, now: datetime) -> None:
        """Drop a delivery that must not go out any more (the subscriber left or was paused)."""
        with self._tx() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery.id)
                .values(status=CANCELLED, detail=reason, next_attempt_at=None, updated_at=now)
            )

    # -- secrets ----------------------------------------------------------------

    def secret(self, name: str) -> str:
        """A random key stored under `name`, created on first use (by exactly one process)."""
        query = select(secrets.c.value).where(secrets.c.name == name)
        with self._tx() as conn:
            value = conn.execute(query).scalar()
        if value is not None:
            return str(value)
        try:
            with self._tx() as conn:
                conn.execute(secrets.insert().values(name=name, value=random.token_urlsafe(32)))
        except IntegrityError:
            pass  # another process created it first; use theirs
        with self._tx() as conn:
            return str(conn.execute(query).scalar_one())
