"""What one pass of the service costs to cluster a few new entries into a full window.

Run from the project root (data sets live outside the repo):

    python bench/cluster_passes.py [--data ../shared/data] [--entries 60000] [--new 200]

`serve` fetches due feeds every few seconds and clusters what arrived. Each
pass used to build a new matcher and prime it with every entry of the 72-hour
window from the database; the pipeline now keeps the last run's matcher while
the database still shows exactly what it holds. The bench stores the first
`--entries` entries of the seeded stream of `bench/stream.py` (400 outlets,
one feed each) in a SQLite file, clusters them, then times, in the same run,
passes that each add `--new` later entries:

- "kept": the same `Pipeline` as the first run (the service's case);
- "primed": a new `Pipeline` every pass (a matcher primed from the database).

Both are given the same entries. The kept matcher has also seen the entries
already evicted from its window (their word statistics), so the two may
differ in a rare borderline decision.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from matcher_quality import load_note
from stream import generate

from aggregator.cluster import Item
from aggregator.config import ClusterSettings, Settings
from aggregator.models import Entry, Feed, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Fetched, Store

NOW = datetime(2024, 6, 10, tzinfo=UTC)
PASSES = 5


def store_items(store: Store, feeds: dict[str, Feed], items: Sequence[Item]) -> None:
    """The items as entries of their outlet's feed, in one transaction."""
    by_outlet: dict[str, list[Entry]] = {}
    for item in items:
        by_outlet.setdefault(item.outlet, []).append(
            Entry(
                guid=str(item.id),
                url=item.canonical_url,
                canonical_url=item.canonical_url,
                title=item.title,
                summary=item.summary,
                published=item.published,
                content_hash=str(item.id),
            )
        )
    store.save_fetches([Fetched(feeds[o], e, NOW) for o, e in by_outlet.items()])


def fresh_store(path: Path, items: Sequence[Item]) -> tuple[Store, dict[str, Feed]]:
    store = Store(f"sqlite:///{path}")
    feeds = {}
    for outlet in sorted({item.outlet for item in items}):
        feeds[outlet] = store.add_feed(
            f"https://{outlet}/feed", Outlet(outlet), source="config", interval_seconds=60, now=NOW
        )[0]
    return store, feeds


def passes(
    folder: Path, name: str, items: Sequence[Item], first: int, new: int, keep: bool
) -> list[float]:
    """Seconds of each pass after the first run; the same pipeline throughout when `keep`."""
    store, feeds = fresh_store(folder / f"{name}.sqlite", items)
    settings = Settings(cluster=ClusterSettings())
    store_items(store, feeds, items[:first])
    pipeline = Pipeline(settings, store)
    pipeline.cluster()
    seconds = []
    for number in range(PASSES):
        start = first + number * new
        store_items(store, feeds, items[start : start + new])
        if not keep:
            pipeline = Pipeline(settings, store)
        began = time.perf_counter()
        assert pipeline.cluster() == new
        seconds.append(time.perf_counter() - began)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--entries", type=int, default=60_000)
    parser.add_argument("--new", type=int, default=200)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    items = generate(args.data, args.entries + PASSES * args.new)
    with tempfile.TemporaryDirectory() as folder:
        kept = passes(Path(folder), "kept", items, args.entries, args.new, keep=True)
        primed = passes(Path(folder), "primed", items, args.entries, args.new, keep=False)
    window = sum(
        1
        for item in items[: args.entries]
        if item.published >= items[args.entries].published - ClusterSettings().window_delta
    )
    print(
        f"{args.entries:,} entries stored and clustered ({window:,} in the window "
        f"before the first pass); {PASSES} passes of {args.new} new entries each"
    )
    print("| pass | median s | min s | max s |")
    print("| --- | ---: | ---: | ---: |")
    for label, times in (
        ("matcher kept (service)", kept),
        ("matcher primed from the database", primed),
    ):
        print(f"| {label} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")
    print(load_note(load))
    command = "python bench/cluster_passes.py " + " ".join(sys.argv[1:])
    print(f"command: {command.strip()}")


if __name__ == "__main__":
    main()
