"""How a fetch outcome changes a feed's state: pure decisions, no I/O.

Kept apart from the HTTP code so the rules (when to fetch next, how far to back
off, when to give up on a feed) are tested without a network, and the fetcher
only carries them out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from aggregator.config import FetchSettings
from aggregator.models import Feed, FetchResult, FetchStatus

GONE_REASON = "HTTP 410 Gone"


def apply_result(feed: Feed, result: FetchResult, now: datetime, settings: FetchSettings) -> Feed:
    """The feed's state after `result`, as a new Feed (the input is not changed).

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
        errors = feed.consecutive_errors + 1
        wait = _backoff(_interval(feed, settings), feed.consecutive_errors, settings)
        return replace(
            state,
            consecutive_errors=errors,
            next_fetch_at=_not_before(now + wait, result.retry_after, now, settings),
        )
    keep_old = result.status is FetchStatus.NOT_MODIFIED
    return replace(
        state,
        consecutive_errors=0,
        etag=result.etag or (feed.etag if keep_old else None),
        last_modified=result.last_modified or (feed.last_modified if keep_old else None),
        next_fetch_at=_not_before(
            now + _interval(feed, settings), result.retry_after, now, settings
        ),
    )


def is_due(feed: Feed, now: datetime) -> bool:
    """Whether an enabled feed should be fetched at `now`; a never-scheduled feed is due."""
    return not feed.disabled and (feed.next_fetch_at is None or feed.next_fetch_at <= now)


def _interval(feed: Feed, settings: FetchSettings) -> timedelta:
    wanted = timedelta(seconds=feed.interval_seconds)
    return min(max(wanted, settings.min_interval_delta), settings.max_interval_delta)


def _backoff(interval: timedelta, earlier_errors: int, settings: FetchSettings) -> timedelta:
    """`interval` grown by backoff_factor for each earlier consecutive failure, capped.

    The first failure waits one normal interval (a single hiccup is common and
    cheap); each further one multiplies the wait, up to max_interval.
    """
    cap = settings.max_interval_delta.total_seconds()
    try:
        seconds = interval.total_seconds() * settings.backoff_factor**earlier_errors
    except OverflowError:
        seconds = cap
    return timedelta(seconds=min(seconds, cap))


def _not_before(
    planned: datetime, retry_after: datetime | None, now: datetime, settings: FetchSettings
) -> datetime:
    """`planned`, or later if the server asked for that (Retry-After).

    A server's wish is honoured up to max_interval from now, so a bogus
    Retry-After in the year 3000 cannot silence a feed for good.
    """
    if retry_after is None:
        return planned
    return max(planned, min(retry_after, now + settings.max_interval_delta))
