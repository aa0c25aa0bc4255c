"""Two senders at once, on SQLite and PostgreSQL: nobody gets a period twice.

`send` takes the run lock, and under the lock or not every delivery is
claimed before it is sent, planning tolerates rows another process made, and
a claim left by a killed sender is sent again once it has expired.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from configfile import write_config
from mailsetup import END, NOW, START, fill, loopback_smtp, settings, subscribe
from smtpserver import SmtpServer

from aggregator.config import Settings
from aggregator.mail.service import SendSummary, send_due, send_retries
from aggregator.store import Store
from aggregator.store.mail import (
    CLAIM_TIMEOUT,
    SENDING,
    SENT,
    MailStore,
    PlanResult,
    Subscriber,
)

PEOPLE = [f"reader{n:02d}@example.org" for n in range(20)]


def _world(tmp_path: Path, database_url: str, port: int) -> tuple[Settings, Store]:
    config = settings(tmp_path, smtp_port=port, database_url=database_url)
    store = Store(config.database_url)
    fill(store)
    subscribe(store, *PEOPLE)
    return config, store


def test_a_second_send_command_waits_for_the_lock(tmp_path: Path, database_url: str) -> None:
    with SmtpServer(delay=0.05) as smtp:
        config = write_config(
            tmp_path / "mail.toml",
            {
                "database": {"url": database_url},
                "smtp": loopback_smtp(smtp.port),
                "digests": [{"name": "daily", "timezone": "Europe/Berlin"}],
            },
        )
        _world(tmp_path, database_url, smtp.port)
        command = [
            sys.executable,
            "-c",
            "from aggregator.cli import main; main()",
            "--config",
            str(config),
            "send",
            "daily",
            "--since",
            START.isoformat(),
            "--until",
            END.isoformat(),
        ]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not smtp.received:
            assert first.poll() is None, first.communicate()
        # The first sender must outlast the second's start-up (about a second for the
        # interpreter and imports, more on a loaded machine): it sends slowly meanwhile.
        smtp.delay = 0.5
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        smtp.delay = 0.0
        _, first_err = first.communicate(timeout=60)
        assert first.returncode == 0, first_err
        assert second.returncode == 3, second.stdout + second.stderr
        assert second.stderr.startswith("busy: another aggregator run holds")
        assert "use --wait" in second.stderr
        assert Counter(smtp.recipients()) == Counter(PEOPLE)


def test_two_senders_without_the_lock_still_mail_everyone_once(
    tmp_path: Path, database_url: str
) -> None:
    with SmtpServer(delay=0.01) as smtp:
        config, _ = _world(tmp_path, database_url, smtp.port)
        start = threading.Barrier(2)
        results: list[SendSummary | BaseException] = []

        def sender() -> None:
            store = Store(config.database_url)  # a connection pool of its own, like a process
            start.wait()
            try:
                results.append(send_due(store, config, config.digests[0], START, END, NOW))
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=sender) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    summaries = [r for r in results if isinstance(r, SendSummary)]
    assert len(summaries) == 2, results
    assert Counter(smtp.recipients()) == Counter(PEOPLE), "each reader exactly once"
    assert sum(s.sent for s in summaries) == len(PEOPLE)


def test_planning_keeps_rows_another_process_planned_meanwhile(
    tmp_path: Path, database_url: str
) -> None:
    config, store = _world(tmp_path, database_url, 25)
    mail, other = MailStore(store), MailStore(Store(config.database_url))

    def plan(into: MailStore, wanted: Callable[[Subscriber], bool]) -> PlanResult:
        return into.plan("daily", START, END, NOW, message_id=lambda s: s.email, wanted=wanted)

    def meanwhile(subscriber: Subscriber) -> bool:
        if subscriber.email == PEOPLE[0]:
            # Between this plan's read and its insert, another process plans the
            # same period and commits first.
            assert plan(other, lambda s: True).queued == len(PEOPLE)
        return True

    result = plan(mail, meanwhile)
    assert (result.queued, result.existing) == (0, len(PEOPLE))
    assert len(mail.deliveries()) == len(PEOPLE)


def test_a_claim_left_by_a_killed_sender_is_sent_once_it_expires(
    tmp_path: Path, database_url: str
) -> None:
    with SmtpServer() as smtp:
        config, store = _world(tmp_path, database_url, smtp.port)
        mail = MailStore(store)
        mail.plan("daily", START, END, NOW, message_id=lambda s: s.email, wanted=lambda s: True)
        # A sender claims the first reader and is killed before it sends.
        killed, _ = mail.pending(NOW)[0]
        assert mail.claim(killed, NOW)
        assert not mail.claim(killed, NOW), "a claimed row cannot be claimed again"
        summary = send_due(store, config, config.digests[0], START, END, NOW)
        assert (summary.sent, summary.already) == (len(PEOPLE) - 1, len(PEOPLE))
        assert {d.recipient: d.status for d in mail.deliveries()}[killed.recipient] == SENDING
        assert send_retries(store, config, NOW + CLAIM_TIMEOUT / 2) == []
        (late,) = send_retries(store, config, NOW + CLAIM_TIMEOUT)
        assert late.sent == 1
    assert Counter(smtp.recipients()) == Counter(PEOPLE)
    assert {d.status for d in mail.deliveries()} == {SENT}
