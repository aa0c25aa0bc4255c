"""When digests fall due: cron in the digest's time zone, right across DST changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import DatabaseSettings, DigestSettings, Settings
from aggregator.pipeline import FetchSummary, Pipeline, latest_fire, scheduled_period
from aggregator.schedule import Service
from aggregator.store import Store

DAILY = DigestSettings(name="daily", schedule="0 6 * * *", timezone="Europe/Berlin", period="24h")


@pytest.mark.parametrize(
    ("now", "fire"),
    [
        # Winter time: 06:00 in Berlin is 05:00 UTC.
        (datetime(2026, 11, 25, 20, 40, tzinfo=UTC), datetime(2026, 11, 25, 5, tzinfo=UTC)),
        # Before today's 06:00: yesterday's.
        (datetime(2026, 11, 25, 4, 59, tzinfo=UTC), datetime(2026, 11, 24, 5, tzinfo=UTC)),
        # Exactly at the fire time it counts.
        (datetime(2026, 11, 25, 5, 0, tzinfo=UTC), datetime(2026, 11, 25, 5, tzinfo=UTC)),
        # The morning clocks go forward (29 March 2026): 06:00 CEST is 04:00 UTC.
        (datetime(2026, 3, 29, 12, 0, tzinfo=UTC), datetime(2026, 3, 29, 4, tzinfo=UTC)),
        # The morning clocks go back (25 October 2026): 06:00 CET is 05:00 UTC.
        (datetime(2026, 10, 25, 12, 0, tzinfo=UTC), datetime(2026, 10, 25, 5, tzinfo=UTC)),
    ],
)
def test_latest_fire_follows_the_digest_time_zone(now: datetime, fire: datetime) -> None:
    assert latest_fire(DAILY, now) == fire


def test_period_ends_at_the_last_fire() -> None:
    start, end = scheduled_period(DAILY, datetime(2026, 11, 25, 20, 40, tzinfo=UTC))
    assert (start, end) == (
        datetime(2026, 11, 24, 5, tzinfo=UTC),
        datetime(2026, 11, 25, 5, tzinfo=UTC),
    )


def test_a_rare_schedule_is_found_far_back() -> None:
    yearly = DigestSettings(name="year", schedule="0 0 1 1 *", timezone="UTC", period="365d")
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert latest_fire(yearly, now) == datetime(2026, 1, 1, tzinfo=UTC)
    weekly = DigestSettings(name="w", schedule="0 7 * * 1", timezone="Europe/Berlin", period="7d")
    fire = latest_fire(weekly, now)
    assert fire == datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert now - fire < timedelta(days=7)


@pytest.mark.parametrize(
    ("weekday", "expected"),
    [
        ("1", {0}),  # Monday, as in cron (APScheduler's own numbering would say Tuesday)
        ("0", {6}),
        ("7", {6}),
        ("1-5", {0, 1, 2, 3, 4}),
        ("0,6", {5, 6}),
        ("*/2", {6, 1, 3, 5}),
        ("mon-fri", {0, 1, 2, 3, 4}),
    ],
)
def test_cron_weekdays_mean_what_they_mean_in_cron(weekday: str, expected: set[int]) -> None:
    digest = DigestSettings(name="d", schedule=f"0 7 * * {weekday}", timezone="UTC")
    trigger = digest.trigger
    start = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
    fires, previous = set(), None
    moment = start
    for _ in range(14):
        fire = trigger.get_next_fire_time(previous, moment)
        fires.add(fire.weekday())
        previous, moment = fire, fire + timedelta(seconds=1)
    assert fires == expected


def test_a_digest_whose_job_found_the_lock_taken_is_written_by_the_fetch_pass(
    tmp_path: Path,
) -> None:
    """The hourly job fires while a fetch pass holds the run lock: the period is not lost."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'service.db'}"),
        digests=[
            DigestSettings(
                name="hourly",
                schedule="0 * * * *",
                period="1h",
                formats=["json"],
                output_dir=str(tmp_path / "out"),
            )
        ],
    )
    now = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)
    pipeline = Pipeline(settings, Store(settings.database_url), clock=lambda: now)
    service = Service(pipeline, poll_seconds=60, grace_seconds=5)

    async def slow_fetch(**_: object) -> FetchSummary:
        await asyncio.sleep(0.5)
        return FetchSummary()

    pipeline.fetch = slow_fetch  # type: ignore[method-assign]

    async def run() -> None:
        fetching = asyncio.create_task(service.fetch_due())
        await asyncio.sleep(0.1)
        await service.write_digests(["hourly"])  # finds the lock taken, skips
        assert not list((tmp_path / "out").glob("*.json"))
        await fetching

    asyncio.run(run())
    assert [p.name for p in (tmp_path / "out").glob("*.json")] == [
        "hourly_2026-11-26T0900Z_2026-11-26T1000Z.json"
    ]
