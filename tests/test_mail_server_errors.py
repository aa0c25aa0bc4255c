"""Trouble on the sender's side or with the connection is not the recipients' fault.

A 5xx to the login or to MAIL FROM ends the run and leaves everyone queued,
nobody's failure count moves; a connection lost during one message retries
that message and the run goes on over a new connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mailsetup import END, NOW, START, fill, settings, subscribe
from smtpserver import DROP, SmtpServer

from aggregator.config import Settings
from aggregator.mail.sender import SmtpRefused
from aggregator.mail.service import SendSummary, send_due
from aggregator.store import Store
from aggregator.store.mail import ACTIVE, QUEUED, RETRY, SENT, MailStore

PEOPLE = ["anna@example.org", "ben@example.org", "cem@example.org"]
PASSWORD_ENV = "AGGREGATOR_TEST_SMTP_PASSWORD"


def _world(tmp_path: Path, smtp: SmtpServer, **options: Any) -> tuple[Settings, Store]:
    config = settings(tmp_path, smtp_port=smtp.port, pause_after_failures=1, **options)
    store = Store(config.database_url)
    fill(store)
    subscribe(store, *PEOPLE)
    return config, store


def _send(config: Settings, store: Store, password: str = "") -> SendSummary:
    environ = {PASSWORD_ENV: password}
    return send_due(store, config, config.digests[0], START, END, NOW, environ=environ)


def _nobody_blamed(store: Store) -> None:
    mail = MailStore(store)
    assert {d.status for d in mail.deliveries()} == {QUEUED}
    assert all(d.attempts == 0 for d in mail.deliveries())
    assert {(s.status, s.consecutive_failures) for s in mail.subscribers()} == {(ACTIVE, 0)}


def test_a_wrong_password_stops_the_run_and_blames_no_subscriber(tmp_path: Path) -> None:
    with SmtpServer(password="geheim") as smtp:
        config, store = _world(tmp_path, smtp, username="digest", password_env=PASSWORD_ENV)
        answer = rf"SMTP server 127\.0\.0\.1:{smtp.port} refused the connection or login: 535"
        for _ in range(2):  # a second run: still nobody paused
            with pytest.raises(SmtpRefused, match=answer):
                _send(config, store, "falsch")
        _nobody_blamed(store)
        assert smtp.received == []
        assert _send(config, store, "geheim").sent == len(PEOPLE)


def test_a_login_the_server_does_not_offer_stops_the_run_and_blames_no_subscriber(
    tmp_path: Path,
) -> None:
    """A username set for a relay that offers no AUTH: every retry would hear the same."""
    with SmtpServer() as smtp:
        config, store = _world(tmp_path, smtp, username="digest", password_env=PASSWORD_ENV)
        for _ in range(2):
            with pytest.raises(SmtpRefused, match="AUTH extension not supported"):
                _send(config, store, "geheim")
        _nobody_blamed(store)
        assert smtp.received == []


def test_a_login_with_no_method_smtplib_speaks_stops_the_run(tmp_path: Path) -> None:
    """AUTH GSSAPI only: smtplib finds no method it knows, and would not on any retry."""
    with SmtpServer(password="geheim", only_gssapi=True) as smtp:
        config, store = _world(tmp_path, smtp, username="digest", password_env=PASSWORD_ENV)
        with pytest.raises(SmtpRefused, match="No suitable authentication method found;"):
            _send(config, store, "geheim")
        _nobody_blamed(store)
        assert smtp.received == []


def test_a_refused_sender_address_stops_the_run_and_blames_no_subscriber(
    tmp_path: Path,
) -> None:
    with SmtpServer() as smtp:
        config, store = _world(tmp_path, smtp)
        smtp.sender_answer = "553 5.7.1 sender address rejected"
        for _ in range(2):
            with pytest.raises(SmtpRefused, match=r"refused the sender digest@example\.org: 553"):
                _send(config, store)
        _nobody_blamed(store)
        smtp.sender_answer = None
        assert _send(config, store).sent == len(PEOPLE)
        assert sorted(smtp.recipients()) == PEOPLE


def test_connections_lost_during_messages_do_not_starve_the_others(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        config, store = _world(tmp_path, smtp)
        late = [f"z{n}@example.org" for n in range(5)]
        subscribe(store, *late)
        # The first two in line lose the connection in RCPT, on every attempt.
        for address in PEOPLE[:2]:
            smtp.always(address, DROP)
        summary = _send(config, store)
        assert (summary.sent, summary.retry) == (len(late) + 1, 2)
        status = {d.recipient: d.status for d in MailStore(store).deliveries()}
        assert status == {
            **dict.fromkeys(PEOPLE[:2], RETRY),
            **dict.fromkeys([*late, PEOPLE[2]], SENT),
        }
        assert sorted(smtp.recipients()) == sorted([PEOPLE[2], *late])
