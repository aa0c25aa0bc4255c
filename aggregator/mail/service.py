"""The delivery loop: decide who gets a period, send, record; resumable after any crash.

1. `plan`: one transaction creates a `deliveries` row (queued) for every
   active subscriber who has none for this period. That is the decision.
2. Each queued row is claimed (`MailStore.claim`, so two processes never
   send the same row), sent over one SMTP connection and then marked sent (or
   retry/failed) in its own short transaction.

A crash before step 1 commits decides nothing; a crash in step 2 leaves the
rows not yet sent queued, so the next call sends exactly those, and the one
row claimed at the crash once its claim has expired. The one window for a
repeat is between the server's final 250 and the commit that marks the row
sent (a few milliseconds); the message then goes again with the same
Message-ID, which lets receiving systems drop it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from aggregator.config import DigestSettings, Settings
from aggregator.deliver import write_file
from aggregator.digest import build_digest
from aggregator.mail import tokens
from aggregator.mail.compose import Mailing, compose, message_id, sender_domain, story_count
from aggregator.mail.sender import Outcome, Sender, SmtpRefused
from aggregator.store import Store
from aggregator.store.mail import ACTIVE, Delivery, MailStore, Subscriber

log = logging.getLogger(__name__)

# After this many connection failures in a row the rest of a batch is deferred
# instead of each waiting for its own connect timeout.
CONNECTION_FAILURES_BEFORE_DEFER = 2


@dataclass
class SendSummary:
    digest: str
    start: datetime
    end: datetime
    queued: int = 0
    skipped: int = 0
    already: int = 0
    sent: int = 0
    retry: int = 0
    failed: int = 0
    cancelled: int = 0
    paused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.retry or self.failed)

    def line(self) -> str:
        text = (
            f"mail {self.digest} {self.start:%Y-%m-%d %H:%M}Z – {self.end:%Y-%m-%d %H:%M}Z: "
            f"{self.sent} sent, {self.retry} to retry, {self.failed} failed, "
            f"{self.skipped} skipped (nothing matched), {self.already} decided earlier"
        )
        if self.paused:
            text += f"; paused: {', '.join(self.paused)}"
        return text


def backoff(attempts: int, initial: timedelta) -> timedelta:
    """Wait before attempt `attempts + 1`: initial, 2x, 4x, ... (attempts counts from 1)."""
    factor: int = 2 ** min(max(attempts - 1, 0), 20)
    return initial * factor


def mailing(
    store: Store,
    settings: Settings,
    digest: DigestSettings,
    start: datetime,
    end: datetime,
    now: datetime,
) -> Mailing:
    """The period's stories, built exactly as the file digest builds them."""
    built = build_digest(
        store.clusters_between(start, end),
        name=digest.name,
        title=digest.title or digest.name,
        period_start=start,
        period_end=end,
        generated_at=now,
    )
    return Mailing(built, digest, settings.smtp, settings.web.base_url, now)


class _Run:
    """One pass over pending deliveries with one SMTP session."""

    def __init__(self, mail: MailStore, settings: Settings, sender: Sender, now: datetime) -> None:
        self.mail = mail
        self.settings = settings
        self.sender = sender
        self.now = now
        self.secret = tokens.load_secret(settings.smtp, mail)
        self.connection_failures = 0
        self.last_error = ""
        self._started = time.monotonic()

    def _clock(self) -> datetime:
        """`now` plus the time this run has taken so far.

        Claims made hours into a long paced run then expire CLAIM_TIMEOUT after
        they were made, not after the run began.
        """
        return self.now + timedelta(seconds=time.monotonic() - self._started)

    def deliver(
        self,
        mailing: Mailing,
        items: Iterable[tuple[Delivery, Subscriber | None]],
        summary: SendSummary,
    ) -> None:
        for delivery, subscriber in items:
            if not self.mail.claim(delivery, self._clock()):
                summary.already += 1  # another process is sending it or has sent it
                continue
            if subscriber is None or subscriber.status != ACTIVE:
                state = "removed" if subscriber is None else subscriber.status
                self.mail.cancel(delivery, f"subscriber {state} before sending", self.now)
                summary.cancelled += 1
                continue
            if self.connection_failures >= CONNECTION_FAILURES_BEFORE_DEFER:
                self._temporary(delivery, self.last_error, summary)
                continue
            try:
                token = tokens.sign(self.secret, subscriber)
                message = compose(mailing, subscriber, msgid=delivery.message_id, token=token)
                result = self.sender.send(message, delivery.recipient)
            except ValueError as exc:  # UnicodeError included
                # This row's data cannot make a message (e.g. a control character
                # in a stored name): it fails alone, not the subscriber's address.
                reason = f"cannot compose the message: {exc}"
                log.warning("mail to %s failed: %s", delivery.recipient, reason)
                self.mail.mark_failed(delivery, reason, self.now, pause_after=None)
                summary.failed += 1
                continue
            except SmtpRefused as exc:
                self.mail.release(delivery, str(exc), self.now)
                raise
            if result.outcome is Outcome.SENT:
                reset = subscriber.consecutive_failures > 0
                self.mail.mark_sent(delivery, result.answer, self.now, reset=reset)
                self.connection_failures = 0
                summary.sent += 1
            elif result.outcome is Outcome.TEMPORARY:
                self.connection_failures = self.connection_failures + 1 if result.connection else 0
                self.last_error = result.answer
                self._temporary(delivery, result.answer, summary)
            else:
                self.connection_failures = 0
                log.warning("mail to %s failed permanently: %s", delivery.recipient, result.answer)
                paused = self.mail.mark_failed(
                    delivery,
                    result.answer,
                    self.now,
                    pause_after=self.settings.smtp.pause_after_failures,
                )
                summary.failed += 1
                if paused:
                    summary.paused.append(delivery.recipient)

    def _temporary(self, delivery: Delivery, reason: str, summary: SendSummary) -> None:
        smtp = self.settings.smtp
        # The last retry is at the age limit itself, however long the backoff has grown.
        retry_at = min(
            self.now + backoff(delivery.attempts + 1, smtp.retry_initial_delta),
            delivery.created_at + smtp.retry_max_age_delta,
        )
        if retry_at <= self.now:
            gave_up = f"gave up after {delivery.attempts + 1} attempts; last: {reason}"
            self.mail.mark_failed(delivery, gave_up, self.now, pause_after=None)
            summary.failed += 1
            return
        log.info("mail to %s deferred to %s: %s", delivery.recipient, retry_at, reason)
        self.mail.mark_retry(delivery, reason, retry_at, self.now)
        summary.retry += 1


def send_due(
    store: Store,
    settings: Settings,
    digest: DigestSettings,
    start: datetime,
    end: datetime,
    now: datetime,
    *,
    environ: Mapping[str, str] = os.environ,
) -> SendSummary:
    """Mail one digest period to its subscribers; safe to call again for the same period.

    Subscribers decided on earlier are not decided again: those sent are left
    alone, those queued (a crash) are sent now, retries go when they are due.
    """
    mail = MailStore(store)
    # Built only when someone is still to be decided or sent: `run --once` asks
    # for the latest period on every run, and usually everybody has it already.
    period = functools.cache(lambda: mailing(store, settings, digest, start, end, now))
    domain = sender_domain(settings.smtp)
    plan = mail.plan(
        digest.name,
        start,
        end,
        now,
        message_id=lambda s: message_id(digest.name, start, end, s.email, domain),
        wanted=lambda s: story_count(period(), s) > 0,
    )
    summary = SendSummary(
        digest.name, start, end, queued=plan.queued, skipped=plan.skipped, already=plan.existing
    )
    # Decided on: a run killed after writing the period's files and before this
    # point leaves it unmarked, and a later run mails it (`Pipeline.send_mail`).
    store.mark_mail_planned(digest.name, start, end, now)
    pending = mail.pending(now, digest.name, (start, end))
    if pending:
        with Sender(settings.smtp, environ) as sender:
            _Run(mail, settings, sender, now).deliver(period(), pending, summary)
    return summary


def _report_claims(mail: MailStore, now: datetime, digest: str | None = None) -> None:
    """Warn of deliveries this run must leave alone because another run's claim holds them.

    Usually the claims of a sender killed mid-run (`send` takes them over at
    once; `run --once` and `serve` wait until they expire). Said once per run, by
    `send_retries`, which every run calls after its periods: without this line
    those subscribers would wait in silence.
    """
    for held in mail.claims(now, digest):
        log.warning(
            "mail %s %s – %s: %d %s claimed by another run until %s "
            "(a run killed while sending leaves its claims; if no other sender is "
            "still running, `send %s` sends them now)",
            held.digest,
            f"{held.period_start:%Y-%m-%d %H:%M}Z",
            f"{held.period_end:%Y-%m-%d %H:%M}Z",
            held.count,
            "delivery" if held.count == 1 else "deliveries",
            f"{held.until:%H:%M}Z",
            held.digest,
        )


def send_retries(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    digest: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> list[SendSummary]:
    """Send every delivery (of `digest`, default all) whose retry time has come, any period.

    Also picks up rows left queued by a crash in a period nobody sends again.
    """
    mail = MailStore(store)
    _report_claims(mail, now, digest)
    groups: dict[tuple[str, datetime, datetime], list[tuple[Delivery, Subscriber | None]]] = {}
    for delivery, subscriber in mail.pending(now, digest):
        key = (delivery.digest, delivery.period_start, delivery.period_end)
        groups.setdefault(key, []).append((delivery, subscriber))
    summaries: list[SendSummary] = []
    if not groups:
        return summaries
    configured = {d.name: d for d in settings.digests}
    with Sender(settings.smtp, environ) as sender:
        run = _Run(mail, settings, sender, now)
        for (name, start, end), items in groups.items():
            summary = SendSummary(name, start, end)
            summaries.append(summary)
            settings_of = configured.get(name)
            if settings_of is None:
                for delivery, _ in items:
                    mail.cancel(delivery, f"digest {name!r} is no longer configured", now)
                    summary.cancelled += 1
                continue
            run.deliver(mailing(store, settings, settings_of, start, end, now), items, summary)
    return summaries


def write_previews(
    store: Store,
    settings: Settings,
    digest: DigestSettings,
    start: datetime,
    end: datetime,
    now: datetime,
    out: Path,
) -> list[Path]:
    """Each active subscriber's message as an .eml file; nothing is sent or recorded."""
    mail = MailStore(store)
    period = mailing(store, settings, digest, start, end, now)
    secret = tokens.load_secret(settings.smtp, mail)
    domain = sender_domain(settings.smtp)
    files = []
    for subscriber in mail.subscribers(digest.name):
        if subscriber.status != ACTIVE or story_count(period, subscriber) == 0:
            continue
        message = compose(
            period,
            subscriber,
            msgid=message_id(digest.name, start, end, subscriber.email, domain),
            token=tokens.sign(secret, subscriber),
        )
        path = (
            out
            / f"{digest.name}_{start:%Y-%m-%dT%H%MZ}_{end:%Y-%m-%dT%H%MZ}_{subscriber.email}.eml"
        )
        # Every part is 7-bit encoded (RFC 2047 headers, quoted-printable/base64 bodies).
        write_file(path, message.as_string())
        files.append(path)
    return files
