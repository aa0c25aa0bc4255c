"""Display names with line breaks: flattened at input, and one bad row never stops the rest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mailsetup import END, NOW, START, fill, settings, subscribe
from smtpserver import SmtpServer

from aggregator.mail.commands import read_csv, subscriber
from aggregator.mail.service import send_due
from aggregator.store import Store
from aggregator.store.mail import ACTIVE, FAILED, SENT, MailStore, Subscriber

INJECTION = "Bob\r\nBcc: victim@evil.example"


def test_control_characters_in_names_become_spaces_at_input(tmp_path: Path) -> None:
    config = settings(tmp_path)
    added = subscriber(config, "bob@example.org", "daily", name=INJECTION)
    assert added.name == "Bob Bcc: victim@evil.example"
    assert subscriber(config, "bob@example.org", "daily", name=" \t\x00\n").name is None
    table = tmp_path / "people.csv"
    table.write_text(
        'email,name\r\nanna@example.org,"Anna\r\nMüller"\r\nbob@example.org,"Bob\tB."\r\n',
        encoding="utf-8",
    )
    rows = read_csv(config, table, "daily")
    assert [(r.email, r.name) for r in rows] == [
        ("anna@example.org", "Anna Müller"),
        ("bob@example.org", "Bob B."),
    ]
    # Lines are still counted in the file, a quoted cell's line break included.
    table.write_text(table.read_text(encoding="utf-8") + "not-an-address,C\n", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{table}:5: 'not-an-address' is not a valid")):
        read_csv(config, table, "daily")


def test_a_row_that_cannot_be_composed_fails_alone(tmp_path: Path) -> None:
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp_port=smtp.port, pause_after_failures=1)
        store = Store(config.database_url)
        fill(store)
        mail = MailStore(store)
        subscribe(store, "anna@example.org")
        # Stored before names were checked at input.
        mail.add_subscriber(
            Subscriber(email="bob@example.org", digest="daily", name=INJECTION), START
        )
        subscribe(store, "carl@example.org")
        summary = send_due(store, config, config.digests[0], START, END, NOW)
        assert (summary.sent, summary.failed) == (2, 1)
        rows = {d.recipient: d for d in mail.deliveries()}
        assert {r: d.status for r, d in rows.items()} == {
            "anna@example.org": SENT,
            "bob@example.org": FAILED,
            "carl@example.org": SENT,
        }
        detail = rows["bob@example.org"].detail or ""
        assert detail.startswith("cannot compose the message:")
        bob = next(s for s in mail.subscribers() if s.email == "bob@example.org")
        assert (bob.status, bob.consecutive_failures) == (ACTIVE, 0), "not the address's fault"
        assert sorted(smtp.recipients()) == ["anna@example.org", "carl@example.org"]
