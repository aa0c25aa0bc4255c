"""Mail commands: `subscribers add|list|remove|import`, `send`, `deliveries`.

Terminal input and output only; the work is in `service` and `store.mail`.
Exit codes follow the CLI's: 0 done, 1 some mail failed or waits for a
retry, 2 bad input with a one-line ``error:`` message, 3 another run holds
the lock.
"""

from __future__ import annotations

import csv
import io
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import click
from email_validator import EmailNotValidError, validate_email

from aggregator.config import ConfigError, DigestSettings, Settings
from aggregator.mail.sender import SmtpConfigError
from aggregator.mail.service import send_due, send_retries, write_previews
from aggregator.pipeline import scheduled_period, utcnow
from aggregator.store.mail import (
    ACTIVE,
    FAILED,
    RETRY,
    SENDING,
    SENT,
    Delivery,
    MailStore,
    Subscriber,
)
from aggregator.terminal import WAIT_OPTION, fail, run_lock, table, when_option
from aggregator.web.commands import Runtime
from aggregator.web.commands import register as register_web

CSV_COLUMNS = ("email", "digest", "name", "outlets", "language", "min_outlets", "max_stories")


def normalize_address(text: str) -> str:
    """A validated address in the one form it is stored in; ValueError says what is wrong.

    Lower-cased whole: mail systems treat the local part case-insensitively in
    practice, and one person must not be two subscribers. Internationalized
    domains are stored in their ASCII (punycode) form, which every SMTP server takes.
    """
    try:
        checked = validate_email(text.strip(), check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid email address: {exc}") from None
    address = checked.ascii_email or checked.normalized
    return address.lower()


def display_name(text: str | None) -> str | None:
    """A name for the To: header, on one line: control characters (CR, LF, tab) become spaces.

    A line break in a header value could smuggle in headers of its own (Bcc:),
    so a stored one would only make every message to this subscriber fail.
    """
    flat = "".join(" " if unicodedata.category(char) == "Cc" else char for char in text or "")
    return " ".join(flat.split()) or None


def _outlets(values: Sequence[str]) -> tuple[str, ...]:
    """``--outlets a,b --outlets c`` or a CSV cell ``a;b``: one list, order kept, no blanks."""
    names = (name.strip() for value in values for name in value.replace(";", ",").split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def subscriber(
    settings: Settings,
    email: str,
    digest: str,
    *,
    name: str | None = None,
    outlets: Sequence[str] = (),
    language: str | None = None,
    min_outlets: int | None = None,
    max_stories: int | None = None,
) -> Subscriber:
    """A subscriber from user input; ValueError/ConfigError with a one-line reason."""
    settings.digest(digest)
    for label, value in (("min outlets", min_outlets), ("max stories", max_stories)):
        if value is not None and value < 1:
            raise ValueError(f"{label} must be 1 or more (got {value})")
    return Subscriber(
        email=normalize_address(email),
        digest=digest,
        name=display_name(name),
        outlets=_outlets(outlets),
        language=(language or "").strip().lower() or None,
        min_outlets=min_outlets,
        max_stories=max_stories,
    )


def _digest(settings: Settings, name: str) -> DigestSettings:
    try:
        return settings.digest(name)
    except ConfigError as exc:
        fail(str(exc))


# -- subscribers ---------------------------------------------------------------


@click.group()
def subscribers() -> None:
    """Manage who gets which digest by mail."""


@subscribers.command("add")
@click.argument("email")
@click.option("--digest", "digest_name", required=True, help="Digest to subscribe to.")
@click.option("--name", help="Display name for the To: header.")
@click.option("--outlets", multiple=True, help="Only these outlets (comma-separated or repeated).")
@click.option("--language", help="Only entries in this language (e.g. de).")
@click.option("--min-outlets", type=int, help="Only stories carried by at least N outlets.")
@click.option("--max-stories", type=int, help="At most N stories per mail.")
@click.pass_obj
def subscribers_add(
    obj: Runtime,
    email: str,
    digest_name: str,
    name: str | None,
    outlets: tuple[str, ...],
    language: str | None,
    min_outlets: int | None,
    max_stories: int | None,
) -> None:
    """Subscribe EMAIL to a digest; an existing subscription is updated (and re-activated)."""
    try:
        sub = subscriber(
            obj.settings,
            email,
            digest_name,
            name=name,
            outlets=outlets,
            language=language,
            min_outlets=min_outlets,
            max_stories=max_stories,
        )
    except (ValueError, ConfigError) as exc:
        fail(str(exc))
    new = MailStore(obj.store).add_subscriber(sub, utcnow())
    click.echo(f"{'added' if new else 'updated'}: {sub.email} ({sub.digest})")


def _filters(sub: Subscriber) -> str:
    parts = []
    if sub.outlets:
        parts.append(f"outlets={','.join(sub.outlets)}")
    if sub.language:
        parts.append(f"language={sub.language}")
    if sub.min_outlets:
        parts.append(f"min-outlets={sub.min_outlets}")
    if sub.max_stories:
        parts.append(f"max-stories={sub.max_stories}")
    return " ".join(parts) or "-"


@subscribers.command("list")
@click.option("--digest", "digest_name", help="Only this digest's subscribers.")
@click.pass_obj
def subscribers_list(obj: Runtime, digest_name: str | None) -> None:
    """Every subscription with its filters and state (and why a subscriber is paused)."""
    rows = []
    for sub in MailStore(obj.store).subscribers(digest_name):
        state = sub.status if sub.status == ACTIVE else f"{sub.status}: {sub.status_reason}"
        rows.append([sub.email, sub.digest, sub.name or "", _filters(sub), state])
    click.echo(table(["email", "digest", "name", "filters", "status"], rows))


@subscribers.command("remove")
@click.argument("email")
@click.option("--digest", "digest_name", help="Only from this digest (default: from all).")
@click.pass_obj
def subscribers_remove(obj: Runtime, email: str, digest_name: str | None) -> None:
    """Delete EMAIL's subscriptions (its delivery history stays)."""
    try:
        address = normalize_address(email)
    except ValueError as exc:
        fail(str(exc))
    removed = MailStore(obj.store).remove_subscriber(address, digest_name)
    if not removed:
        fail(f"{address} is not subscribed{f' to {digest_name}' if digest_name else ''}")
    click.echo(f"removed: {address} ({removed} subscription{'s' if removed > 1 else ''})")


def read_csv(settings: Settings, path: Path, default_digest: str | None) -> list[Subscriber]:
    """Subscribers from a CSV with a header row; ValueError names the file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    # The csv module splits the rows itself: a quoted cell may span lines.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [column.strip().lower() for column in reader.fieldnames or []]
    if "email" not in header:
        raise ValueError(f"{path}:1: no 'email' column (columns: {', '.join(CSV_COLUMNS)})")
    unknown = [column for column in header if column not in CSV_COLUMNS]
    if unknown:
        raise ValueError(
            f"{path}:1: unknown column {unknown[0]!r} (known: {', '.join(CSV_COLUMNS)})"
        )
    reader.fieldnames = header
    result = []
    for row in reader:
        line = reader.line_num
        cells = {key: (value or "").strip() for key, value in row.items() if key is not None}
        digest = cells.get("digest") or default_digest
        if not digest:
            raise ValueError(f"{path}:{line}: no digest (add a 'digest' column or use --digest)")
        try:
            result.append(
                subscriber(
                    settings,
                    cells["email"],
                    digest,
                    name=cells.get("name"),
                    outlets=[cells.get("outlets", "")],
                    language=cells.get("language"),
                    min_outlets=int(cells["min_outlets"]) if cells.get("min_outlets") else None,
                    max_stories=int(cells["max_stories"]) if cells.get("max_stories") else None,
                )
            )
        except (ValueError, ConfigError) as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
    return result


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--digest", "digest_name", help="Digest for rows without a 'digest' column.")
@click.pass_obj
def subscribers_import(obj: Runtime, file: Path, digest_name: str | None) -> None:
    """Add or update subscribers from a CSV file, all or none.

    Columns (header row): email, and optionally digest, name, outlets
    (separated by ';'), language, min_outlets, max_stories. Addresses that
    unsubscribed stay unsubscribed.
    """
    try:
        rows = read_csv(obj.settings, file, digest_name)
    except ValueError as exc:
        fail(str(exc))
    added, updated, kept = MailStore(obj.store).import_subscribers(rows, utcnow())
    click.echo(f"{added} added, {updated} updated, {kept} left unsubscribed")


# -- send and deliveries -----------------------------------------------------------


@click.command("send")
@click.argument("name")
@click.option(
    "--since",
    help="Start of the period: ISO date/time, or relative (24h, 7d): back from now with "
    "--until, else back from the end of the latest scheduled period.",
)
@click.option(
    "--until",
    help="End of the period (default: the end of the digest's latest scheduled period, "
    "so a re-run mails the same period, to nobody twice).",
)
@click.option("--dry-run", is_flag=True, help="Write the messages as .eml files, send nothing.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outbox"),
    show_default=True,
    help="Folder for --dry-run's .eml files.",
)
@WAIT_OPTION
@click.pass_obj
def send(
    obj: Runtime,
    name: str,
    since: str | None,
    until: str | None,
    dry_run: bool,
    out: Path,
    wait: bool,
) -> None:
    """Mail the digest NAME to its subscribers; nobody gets the same period twice.

    Default period: the latest completed period of the digest's schedule (the
    one `run --once` sends). Retries of earlier periods that are due go too.
    Exits 1 when a delivery failed or waits for a retry, 3 when another run
    (`run --once`, `send`) is in progress.
    """
    digest = _digest(obj.settings, name)
    now = utcnow()
    # Without --until the period ends where the digest's latest scheduled period
    # ends, not at this second, and a relative --since counts back from there: a
    # re-run, or `run --once`, then asks for the same period, which nobody gets twice.
    anchor = scheduled_period(digest, now)[1] if until is None else now
    end = when_option(until, "--until", now) or anchor
    start = when_option(since, "--since", anchor) or end - digest.period_delta
    if start >= end:
        limit = "--until" if until else "the end of the latest scheduled period (or give --until)"
        fail(f"--since ({start:%Y-%m-%d %H:%M}Z) must be before {limit} ({end:%Y-%m-%d %H:%M}Z)")
    if dry_run:
        files = write_previews(obj.store, obj.settings, digest, start, end, now, out)
        for path in files:
            click.echo(str(path))
        click.echo(f"{len(files)} message{'s' if len(files) != 1 else ''} written, none sent")
        return
    with run_lock(obj.store, wait):
        MailStore(obj.store).expire_claims(now, name)
        try:
            summaries = [send_due(obj.store, obj.settings, digest, start, end, now)]
            summaries += send_retries(obj.store, obj.settings, now, digest=name)
        except SmtpConfigError as exc:
            fail(str(exc))
    for summary in summaries:
        click.echo(summary.line())
    sys.exit(0 if all(summary.ok for summary in summaries) else 1)


def _detail(delivery: Delivery) -> str:
    text = delivery.detail or ""
    if delivery.status == SENT and delivery.sent_at is not None:
        return f"{delivery.sent_at:%Y-%m-%d %H:%M:%S}Z: {text}"
    if delivery.status == RETRY and delivery.next_attempt_at is not None:
        return f"retry at {delivery.next_attempt_at:%Y-%m-%d %H:%M}Z: {text}"
    if delivery.status == FAILED:
        return f"failed permanently: {text}"
    if delivery.status == SENDING and delivery.next_attempt_at is not None:
        claimed = f"claimed by a run until {delivery.next_attempt_at:%Y-%m-%d %H:%M}Z"
        return f"{claimed}; {text}" if text else claimed
    return text


@click.command("deliveries")
@click.option("--digest", "digest_name", help="Only this digest.")
@click.pass_obj
def deliveries(obj: Runtime, digest_name: str | None) -> None:
    """Per recipient and period: queued, sent (server's answer), retry (when), failed (why)."""
    rows = [
        [
            d.digest,
            f"{d.period_start:%Y-%m-%d %H:%M} – {d.period_end:%Y-%m-%d %H:%M}Z",
            d.recipient,
            d.status,
            str(d.attempts),
            _detail(d),
        ]
        for d in MailStore(obj.store).deliveries(digest_name)
    ]
    click.echo(table(["digest", "period", "recipient", "status", "attempts", "detail"], rows))


def register(main: click.Group) -> None:
    """Add the mail commands (and `web`, which serves the unsubscribe links) to the CLI."""
    for command in (subscribers, send, deliveries):
        main.add_command(command)
    register_web(main)
