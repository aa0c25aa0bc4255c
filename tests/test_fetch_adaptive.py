"""Adaptive, polite polling: intervals that follow the feed, server hints, jitter, giving up."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from feedserver import FeedServer
from hypothesis import given
from hypothesis import strategies as st
from test_fetch import fetch, fetch_all, make_settings

from aggregator.config import FetchSettings
from aggregator.fetch import apply_result, is_due
from aggregator.fetch.client import RequestSlots, fetch_feed, fresh_until, make_client
from aggregator.fetch.policy import jitter_share, publishing_gap
from aggregator.models import Entry, Feed, FetchResult, FetchStatus, ParsedFeed

NOW = datetime(2025, 11, 25, 6, 0, tzinfo=UTC)
SETTINGS = FetchSettings(min_interval="5m", max_interval="24h", jitter=0.0)
URL = "https://www.tagesschau.de/xml/rss2/"
OK = FetchResult(url=URL, status=FetchStatus.OK)
FAILED = FetchResult(url=URL, status=FetchStatus.FAILED, error="HTTP 500")


def feed(**changes: Any) -> Feed:
    return replace(Feed(url=URL, outlet="tagesschau", id=1, interval_seconds=1800), **changes)


def entry(published: datetime, *, estimated: bool = False) -> Entry:
    return Entry(
        guid=published.isoformat(),
        url=None,
        canonical_url=None,
        title="Titel",
        summary="",
        published=published,
        published_estimated=estimated,
    )


def parsed_every(gap: timedelta, count: int, *, ttl: int | None = None) -> ParsedFeed:
    """A document whose newest entry is from NOW and the others `gap` apart."""
    return ParsedFeed(entries=[entry(NOW - i * gap) for i in range(count)], ttl_seconds=ttl)


def settings(**changes: Any) -> FetchSettings:
    return SETTINGS.model_copy(update=changes)


# -- the interval follows the feed ----------------------------------------------------


@pytest.mark.parametrize(
    ("gap", "interval"),
    [
        (timedelta(minutes=15), timedelta(minutes=15)),  # a busy news feed
        (timedelta(hours=3), timedelta(hours=3)),
        (timedelta(minutes=1), timedelta(minutes=5)),  # floored at min_interval
        (timedelta(days=7), timedelta(hours=24)),  # a weekly blog: capped at max_interval
    ],
)
def test_interval_follows_publishing_rate(gap: timedelta, interval: timedelta) -> None:
    # 30 entries: only the 20 newest count; the span runs up to NOW.
    after = apply_result(feed(), OK, NOW, SETTINGS, parsed=parsed_every(gap, 30))
    assert after.next_fetch_at == NOW + interval
    assert after.interval_seconds == interval.total_seconds()


def test_quiet_feed_slows_down() -> None:
    # Ten items an hour apart, but the newest is two days old.
    old = ParsedFeed(entries=[entry(NOW - timedelta(days=2, hours=i)) for i in range(10)])
    after = apply_result(feed(), OK, NOW, SETTINGS, parsed=old)
    assert after.interval_seconds == (timedelta(days=2, hours=9) / 9).total_seconds()


def test_undated_entries_and_no_parsed_keep_the_interval() -> None:
    undated = ParsedFeed(entries=[entry(NOW, estimated=True), entry(NOW, estimated=True)])
    for parsed in (None, undated, ParsedFeed(entries=[])):
        after = apply_result(feed(interval_seconds=7200), OK, NOW, SETTINGS, parsed=parsed)
        assert after.interval_seconds == 7200
        assert after.next_fetch_at == NOW + timedelta(hours=2)


def test_not_modified_keeps_the_adapted_interval() -> None:
    adapted = apply_result(feed(), OK, NOW, SETTINGS, parsed=parsed_every(timedelta(hours=2), 5))
    later = NOW + timedelta(hours=2)
    unchanged = FetchResult(url=URL, status=FetchStatus.NOT_MODIFIED)
    again = apply_result(adapted, unchanged, later, SETTINGS)
    assert again.next_fetch_at == later + timedelta(seconds=adapted.interval_seconds)


def test_ttl_is_a_floor() -> None:
    busy_but_asks_for_an_hour = parsed_every(timedelta(minutes=10), 20, ttl=3600)
    after = apply_result(feed(), OK, NOW, SETTINGS, parsed=busy_but_asks_for_an_hour)
    assert after.next_fetch_at == NOW + timedelta(hours=1)
    slow_with_short_ttl = parsed_every(timedelta(hours=5), 20, ttl=600)
    after = apply_result(feed(), OK, NOW, SETTINGS, parsed=slow_with_short_ttl)
    assert after.next_fetch_at == NOW + timedelta(hours=5)


def test_ttl_above_max_interval_is_capped() -> None:
    yearly = ParsedFeed(entries=[], ttl_seconds=365 * 86400)
    after = apply_result(feed(), OK, NOW, SETTINGS, parsed=yearly)
    assert after.next_fetch_at == NOW + timedelta(hours=24)


def test_cache_lifetime_postpones_but_never_beyond_max_interval() -> None:
    fresh = replace(OK, retry_after=NOW + timedelta(hours=6))
    parsed = parsed_every(timedelta(minutes=15), 20)
    assert (
        apply_result(feed(), fresh, NOW, SETTINGS, parsed=parsed).next_fetch_at == fresh.retry_after
    )
    forever = replace(OK, retry_after=NOW + timedelta(days=300))
    assert apply_result(feed(), forever, NOW, SETTINGS).next_fetch_at == NOW + timedelta(hours=24)
    short = replace(OK, retry_after=NOW + timedelta(minutes=1))
    assert apply_result(feed(), short, NOW, SETTINGS).next_fetch_at == NOW + timedelta(minutes=30)


def test_publishing_gap() -> None:
    assert publishing_gap([], NOW) is None
    assert publishing_gap([NOW + timedelta(hours=1)], NOW) is None  # future dates ignored
    assert publishing_gap([NOW - timedelta(hours=4)], NOW) == timedelta(hours=4)
    dates = [NOW - timedelta(minutes=10 * i) for i in range(100)]
    assert publishing_gap(dates, NOW) == timedelta(minutes=10)


# -- jitter -----------------------------------------------------------------------------


def test_jitter_is_fixed_per_url_and_spreads_one_host() -> None:
    spread = settings(jitter=0.2)
    urls = [f"https://www.spiegel.de/{section}/index.rss" for section in range(50)]
    times = [
        apply_result(feed(url=url), replace(OK, url=url), NOW, spread).next_fetch_at for url in urls
    ]
    again = [
        apply_result(feed(url=url), replace(OK, url=url), NOW, spread).next_fetch_at for url in urls
    ]
    assert times == again
    assert len(set(times)) == len(urls)
    for when, url in zip(times, urls, strict=True):
        assert when is not None
        assert when == NOW + timedelta(minutes=30) * (1 - 0.2 * jitter_share(url))
        assert NOW + timedelta(minutes=24) <= when <= NOW + timedelta(minutes=30)
    # Spread over the window, not bunched at one end.
    shares = sorted(jitter_share(url) for url in urls)
    assert shares[0] < 0.2 and shares[-1] > 0.8


def test_default_jitter_is_on() -> None:
    assert FetchSettings().jitter > 0


@given(
    interval=st.integers(min_value=1, max_value=10 * 86400),
    errors=st.integers(min_value=0, max_value=50),
    jitter=st.floats(min_value=0.0, max_value=0.99),
    status=st.sampled_from([FetchStatus.OK, FetchStatus.NOT_MODIFIED, FetchStatus.FAILED]),
    url=st.text(min_size=1, max_size=40),
)
def test_jittered_schedule_stays_within_bounds(
    interval: int, errors: int, jitter: float, status: FetchStatus, url: str
) -> None:
    before = feed(url=url, interval_seconds=interval, consecutive_errors=errors)
    after = apply_result(before, FetchResult(url=url, status=status), NOW, settings(jitter=jitter))
    assert after.next_fetch_at is not None
    assert NOW + timedelta(minutes=5) <= after.next_fetch_at <= NOW + timedelta(hours=24)


# -- giving up on a feed that keeps failing ---------------------------------------------------


def test_first_failure_starts_the_clock_and_success_resets_it() -> None:
    failing = apply_result(feed(), FAILED, NOW, SETTINGS)
    assert failing.failing_since == NOW
    later = apply_result(failing, FAILED, NOW + timedelta(days=1), SETTINGS)
    assert later.failing_since == NOW and not later.disabled
    healed = apply_result(later, OK, NOW + timedelta(days=2), SETTINGS)
    assert healed.failing_since is None and healed.consecutive_errors == 0


def test_feed_failing_for_disable_after_is_disabled_with_the_reason() -> None:
    state = feed()
    for day in range(8):
        state = apply_result(state, FAILED, NOW + timedelta(days=day), SETTINGS)
        assert state.disabled == (day >= 7)
    assert state.disabled_reason == "failing since 2025-11-25 06:00 UTC: HTTP 500"
    assert state.next_fetch_at is None
    assert not is_due(state, NOW + timedelta(days=365))


def test_disable_after_is_a_setting() -> None:
    state = apply_result(feed(), FAILED, NOW, settings(disable_after="2h"))
    state = apply_result(state, FAILED, NOW + timedelta(hours=1), settings(disable_after="2h"))
    assert not state.disabled
    state = apply_result(state, FAILED, NOW + timedelta(hours=2), settings(disable_after="2h"))
    assert state.disabled


# -- caching headers from the client ------------------------------------------------------------


def test_fresh_until() -> None:
    date = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    expires = format_datetime(NOW + timedelta(hours=1), usegmt=True)
    assert fresh_until({"cache-control": "public, max-age=600"}, NOW) == NOW + timedelta(minutes=10)
    assert fresh_until({"cache-control": "max-age=600", "age": "100"}, NOW) == NOW + timedelta(
        seconds=500
    )
    # Expires counts from the server's Date: two hours of lifetime, whatever our clock says.
    assert fresh_until({"expires": expires, "date": date}, NOW) == NOW + timedelta(hours=2)
    assert fresh_until({"expires": expires}, NOW) == NOW + timedelta(hours=1)
    assert fresh_until({"cache-control": "max-age=600", "expires": expires}, NOW) == (
        NOW + timedelta(minutes=10)
    )
    for headers in (
        {},
        {"cache-control": "no-cache, max-age=600"},
        {"cache-control": "no-store"},
        {"cache-control": "max-age=0"},
        {"cache-control": "max-age=soon"},
        {"expires": "0"},
        {"expires": format_datetime(NOW - timedelta(hours=1), usegmt=True)},
    ):
        assert fresh_until(headers, NOW) is None, headers


def test_client_reports_cache_lifetime(feed_server: FeedServer) -> None:
    rss = '<rss version="2.0"><channel><item><title>a</title></item></channel></rss>'
    url = feed_server.add("/feed.xml", rss, headers={"Cache-Control": "max-age=3600"})
    before = datetime.now(UTC)
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.retry_after is not None
    assert (
        before + timedelta(hours=1) <= result.retry_after <= before + timedelta(hours=1, seconds=5)
    )
    state = apply_result(Feed(url=url, outlet="t"), result, before, SETTINGS)
    assert state.next_fetch_at == result.retry_after


def test_client_reports_cache_lifetime_on_304(feed_server: FeedServer) -> None:
    url = feed_server.add(
        "/feed.xml", "<rss/>", etag='"v1"', headers={"Cache-Control": "max-age=60"}
    )
    result = fetch(Feed(url=url, outlet="t", etag='"v1"'))
    assert result.status is FetchStatus.NOT_MODIFIED
    assert result.retry_after is not None


# -- politeness per host within a run -----------------------------------------------------------


def test_host_answering_429_gets_no_more_requests_this_run(feed_server: FeedServer) -> None:
    first = feed_server.add("/a.xml", "", status=429, headers={"Retry-After": "120"})
    others = [feed_server.add(f"/{name}.xml", "<rss/>") for name in "bcd"]
    feeds = [Feed(url=url, outlet="t") for url in [first, *others]]
    before = datetime.now(UTC)
    results = {
        feed_.url: result
        for feed_, result in fetch_all(feeds, make_settings(per_host_concurrency=1))
    }
    assert [feed_server.hits(f"/{name}.xml") for name in "abcd"] == [1, 0, 0, 0]
    for feed_ in feeds[1:]:
        result = results[feed_.url]
        assert result.status is FetchStatus.FAILED
        assert result.error is not None
        assert result.error.startswith("not sent: 127.0.0.1 answered HTTP 429, asked to wait")
        assert result.retry_after is not None
        assert before + timedelta(seconds=119) <= result.retry_after
        later = apply_result(feed_, result, before, SETTINGS)
        assert later.next_fetch_at is not None
        assert later.next_fetch_at >= result.retry_after  # the whole host is scheduled later


def test_slow_host_gets_one_request_at_a_time(feed_server: FeedServer) -> None:
    slow = feed_server.add("/slow.xml", "<rss/>", delay=0.3)
    fast = [feed_server.add(f"/{n}.xml", "<rss/>", delay=0.05) for n in range(4)]
    settings = make_settings(per_host_concurrency=4)
    slots = RequestSlots(4, 4, slow_after=0.2)

    async def run() -> None:
        async with make_client(settings) as client:
            await asyncio.gather(
                *(fetch_feed(client, Feed(url=u, outlet="t"), settings, slots=slots) for u in fast)
            )
            assert feed_server.max_in_flight == 4  # a healthy host gets parallel requests
            await fetch_feed(client, Feed(url=slow, outlet="t"), settings, slots=slots)
            feed_server.max_in_flight = 0
            await asyncio.gather(
                *(fetch_feed(client, Feed(url=u, outlet="t"), settings, slots=slots) for u in fast)
            )

    asyncio.run(run())
    assert feed_server.max_in_flight == 1
