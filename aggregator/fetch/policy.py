"""How a fetch outcome changes a feed's state: pure decisions, no I/O.

Kept apart from the HTTP code so the rules (when to fetch next, how far to back
off, when to give up on a feed) are tested without a network, and the fetcher
only carries them out.

When to fetch next, after a success:

1. The interval follows how often the feed publishes: the time its recent
   entries span (up to now) divided by the gaps between them, so a feed that
   went quiet slows down as well. Without dated entries the feed keeps its interval.
2. The publisher's own hint (RSS ``<ttl>``, ``sy:updatePeriod``) is a floor.
3. The result is bounded by ``min_interval`` and ``max_interval``.
4. A fixed per-URL share of up to ``jitter`` of it is taken off, so feeds of one
   host added at the same moment do not stay in lockstep forever.
5. The server's caching headers or Retry-After (``FetchResult.retry_after``)
   can only postpone that time, and never beyond ``max_interval`` from now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.config import FetchSettings
from aggregator.models import Feed, FetchResult, FetchStatus, ParsedFeed

GONE_REASON = "HTTP 410 Gone"
# Enough entries to average out a burst, few enough to follow a change of pace.
RECENT_ENTRIES = 20


def apply_result(
    feed: Feed,
    result: FetchResult,
    now: datetime,
    settings: FetchSettings,
    *,
    parsed: ParsedFeed | None = None,
) -> Feed:
    """The feed's state after `result`, as a new Feed (the input is not changed).

    `parsed` is the document of a successful fetch; its entries' dates and its
    ttl adapt the feed's interval. Without it the interval stays as it was.

    Validators (ETag, Last-Modified) are only taken from a successful exchange:
    after a failure, including content that failed to parse, the old ones stay,
    so the next fetch is a full one rather than a 304 for content never stored.
    """
    state = replace(
        feed,
        url=result.permanent_url or feed.url,
        last_fetched_at=now,
        last_status=result.status.value,
        last_error=result.error,
    )
    if result.status is FetchStatus.GONE:
        return replace(state, disabled=True, disabled_reason=GONE_REASON, next_fetch_at=None)
    if result.status is FetchStatus.FAILED:
        return _after_failure(state, feed, result, now, settings)
    interval = adapted_interval(feed, parsed, now, settings)
    keep_old = result.status is FetchStatus.NOT_MODIFIED
    return replace(
        state,
        consecutive_errors=0,
        failing_since=None,
        interval_seconds=round(interval.total_seconds()),
        etag=result.etag or (feed.etag if keep_old else None),
        last_modified=result.last_modified or (feed.last_modified if keep_old else None),
        next_fetch_at=_not_before(
            now + _jittered(interval, feed.url, settings), result.retry_after, now, settings
        ),
    )


def is_due(feed: Feed, now: datetime) -> bool:
    """Whether an enabled feed should be fetched at `now`; a never-scheduled feed is due."""
    return not feed.disabled and (feed.next_fetch_at is None or feed.next_fetch_at <= now)


def publishing_gap(published: Iterable[datetime], now: datetime) -> timedelta | None:
    """The average time between the feed's recent entries, counted up to `now`.

    The span runs from the oldest of the RECENT_ENTRIES newest dates to `now`
    (not to the newest entry), so a feed that published ten items an hour
    until last week reads as slow today; a single date counts as one gap.
    None without any date (dates in the future are ignored).
    """
    recent = sorted((date for date in published if date <= now), reverse=True)[:RECENT_ENTRIES]
    if not recent:
        return None
    return (now - recent[-1]) / max(len(recent) - 1, 1)


def adapted_interval(
    feed: Feed, parsed: ParsedFeed | None, now: datetime, settings: FetchSettings
) -> timedelta:
    """How long to wait after a successful fetch, bounded by the settings (steps 1-3)."""
    wanted = timedelta(seconds=feed.interval_seconds)
    if parsed is not None:
        dates = (entry.published for entry in parsed.entries if not entry.published_estimated)
        wanted = publishing_gap(dates, now) or wanted
        if parsed.ttl_seconds:
            wanted = max(wanted, timedelta(seconds=parsed.ttl_seconds))
    return _bounded(wanted, settings)


def jitter_share(url: str) -> float:
    """A fixed number in [0, 1) for `url`: the same on every run and machine.

    A hash rather than random(): the spread must not change between fetches
    (feeds would wander), and tests can assert the exact schedule.
    """
    digest = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def disabled_reason(since: datetime, error: str | None) -> str:
    """Why a feed that kept failing was switched off, as `status` shows it."""
    return f"failing since {since:%Y-%m-%d %H:%M} UTC: {error or 'unknown error'}"


def _after_failure(
    state: Feed, feed: Feed, result: FetchResult, now: datetime, settings: FetchSettings
) -> Feed:
    """Back off exponentially; disable the feed once it has failed for disable_after."""
    since = feed.failing_since or now
    errors = feed.consecutive_errors + 1
    state = replace(state, consecutive_errors=errors, failing_since=since)
    if now - since >= settings.disable_after_delta:
        reason = disabled_reason(since, result.error)
        return replace(state, disabled=True, disabled_reason=reason, next_fetch_at=None)
    wait = _backoff(_bounded(timedelta(seconds=feed.interval_seconds), settings), feed, settings)
    planned = now + _jittered(wait, feed.url, settings)
    return replace(state, next_fetch_at=_not_before(planned, result.retry_after, now, settings))


def _bounded(interval: timedelta, settings: FetchSettings) -> timedelta:
    return min(max(interval, settings.min_interval_delta), settings.max_interval_delta)


def _jittered(interval: timedelta, url: str, settings: FetchSettings) -> timedelta:
    """`interval` shortened by the URL's share of `jitter`, never below min_interval.

    Shortened rather than lengthened, so max_interval stays a promise.
    """
    if not settings.jitter:
        return interval
    shortened = interval * (1 - settings.jitter * jitter_share(url))
    return max(shortened, min(interval, settings.min_interval_delta))


def _backoff(interval: timedelta, feed: Feed, settings: FetchSettings) -> timedelta:
    """`interval` grown by backoff_factor for each earlier consecutive failure, capped.

    The first failure waits one normal interval (a single hiccup is common and
    cheap); each further one multiplies the wait, up to max_interval.
    """
    cap = settings.max_interval_delta.total_seconds()
    try:
        seconds = interval.total_seconds() * settings.backoff_factor**feed.consecutive_errors
    except OverflowError:
        seconds = cap
    return timedelta(seconds=min(seconds, cap))


def _not_before(
    planned: datetime, retry_after: datetime | None, now: datetime, settings: FetchSettings
) -> datetime:
    """`planned`, or later if the server asked for that (Retry-After, caching headers).

    A server's wish is honoured up to max_interval from now, so a bogus
    Retry-After in the year 3000 cannot silence a feed for good.
    """
    if retry_after is None:
        return planned
    return max(planned, min(retry_after, now + settings.max_interval_delta))
