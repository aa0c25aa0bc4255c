"""SIGKILL at random moments of `run --once`, then restart: nothing lost, nothing twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from configfile import write_config
from feedserver import FeedServer

ROOT = Path(__file__).resolve().parents[1]
FEEDS, ITEMS, KILLS = 24, 40, 20
TOPICS = ["Bahnstreik", "Sturmflut", "Haushalt", "Zinsentscheid", "Pokalspiel", "Wahlumfrage"]


def feed(number: int) -> str:
    """Items of one outlet: shared topics (so clusters form) with outlet-specific wording."""
    base = datetime(2026, 11, 20, tzinfo=UTC)
    items = []
    for i in range(ITEMS):
        topic = TOPICS[i % len(TOPICS)]
        day = i // len(TOPICS)
        published = base + timedelta(days=day, minutes=7 * number + i)
        items.append(
            f"<item><title>{topic} am Tag {day}: Meldung {i} von Quelle {number}</title>"
            f"<link>https://quelle{number}.example/{i}</link>"
            f'<guid isPermaLink="false">q{number}-{i}</guid>'
            f"<pubDate>{format_datetime(published)}</pubDate>"
            f"<description>{topic}: Bericht Nummer {i} über Tag {day}.</description></item>"
        )
    channel = f"<channel><title>Quelle {number}</title>{''.join(items)}</channel>"
    return f'<rss version="2.0">{channel}</rss>'


def run_once(config: Path, kill_after: float | None) -> int | None:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--config", str(config), "run", "--once", "--wait"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is None:
        return process.wait(timeout=120)
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return None


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    urls = [feed_server.add(f"/q{n}.xml", feed(n)) for n in range(FEEDS)]
    database = tmp_path / "crash.db"
    config = write_config(
        tmp_path / "crash.toml",
        {
            "database": {"url": f"sqlite:///{database}"},
            # Every feed is due at every run, so every run fetches, clusters and writes.
            "fetch": {"allow_private_addresses": True, "interval": "1s", "min_interval": "1s"},
            "outlets": [{"name": f"quelle{n}", "feeds": [url]} for n, url in enumerate(urls)],
            "digests": [
                {
                    "name": "d",
                    "schedule": "* * * * *",
                    "period": "3650d",
                    "formats": ["json"],
                    "output_dir": str(tmp_path / "out"),
                }
            ],
        },
    )
    rng = random.Random(20261125)
    for _ in range(KILLS):
        run_once(config, kill_after=rng.uniform(0.3, 2.5))
    assert run_once(config, kill_after=None) == 0

    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        guids = [row[0] for row in db.execute("SELECT guid FROM entries")]
        assert sorted(guids) == sorted(f"q{n}-{i}" for n in range(FEEDS) for i in range(ITEMS))
        assert db.execute("SELECT count(*) FROM entries WHERE cluster_id IS NULL").fetchone() == (
            0,
        )
        orphans = db.execute(
            "SELECT count(*) FROM entries e LEFT JOIN clusters c ON c.id = e.cluster_id "
            "WHERE c.id IS NULL"
        ).fetchone()
        assert orphans == (0,)
        wrong_size = db.execute(
            "SELECT count(*) FROM clusters c WHERE c.size != "
            "(SELECT count(*) FROM entries e WHERE e.cluster_id = c.id)"
        ).fetchone()
        assert wrong_size == (0,)
        periods = db.execute(
            "SELECT name, period_start, period_end, count(*) FROM digests "
            "GROUP BY name, period_start, period_end"
        ).fetchall()
        assert periods and all(count == 1 for *_, count in periods)
    for path in (tmp_path / "out").glob("*.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        ids = [e["id"] for c in document["clusters"] for e in c["entries"]]
        assert len(ids) == len(set(ids))
    assert not list((tmp_path / "out").glob("*.tmp*"))
