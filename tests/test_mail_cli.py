"""The mail commands through the real CLI group: subscribers, send, deliveries."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from configfile import write_config
from mailsetup import END, START, fill, loopback_smtp
from smtpserver import SmtpServer

from aggregator.cli import main
from aggregator.config import load
from aggregator.mail.commands import register
from aggregator.pipeline import scheduled_period, utcnow
from aggregator.store import Store
from aggregator.store.mail import CLAIM_TIMEOUT, MailStore

register(main)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, smtp: SmtpServer) -> Path:
    return write_config(
        tmp_path / "mail.toml",
        {
            "database": {"url": "sqlite:///mail.db"},
            "smtp": loopback_smtp(smtp.port, "Nachrichten <digest@example.org>"),
            "web": {"base_url": "https://news.example.org"},
            "digests": [{"name": "daily", "schedule": "0 6 * * *", "timezone": "Europe/Berlin"}],
        },
    )


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_subscribers_add_validates_normalizes_and_updates(config: Path) -> None:
    added = run(config, "subscribers", "add", " Anna@Example.ORG ", "--digest", "daily")
    assert added.exit_code == 0, added.output
    assert added.output == "added: anna@example.org (daily)\n"
    updated = run(
        config,
        "subscribers",
        "add",
        "anna@example.org",
        "--digest",
        "daily",
        "--outlets",
        "tagesschau.de,zeit.de",
        "--language",
        "DE",
        "--min-outlets",
        "2",
    )
    assert updated.output == "updated: anna@example.org (daily)\n"
    listing = run(config, "subscribers", "list")
    assert "anna@example.org" in listing.output
    assert "outlets=tagesschau.de,zeit.de language=de min-outlets=2" in listing.output

    bad = run(config, "subscribers", "add", "anna@@example", "--digest", "daily")
    assert bad.exit_code == 2
    assert bad.output.startswith("error: 'anna@@example' is not a valid email address")
    assert bad.output.count("\n") == 1
    unknown = run(config, "subscribers", "add", "bob@example.org", "--digest", "weekly")
    assert unknown.exit_code == 2
    assert "no digest named 'weekly'" in unknown.output

    removed = run(config, "subscribers", "remove", "ANNA@example.org")
    assert removed.exit_code == 0
    assert run(config, "subscribers", "remove", "anna@example.org").exit_code == 2


def test_import_is_all_or_nothing_and_names_the_line(config: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text(
        "email,name,outlets,min_outlets\n"
        "anna@example.org,Anna Müller,tagesschau.de;zeit.de,2\n"
        "bob@example.org,,,\n",
        encoding="utf-8",
    )
    result = run(config, "subscribers", "import", str(good), "--digest", "daily")
    assert result.exit_code == 0, result.output
    assert result.output == "2 added, 0 updated, 0 left unsubscribed\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "email,digest\ncarla@example.org,daily\nnot-an-address,daily\n", encoding="utf-8"
    )
    failed = run(config, "subscribers", "import", str(bad))
    assert failed.exit_code == 2
    assert failed.output.startswith(f"error: {bad}:3: 'not-an-address' is not a valid")
    store = Store(f"sqlite:///{tmp_path / 'mail.db'}")
    people = {s.email: s for s in MailStore(store).subscribers()}
    assert sorted(people) == ["anna@example.org", "bob@example.org"]
    assert people["anna@example.org"].outlets == ("tagesschau.de", "zeit.de")
    assert people["anna@example.org"].name == "Anna Müller"


def _anna_subscribed(config: Path, tmp_path: Path) -> Store:
    """The store of `config` (mail.db beside it) with news and anna subscribed to daily."""
    store = Store(f"sqlite:///{tmp_path / 'mail.db'}")
    fill(store, START)
    assert run(config, "subscribers", "add", "anna@example.org", "--digest", "daily").exit_code == 0
    return store


def test_send_dry_run_then_send_then_deliveries(
    config: Path, tmp_path: Path, smtp: SmtpServer
) -> None:
    store = _anna_subscribed(config, tmp_path)
    since, until = "2026-11-24T05:00Z", "2026-11-25T05:00Z"
    out = tmp_path / "outbox"
    dry = run(
        config, "send", "daily", "--since", since, "--until", until, "--dry-run", "--out", str(out)
    )
    assert dry.exit_code == 0, dry.output
    (eml,) = out.glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "daily: 3 stories, 2026-11-25"
    assert smtp.received == [], "a dry run sends nothing"
    assert MailStore(store).deliveries() == [], "and records nothing"

    sent = run(config, "send", "daily", "--since", since, "--until", until)
    assert sent.exit_code == 0, sent.output
    assert "1 sent, 0 to retry, 0 failed" in sent.output
    again = run(config, "send", "daily", "--since", since, "--until", until)
    assert "0 sent" in again.output and "1 decided earlier" in again.output
    assert len(smtp.received) == 1
    (received,) = smtp.messages_to("anna@example.org")
    assert received["Message-ID"] == message["Message-ID"], "the preview is the real message"

    table = run(config, "deliveries", "--digest", "daily")
    assert table.exit_code == 0
    assert "anna@example.org" in table.output
    assert "sent" in table.output and "250 2.0.0 Ok: queued as M00001" in table.output

    bad = run(config, "send", "daily", "--since", "yesterday-ish")
    assert bad.exit_code == 2 and bad.output.startswith("error: --since:")


def test_send_defaults_to_the_latest_scheduled_period(config: Path, tmp_path: Path) -> None:
    digest = load(config).digest("daily")
    start, end = scheduled_period(digest, utcnow())
    fill(Store(f"sqlite:///{tmp_path / 'mail.db'}"), start)
    assert run(config, "subscribers", "add", "anna@example.org", "--digest", "daily").exit_code == 0
    result = run(config, "send", "daily", "--dry-run", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert result.output.endswith("1 message written, none sent\n")
    (eml,) = (tmp_path / "o").glob("*.eml")
    assert eml.name.startswith(f"daily_{start:%Y-%m-%dT%H%MZ}_{end:%Y-%m-%dT%H%MZ}_")
    # The end is the last 06:00 in Berlin.
    assert end.astimezone(ZoneInfo("Europe/Berlin")).hour == 6


def test_send_refuses_a_login_without_tls_in_one_line(tmp_path: Path) -> None:
    plain_login = {"host": "mail.example.org", "username": "digest", "password_env": "SMTP_PW"}
    config = write_config(
        tmp_path / "plain.toml",
        {
            "database": {"url": "sqlite:///mail.db"},
            "smtp": {**loopback_smtp(25), **plain_login},
            "digests": [{"name": "daily", "schedule": "0 6 * * *", "timezone": "Europe/Berlin"}],
        },
    )
    store = _anna_subscribed(config, tmp_path)
    since, until = "2026-11-24T05:00Z", "2026-11-25T05:00Z"
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "send", "daily", "--since", since, "--until", until],
        env={"SMTP_PW": "geheim"},
    )
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: smtp.security: 'none' would send the password")
    assert result.output.count("\n") == 1
    (delivery,) = MailStore(store).deliveries()
    assert delivery.status == "queued", "decided, and sent once the setting is fixed"


def test_deliveries_and_send_after_a_killed_sender(
    config: Path, tmp_path: Path, smtp: SmtpServer
) -> None:
    """`deliveries` shows how long a killed sender's claim holds; `send` takes it over at once."""
    store = _anna_subscribed(config, tmp_path)
    mail = MailStore(store)
    now = utcnow()
    mail.plan("daily", START, END, now, message_id=lambda s: "<1@x.org>", wanted=lambda s: True)
    (decided,) = mail.deliveries()
    assert mail.claim(decided, now)
    (row,) = run(config, "deliveries").output.splitlines()[1:]
    assert row.split()[6:8] == ["anna@example.org", "sending"]
    assert row.endswith(f"claimed by a run until {now + CLAIM_TIMEOUT:%Y-%m-%d %H:%M}Z")
    sent = run(
        config, "send", "daily", "--since", "2026-11-24T05:00Z", "--until", "2026-11-25T05:00Z"
    )
    assert sent.exit_code == 0, sent.output
    assert smtp.recipients() == ["anna@example.org"]
