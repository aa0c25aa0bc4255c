"""What the dashboard draws, as plain data: the hourly chart's geometry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from aggregator.store.dashboard import HourRow
from aggregator.web.present import chart

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
