"""What the dashboard shows, as plain data: shared by the HTML views and the JSON API.

Pure functions of clusters and times, so the pages and the API cannot
disagree, and both are tested without a server.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from aggregator.digest.records import cluster_record, headline, isoformat, representative
from aggregator.models import Cluster, Entry
from aggregator.store.dashboard import Gap, HourRow


def safe_link(url: str | None) -> str | None:
    """The URL if it is http(s), else None: a feed cannot smuggle javascript: into a link."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def story_title(cluster: Cluster) -> str:
    """The story's headline; remembered per cluster state, as choosing it compares all pairs."""
    last = max((entry.id or 0) for entry in cluster.entries) if cluster.entries else 0
    return _title(cluster.id, len(cluster.entries), last, cluster)


_TITLES: dict[tuple[int, int, int], str] = {}
_TITLES_MAX = 20_000


def _title(cluster_id: int, size: int, last: int, cluster: Cluster) -> str:
    key = (cluster_id, size, last)
    title = _TITLES.get(key)
    if title is None:
        if len(_TITLES) >= _TITLES_MAX:
            _TITLES.clear()
        title = _TITLES[key] = headline(representative(cluster))
    return title


def story_record(cluster: Cluster, *, growth: int | None = None) -> dict[str, Any]:
    """A story for the API: the digest's cluster record plus the dashboard's figures."""
    record = cluster_record(cluster)
    record["outlet_count"] = len(record["outlets"])
    record["last_seen"] = isoformat(cluster.last_published)
    for item, entry in zip(
        record["entries"],
        sorted(cluster.entries, key=lambda e: (e.published, e.id or 0)),
        strict=True,
    ):
        item["entry_id"] = entry.id
        item["url"] = safe_link(item["url"])
    if growth is not None:
        record["growth"] = growth
    return record


def gap_record(gap: Gap, now: datetime) -> dict[str, Any]:
    record = story_record(gap.cluster)
    record["gap_open_since"] = isoformat(gap.open_since)
    record["gap_open_minutes"] = max(0, int((now - gap.open_since).total_seconds() // 60))
    return record


def entry_record(entry: Entry) -> dict[str, Any]:
    return {
        "entry_id": entry.id,
        "story_id": entry.cluster_id,
        "title": entry.title,
        "summary": entry.summary,
        "url": safe_link(entry.link),
        "outlet": entry.outlet,
        "language": entry.language,
        "published": isoformat(entry.published),
    }


def joined_since(cluster: Cluster, since: datetime) -> list[str]:
    """Outlets whose first report in the story came at or after `since` (shown as new)."""
    first: dict[str, datetime] = {}
    for entry in cluster.entries:
        if entry.outlet not in first or entry.published < first[entry.outlet]:
            first[entry.outlet] = entry.published
    return [name for name in cluster.outlets if first[name] >= since]


# -- the outlet matrix -----------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    """Stories × outlets; a cell is minutes after the story's first report, None if absent."""

    outlets: list[str]
    rows: list[tuple[Cluster, dict[str, int]]]


def matrix(clusters: Sequence[Cluster], sort: str | None = None) -> Matrix:
    """The matrix of these stories; outlets carrying the most stories come first.

    `sort` names an outlet: rows by how fast it reported (absent last),
    otherwise the stories keep their order.
    """
    rows = []
    carried: dict[str, int] = {}
    for cluster in clusters:
        start = cluster.first.published
        cells: dict[str, int] = {}
        for entry in sorted(cluster.entries, key=lambda e: e.published):
            if entry.outlet not in cells:
                cells[entry.outlet] = int((entry.published - start).total_seconds() // 60)
                carried[entry.outlet] = carried.get(entry.outlet, 0) + 1
        rows.append((cluster, cells))
    outlets = sorted(carried, key=lambda name: (-carried[name], name))
    if sort in carried:
        rows.sort(key=lambda row: (row[1].get(sort) is None, row[1].get(sort, 0)))
    return Matrix(outlets, rows)


def matrix_csv(table: Matrix) -> str:
    """The matrix as CSV: one row per story, one column per outlet, minutes after the first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["story_id", "title", "first_seen", *map(_cell, table.outlets)])
    for cluster, cells in table.rows:
        minutes = [cells.get(name, "") for name in table.outlets]
        title = _cell(story_title(cluster))
        writer.writerow([cluster.id, title, isoformat(cluster.first.published), *minutes])
    return out.getvalue()


# Spreadsheets evaluate a cell starting with one of these as a formula (OWASP's list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    """Text from a feed as a CSV cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


# -- the chart -------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    entries_y: float
    entries_height: float
    stories_y: float
    stories_height: float
    row: HourRow
    # The hour's local time under the axis, on every few hours only.
    label: str | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int


_HOUR = timedelta(hours=1)
# Axis labels every this many hours: the first that leaves at most eight labels.
_LABEL_STEPS = (1, 2, 3, 6, 12, 24)


def chart(
    rows: Sequence[HourRow],
    since: datetime,
    until: datetime,
    zone: tzinfo,
    *,
    width: int = 720,
    height: int = 160,
) -> Chart:
    """Bar geometry for entries (and new stories inside them) per hour of [since, until).

    Every hour of the range gets its place, quiet ones at zero, so the axis
    is time: an empty night shows as a gap, not as neighbouring busy hours.
    """
    counted = {row.hour: row for row in rows}
    first = since.replace(minute=0, second=0, microsecond=0)
    count = max(1, math.ceil((until - first) / _HOUR))
    hours = [first + index * _HOUR for index in range(count)]
    step = width / count
    every = next((n for n in _LABEL_STEPS if count / n <= 8), 24)
    peak = max((row.entries for row in rows), default=0) or 1
    bars = []
    for index, hour in enumerate(hours):
        row = counted.get(hour, HourRow(hour, 0, 0))
        local = hour.astimezone(zone)
        entries_height = height * row.entries / peak
        stories_height = height * min(row.stories, row.entries or row.stories) / peak
        bars.append(
            Bar(
                x=round(index * step, 1),
                width=round(max(step * 0.8, 1), 1),
                entries_y=round(height - entries_height, 1),
                entries_height=round(entries_height, 1),
                stories_y=round(height - stories_height, 1),
                stories_height=round(stories_height, 1),
                row=row,
                label=_axis_label(local, count) if local.hour % every == 0 else None,
            )
        )
    return Chart(width, height, bars, peak)


def _axis_label(moment: datetime, hours: int) -> str:
    """The hour; over more than a day, midnight names its date instead."""
    return moment.strftime("%d.%m." if hours > 25 and moment.hour == 0 else "%H:%M")
