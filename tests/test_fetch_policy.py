"""How fetch outcomes change a feed's state: pure rules, no network."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.config import FetchSettings
from aggregator.fetch import apply_result, is_due
from aggregator.fetch.client import parse_retry_after
from aggregator.models import Feed, FetchResult, FetchStatus

NOW = datetime(2025, 11, 25, 6, 0, tzinfo=UTC)
SETTINGS = FetchSettings(min_interval="5m", max_interval="24h", backoff_factor=2.0, jitter=0.0)
URL = "https://www.tagesschau.de/xml/rss2/"


def feed(**changes: Any) -> Feed:
    base = Feed(url=URL, outlet="tagesschau", id=7, etag='"old"', interval_seconds=1800)
    return replace(base, last_modified="Mon, 24 Nov 2025 06:00:00 GMT", **changes)


def result(status: FetchStatus, **changes: Any) -> FetchResult:
    return replace(FetchResult(url=URL, status=status), **changes)


def test_ok_stores_validators_and_schedules_one_interval() -> None:
    before = feed(consecutive_errors=3, last_error="HTTP 500")
    after = apply_result(
        before,
        result(FetchStatus.OK, etag='"new"', last_modified="Tue, 25 Nov 2025 05:00:00 GMT"),
        NOW,
        SETTINGS,
    )
    assert after.etag == '"new"'
    assert after.last_modified == "Tue, 25 Nov 2025 05:00:00 GMT"
    assert after.consecutive_errors == 0
    assert after.next_fetch_at == NOW + timedelta(minutes=30)
    assert after.last_fetched_at == NOW
    assert (after.last_status, after.last_error) == ("ok", None)
    assert before.etag == '"old"' and before.consecutive_errors == 3  # input untouched


def test_ok_without_validators_forgets_the_old_ones() -> None:
    after = apply_result(feed(), result(FetchStatus.OK), NOW, SETTINGS)
    assert (after.etag, after.last_modified) == (None, None)


def test_not_modified_keeps_validators_the_server_did_not_repeat() -> None:
    after = apply_result(
        feed(consecutive_errors=2), result(FetchStatus.NOT_MODIFIED), NOW, SETTINGS
    )
    assert after.etag == '"old"'
    assert after.last_modified == "Mon, 24 Nov 2025 06:00:00 GMT"
    assert after.consecutive_errors == 0
    assert after.last_status == "not_modified"
    assert after.next_fetch_at == NOW + timedelta(minutes=30)


def test_not_modified_takes_a_repeated_new_etag() -> None:
    after = apply_result(feed(), result(FetchStatus.NOT_MODIFIED, etag='"v2"'), NOW, SETTINGS)
    assert after.etag == '"v2"'


def test_failure_keeps_old_validators_so_the_next_fetch_is_full() -> None:
    failed = result(FetchStatus.FAILED, error="not a feed", etag='"new"', last_modified="x")
    after = apply_result(feed(), failed, NOW, SETTINGS)
    assert after.etag == '"old"'
    assert after.last_modified == "Mon, 24 Nov 2025 06:00:00 GMT"
    assert (after.last_status, after.last_error) == ("failed", "not a feed")


@pytest.mark.parametrize(
    ("earlier_errors", "wait"),
    [
        (0, timedelta(minutes=30)),
        (1, timedelta(hours=1)),
        (2, timedelta(hours=2)),
        (5, timedelta(hours=16)),
        (6, timedelta(hours=24)),  # 32 h, capped at max_interval
        (10_000, timedelta(hours=24)),  # no overflow
    ],
)
def test_failures_back_off_exponentially_up_to_max_interval(
    earlier_errors: int, wait: timedelta
) -> None:
    before = feed(consecutive_errors=earlier_errors)
    after = apply_result(before, result(FetchStatus.FAILED, error="HTTP 500"), NOW, SETTINGS)
    assert after.consecutive_errors == earlier_errors + 1
    assert after.next_fetch_at == NOW + wait


def test_backoff_factor_is_a_setting() -> None:
    settings = replace_settings(backoff_factor=3.0)
    after = apply_result(feed(consecutive_errors=2), result(FetchStatus.FAILED), NOW, settings)
    assert after.next_fetch_at == NOW + timedelta(minutes=30 * 9)


def test_retry_after_later_than_backoff_wins() -> None:
    later = NOW + timedelta(hours=3)
    failed = result(FetchStatus.FAILED, error="HTTP 429", retry_after=later)
    assert apply_result(feed(), failed, NOW, SETTINGS).next_fetch_at == later


def test_retry_after_earlier_than_backoff_is_not_a_reason_to_come_sooner() -> None:
    failed = result(FetchStatus.FAILED, retry_after=NOW + timedelta(seconds=10))
    assert apply_result(feed(), failed, NOW, SETTINGS).next_fetch_at == NOW + timedelta(minutes=30)


def test_absurd_retry_after_is_capped_at_max_interval() -> None:
    failed = result(FetchStatus.FAILED, retry_after=datetime(3000, 1, 1, tzinfo=UTC))
    assert apply_result(feed(), failed, NOW, SETTINGS).next_fetch_at == NOW + timedelta(hours=24)


def test_gone_disables_the_feed() -> None:
    after = apply_result(feed(), result(FetchStatus.GONE, error="HTTP 410 Gone"), NOW, SETTINGS)
    assert after.disabled
    assert after.disabled_reason == "HTTP 410 Gone"
    assert after.last_status == "gone"
    assert not is_due(after, NOW + timedelta(days=365))


def test_permanent_url_replaces_the_feed_url() -> None:
    moved = "https://www.tagesschau.de/index~rss2.xml"
    after = apply_result(feed(), result(FetchStatus.OK, permanent_url=moved), NOW, SETTINGS)
    assert after.url == moved
    assert after.id == 7


@pytest.mark.parametrize(
    ("interval_seconds", "wait"),
    [
        (60, timedelta(minutes=5)),  # below min_interval
        (7200, timedelta(hours=2)),
        (7 * 86400, timedelta(hours=24)),  # above max_interval
    ],
)
def test_interval_is_bounded_by_settings(interval_seconds: int, wait: timedelta) -> None:
    before = feed(interval_seconds=interval_seconds)
    assert apply_result(before, result(FetchStatus.OK), NOW, SETTINGS).next_fetch_at == NOW + wait


def test_is_due() -> None:
    assert is_due(feed(next_fetch_at=None), NOW)
    assert is_due(feed(next_fetch_at=NOW), NOW)
    assert is_due(feed(next_fetch_at=NOW - timedelta(seconds=1)), NOW)
    assert not is_due(feed(next_fetch_at=NOW + timedelta(seconds=1)), NOW)
    assert not is_due(feed(next_fetch_at=None, disabled=True), NOW)


@given(
    errors=st.integers(min_value=0, max_value=500),
    interval=st.integers(min_value=1, max_value=10 * 86400),
    factor=st.floats(min_value=1.0, max_value=10.0),
    status=st.sampled_from(list(FetchStatus)),
)
def test_next_fetch_always_within_bounds(
    errors: int, interval: int, factor: float, status: FetchStatus
) -> None:
    settings = replace_settings(backoff_factor=factor)
    before = feed(consecutive_errors=errors, interval_seconds=interval)
    after = apply_result(before, result(status), NOW, settings)
    if status is FetchStatus.GONE:
        assert after.disabled
        return
    assert after.next_fetch_at is not None
    assert NOW + timedelta(minutes=5) <= after.next_fetch_at <= NOW + timedelta(hours=24)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert parse_retry_after(" 0 ", NOW) == NOW
    assert parse_retry_after("Wed, 26 Nov 2025 07:00:00 GMT", NOW) == datetime(
        2025, 11, 26, 7, 0, tzinfo=UTC
    )
    assert parse_retry_after("9" * 40, NOW) == NOW + timedelta(days=366)
    assert parse_retry_after("-5", NOW) is None
    assert parse_retry_after("bald", NOW) is None
    assert parse_retry_after(None, NOW) is None


def replace_settings(**changes: Any) -> FetchSettings:
    return SETTINGS.model_copy(update=changes)
