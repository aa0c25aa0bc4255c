"""Delivery against a real SMTP server: once per period, retries, permanent failures, pacing."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from mailsetup import END, NOW, START, fill, settings, subscribe
from smtpserver import DROP, SmtpServer

from aggregator.config import ConfigError, Settings, load
from aggregator.mail import service
from aggregator.mail.sender import Sender, SmtpConfigError
from aggregator.mail.service import send_due, send_retries
from aggregator.pipeline import Pipeline
from aggregator.store import Store
from aggregator.store.mail import CANCELLED, FAILED, PAUSED, RETRY, SENT, SKIPPED, MailStore


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


class World:
    def __init__(self, tmp_path: Path, port: int, **smtp: Any) -> None:
        self.settings: Settings = settings(tmp_path, smtp_port=port, **smtp)
        self.store = Store(self.settings.database_url)
        self.mail = MailStore(self.store)
        self.digest = self.settings.digests[0]
        fill(self.store)

    def send(self, now: Any = NOW, start: Any = START, end: Any = END) -> Any:
        return send_due(self.store, self.settings, self.digest, start, end, now)

    def send_day(self, n: int) -> Any:
        """Fill and send the period `n` days after the first one."""
        day = timedelta(days=n)
        if n:
            fill(self.store, START + day)
        return self.send(now=NOW + day, start=START + day, end=END + day)

    def status(self) -> dict[str, str]:
        return {d.recipient: d.status for d in self.mail.deliveries()}


def test_each_subscriber_gets_the_period_once_over_one_connection(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    world = World(tmp_path, smtp.port)
    people = [f"reader{n}@example.org" for n in range(5)]
    subscribe(world.store, *people)
    summary = world.send()
    assert (summary.sent, summary.retry, summary.failed) == (5, 0, 0)
    assert sorted(smtp.recipients()) == sorted(people)
    assert smtp.sessions == 1, "one SMTP connection for all messages"
    rows = world.mail.deliveries()
    assert {d.status for d in rows} == {SENT}
    assert all(d.detail and d.detail.startswith("250 2.0.0 Ok: queued as M") for d in rows)
    # The same period again, even much later: nobody is mailed twice.
    again = world.send(now=NOW + timedelta(hours=5))
    assert (again.sent, again.already) == (0, 5)
    assert len(smtp.received) == 5
    # A new subscriber joining later gets the period; the others still do not.
    subscribe(world.store, "late@example.org")
    assert world.send().sent == 1
    assert sorted(smtp.recipients()) == sorted([*people, "late@example.org"])


def test_temporary_failures_retry_with_backoff(smtp: SmtpServer, tmp_path: Path) -> None:
    world = World(tmp_path, smtp.port, retry_initial="5m", retry_max_age="1h")
    subscribe(world.store, "grey@example.org", "ok@example.org", "drop@example.org")
    smtp.script("grey@example.org", "451 4.7.1 greylisted, try later", "451 4.7.1 still")
    smtp.script("drop@example.org", DROP)
    summary = world.send()
    assert (summary.sent, summary.retry) == (1, 2)
    rows = {d.recipient: d for d in world.mail.deliveries()}
    grey = rows["grey@example.org"]
    assert grey.status == RETRY
    assert grey.detail == "451 4.7.1 greylisted, try later"
    assert grey.next_attempt_at == NOW + timedelta(minutes=5)
    assert rows["drop@example.org"].detail is not None
    assert "connection" in rows["drop@example.org"].detail
    # Not due yet: nothing happens.
    assert send_retries(world.store, world.settings, NOW + timedelta(minutes=4)) == []
    later = NOW + timedelta(minutes=5)
    (retried,) = send_retries(world.store, world.settings, later)
    assert (retried.sent, retried.retry) == (1, 1)
    grey = next(d for d in world.mail.deliveries() if d.recipient == "grey@example.org")
    assert grey.attempts == 2
    assert grey.next_attempt_at == later + timedelta(minutes=10), "the wait doubles"
    (last,) = send_retries(world.store, world.settings, later + timedelta(minutes=10))
    assert last.sent == 1
    assert world.status() == dict.fromkeys(
        ["grey@example.org", "ok@example.org", "drop@example.org"], SENT
    )
    assert sorted(smtp.recipients()) == ["drop@example.org", "grey@example.org", "ok@example.org"]


def test_retries_stop_at_the_configured_age(smtp: SmtpServer, tmp_path: Path) -> None:
    world = World(tmp_path, smtp.port, retry_initial="10m", retry_max_age="25m")
    subscribe(world.store, "grey@example.org")
    smtp.always("grey@example.org", "450 4.2.1 mailbox busy")
    assert world.send().retry == 1
    assert send_retries(world.store, world.settings, NOW + timedelta(minutes=10))[0].retry == 1
    (gave_up,) = send_retries(world.store, world.settings, NOW + timedelta(minutes=30))
    assert gave_up.failed == 1
    (row,) = world.mail.deliveries()
    assert row.status == FAILED
    assert row.detail == "gave up after 3 attempts; last: 450 4.2.1 mailbox busy"
    (person,) = world.mail.subscribers()
    assert person.status == "active", "temporary trouble never pauses a subscriber"


def test_permanent_failures_pause_the_subscriber_but_not_the_others(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    world = World(tmp_path, smtp.port, pause_after_failures=2)
    subscribe(world.store, "gone@example.org", "anna@example.org")
    smtp.always("gone@example.org", "550 5.1.1 no such user")
    first = world.send()
    assert (first.sent, first.failed, first.paused) == (1, 1, [])
    second = world.send_day(1)
    assert (second.sent, second.failed, second.paused) == (1, 1, ["gone@example.org"])
    gone = next(s for s in world.mail.subscribers() if s.email == "gone@example.org")
    assert gone.status == PAUSED
    assert gone.status_reason == "2 permanent failures in a row, last: 550 5.1.1 no such user"
    third = world.send_day(2)
    assert (third.sent, third.failed, third.queued) == (1, 0, 1)
    assert smtp.recipients().count("anna@example.org") == 3
    assert "gone@example.org" not in smtp.recipients()


def test_a_success_resets_the_failure_count(smtp: SmtpServer, tmp_path: Path) -> None:
    world = World(tmp_path, smtp.port, pause_after_failures=2)
    subscribe(world.store, "flaky@example.org")
    smtp.script("flaky@example.org", "552 5.2.2 mailbox full")
    summaries = [world.send_day(n) for n in range(3)]
    assert [s.failed for s in summaries] == [1, 0, 0]
    smtp.script("flaky@example.org", "552 5.2.2 mailbox full")
    assert world.send_day(3).failed == 1
    (person,) = world.mail.subscribers()
    assert (person.status, person.consecutive_failures) == ("active", 1)


def test_unreachable_server_defers_everyone_quickly(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    world = World(tmp_path, closed_port)
    subscribe(world.store, *[f"r{n}@example.org" for n in range(20)])
    started = time.monotonic()
    summary = world.send()
    assert time.monotonic() - started < 5
    assert (summary.sent, summary.retry) == (0, 20)
    assert set(world.status().values()) == {RETRY}


def test_subscribers_with_nothing_to_read_are_skipped_and_leavers_cancelled(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    world = World(tmp_path, smtp.port)
    subscribe(world.store, "nobody@example.org", outlets=("unknown.example",))
    (leaver,) = subscribe(world.store, "leaver@example.org")
    smtp.script("leaver@example.org", "421 4.3.2 shutting down")
    summary = world.send()
    assert (summary.skipped, summary.retry) == (1, 1)
    assert leaver.id is not None
    world.mail.unsubscribe(leaver.id, NOW, "test")
    (retry,) = send_retries(world.store, world.settings, NOW + timedelta(days=1))
    assert retry.cancelled == 1
    assert world.status() == {"nobody@example.org": SKIPPED, "leaver@example.org": CANCELLED}
    assert smtp.received == []


def test_rate_limit_spaces_the_messages(smtp: SmtpServer, tmp_path: Path) -> None:
    world = World(tmp_path, smtp.port, rate_per_minute=600)
    subscribe(world.store, *[f"r{n}@example.org" for n in range(6)])
    started = time.monotonic()
    assert world.send().sent == 6
    assert time.monotonic() - started >= 0.5  # five gaps of 0.1 s


def test_missing_password_variable_is_a_clear_error(tmp_path: Path) -> None:
    config = settings(tmp_path, username="digest", password_env="AGGREGATOR_TEST_NO_SUCH_VAR")
    with pytest.raises(SmtpConfigError, match="AGGREGATOR_TEST_NO_SUCH_VAR is not set"):
        Sender(config.smtp, {})


def test_config_refuses_a_from_without_an_address(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nfrom = "Nachrichten"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"smtp\.from: 'Nachrichten' is not an email address"):
        load(config)


def test_an_international_sender_domain_is_sent_in_ascii(smtp: SmtpServer, tmp_path: Path) -> None:
    world = World(tmp_path, smtp.port, **{"from": "Bücher <digest@bücher.example>"})
    subscribe(world.store, "anna@example.org")
    assert world.send().sent == 1
    (received,) = smtp.received
    assert received.sender == "digest@xn--bcher-kva.example"
    assert received.parsed()["From"].addresses[0].display_name == "Bücher"
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nfrom = "dïgest@example.org"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"smtp\.from: 'dïgest@example\.org' is not an email"):
        load(config)


def test_a_period_everybody_has_is_not_built_again(
    smtp: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run --once asks for the latest period on every run: once everybody is
    # decided, no stories are loaded for it.
    world = World(tmp_path, smtp.port)
    subscribe(world.store, "reader@example.org")
    assert world.send().sent == 1
    built: list[object] = []
    original = service.mailing
    monkeypatch.setattr(service, "mailing", lambda *a, **k: built.append(a) or original(*a, **k))
    assert world.send(now=NOW + timedelta(hours=1)).already == 1
    assert built == []
    subscribe(world.store, "late@example.org")
    assert world.send(now=NOW + timedelta(hours=2)).sent == 1
    assert len(built) == 1


def test_a_period_written_but_never_mailed_is_mailed_by_the_next_run(
    smtp: SmtpServer, tmp_path: Path
) -> None:
    """Killed between writing a period's files and mailing it, with the next run a day later."""
    world = World(tmp_path, smtp.port)
    subscribe(world.store, "anna@example.org", "ben@example.org")
    clock = [NOW]
    pipeline = Pipeline(world.settings, world.store, clock=lambda: clock[0])
    assert [run.end for run in pipeline.write_due_digests()] == [END]  # then the kill
    clock[0] = NOW + timedelta(days=1)
    fill(world.store, START + timedelta(days=1))
    assert [run.end for run in pipeline.write_due_digests()] == [END + timedelta(days=1)]
    pipeline.send_mail()
    periods = sorted((d.recipient, d.period_end) for d in world.mail.deliveries())
    assert periods == [
        (person, end)
        for person in ("anna@example.org", "ben@example.org")
        for end in (END, END + timedelta(days=1))
    ]
    assert len(smtp.received) == 4
    # Decided on now: somebody joining later gets neither period again from these runs.
    subscribe(world.store, "late@example.org")
    pipeline.send_mail()
    assert "late@example.org" in smtp.recipients()
    assert [d.period_end for d in world.mail.deliveries() if d.recipient == "late@example.org"] == [
        END + timedelta(days=1)
    ]
