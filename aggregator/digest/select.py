"""Choosing and ordering the clusters of one digest period.

A pure function of the clusters it is given, so the same stored state always
gives the same digest: re-running a crashed digest writes identical files.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from aggregator.models import Cluster, Digest


def _require_aware(label: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{label} {moment.isoformat()} has no time zone (expected an aware time)")


def clip(cluster: Cluster, period_start: datetime, period_end: datetime) -> Cluster | None:
    """The cluster as it stood at `period_end`, or None if nothing of it fell in the period.

    Entries from before the period stay: they say who reported first. Entries
    from after it go, so a digest does not change when later news arrives.
    """
    entries = [entry for entry in cluster.entries if entry.published < period_end]
    if not any(entry.published >= period_start for entry in entries):
        return None
    kept = {entry.id for entry in entries if entry.id is not None}
    matches = {key: match for key, match in cluster.matches.items() if key in kept}
    return Cluster(id=cluster.id, entries=entries, matches=matches)


def rank_key(cluster: Cluster) -> tuple[int, float, int]:
    """Most outlets first, then the most recently updated, then the oldest cluster id.

    The id makes the order total, so equal stories never swap places between runs.
    """
    return (-len(cluster.outlets), -cluster.last_published.timestamp(), cluster.id)


def build_digest(
    clusters: Iterable[Cluster],
    *,
    name: str,
    title: str,
    period_start: datetime,
    period_end: datetime,
    generated_at: datetime,
) -> Digest:
    """Every cluster with an entry published in [period_start, period_end), ranked."""
    _require_aware("period start", period_start)
    _require_aware("period end", period_end)
    _require_aware("generated_at", generated_at)
    if period_start >= period_end:
        raise ValueError(
            f"digest {name!r}: period start {period_start.isoformat()} "
            f"is not before its end {period_end.isoformat()}"
        )
    clipped = (clip(cluster, period_start, period_end) for cluster in clusters)
    selected = sorted((c for c in clipped if c is not None), key=rank_key)
    return Digest(
        name=name,
        period_start=period_start,
        period_end=period_end,
        generated_at=generated_at,
        clusters=selected,
        title=title,
    )
