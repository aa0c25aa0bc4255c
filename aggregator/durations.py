"""Durations and points in time as users type them: ``90m``, ``24h``, ``7d``, ISO dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """Parse ``30m``, ``24h``, ``7d``, ``2w``; raise ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration (expected a number and s, m, h, d or w, e.g. 24h)"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time: a duration counts back from `now`, else an ISO date or datetime.

    Naive ISO values are taken as UTC; the result is always timezone-aware UTC.
    """
    if _DURATION.match(text):
        return now - parse_duration(text)
    if text.strip().lower() == "now":
        return now
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO date (2026-11-25, 2026-11-25T06:00+01:00) "
            "nor a relative time (24h, 7d)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
