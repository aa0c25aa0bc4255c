"""SIGKILL the sender at random moments while it mails 200 subscribers; restart until done.

Every subscriber must get the digest; a repeat can only come from a kill
between the server's 250 and the commit that marks the row sent, so there
are at most as many repeats as kills (in practice none or nearly none), and
each repeat carries the same Message-ID as the first copy. Until a killed
sender's claims expire, the runs that wait for them say so.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from configfile import write_config
from mailsetup import END, NOW, START, fill, loopback_smtp, settings, subscribe
from smtpserver import SmtpServer

from aggregator.mail.service import send_due, send_retries
from aggregator.store import Store
from aggregator.store.mail import CLAIM_TIMEOUT, SENDING, SENT, MailStore, Subscriber

ROOT = Path(__file__).resolve().parents[1]
SUBSCRIBERS = 200
CLI = (
    "from aggregator.cli import main; from aggregator.mail.commands import register; "
    "register(main); main()"
)


def test_killed_sender_resumes_and_mails_everyone_once(tmp_path: Path) -> None:
    seed = int(os.environ.get("AGGREGATOR_CRASH_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    database = tmp_path / "crash.db"
    with SmtpServer() as smtp:
        config = write_config(
            tmp_path / "crash.toml",
            {
                "database": {"url": f"sqlite:///{database}"},
                "smtp": loopback_smtp(smtp.port),
                "digests": [{"name": "daily", "timezone": "Europe/Berlin"}],
            },
        )
        store = Store(f"sqlite:///{database}")
        fill(store, START)
        people = [f"reader{n:03d}@example.org" for n in range(SUBSCRIBERS)]
        subscribe(store, *people)
        command = [
            sys.executable,
            "-c",
            CLI,
            "--config",
            str(config),
            "send",
            "daily",
            "--since",
            "2026-11-24T05:00Z",
            "--until",
            "2026-11-25T05:00Z",
        ]
        kills = 0
        for _ in range(60):
            before = len(smtp.received)
            process = subprocess.Popen(
                command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            # Kill at a random moment once mailing is under way (start-up is not interesting).
            deadline = time.monotonic() + 30
            while process.poll() is None and len(smtp.received) == before:
                assert time.monotonic() < deadline, "the sender sends nothing"
                time.sleep(0.005)
            try:
                process.wait(timeout=rng.uniform(0.0, 0.4))
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
            output = process.stdout.read().decode() if process.stdout else ""
            assert process.returncode == 0, output
            break
        else:
            raise AssertionError("the sender never finished")

        received = Counter(smtp.recipients())
        ids = Counter(r.parsed()["Message-ID"] for r in smtp.received)
    repeats = sum(received.values()) - SUBSCRIBERS
    print(f"\ncrash test (seed {seed}): {kills} kills, {repeats} repeats")
    assert sorted(received) == people, "every subscriber got the digest"
    assert repeats <= kills
    assert len(ids) == SUBSCRIBERS, "a repeat carries the first copy's Message-ID"
    assert kills >= 1, "the test must actually interrupt the sender"
    statuses = {d.status for d in MailStore(store).deliveries()}
    assert statuses == {SENT}


def test_claims_left_by_a_killed_sender_are_reported_not_skipped_in_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`run --once` (and `serve`) wait for such a claim to expire, and say so once per run."""
    with SmtpServer() as smtp:
        config = settings(tmp_path, smtp_port=smtp.port)
        store = Store(config.database_url)
        fill(store)
        subscribe(store, "anna@example.org", "bob@example.org")
        mail = MailStore(store)
        # What a sender killed in anna's DATA leaves: both decided, anna's row claimed.
        mail.plan("daily", START, END, NOW, message_id=lambda s: s.email, wanted=lambda s: True)
        anna = next(d for d in mail.deliveries() if d.recipient == "anna@example.org")
        assert mail.claim(anna, NOW)
        until = NOW + CLAIM_TIMEOUT

        # The next run, as `run --once` calls them: its periods, then retries.
        later = NOW + timedelta(minutes=1)
        with caplog.at_level("WARNING", logger="aggregator.mail.service"):
            send_due(store, config, config.digests[0], START, END, later)
            send_retries(store, config, later)
        assert smtp.recipients() == ["bob@example.org"]
        assert [r.getMessage() for r in caplog.records] == [
            f"mail daily 2026-11-24 05:00Z – 2026-11-25 05:00Z: 1 delivery claimed by another "
            f"run until {until:%H:%M}Z (a run killed while sending leaves its claims; "
            "if no other sender is still running, `send daily` sends them now)"
        ]
        assert {d.recipient: d.status for d in mail.deliveries()}["anna@example.org"] == SENDING

        caplog.clear()
        with caplog.at_level("WARNING", logger="aggregator.mail.service"):
            send_retries(store, config, until)
        assert caplog.records == [], "an expired claim is no longer reported, it is sent"
        assert sorted(smtp.recipients()) == ["anna@example.org", "bob@example.org"]


def test_send_takes_over_the_claims_of_its_own_digest_only(tmp_path: Path) -> None:
    """`send daily` may expire daily's claims; another digest's stay until they expire."""
    store = Store(settings(tmp_path, smtp_port=1).database_url)
    fill(store)
    mail = MailStore(store)
    for digest in ("daily", "weekly"):
        mail.add_subscriber(Subscriber(email=f"{digest}@example.org", digest=digest), START)
        mail.plan(digest, START, END, NOW, message_id=lambda s: s.email, wanted=lambda s: True)
    for delivery in mail.deliveries():
        assert mail.claim(delivery, NOW)
    later = NOW + timedelta(minutes=1)
    assert mail.expire_claims(later, "daily") == 1
    due = {d.digest: d.next_attempt_at for d in mail.deliveries()}
    assert due == {"daily": later, "weekly": NOW + CLAIM_TIMEOUT}
