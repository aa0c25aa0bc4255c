"""A long batch normalized in a second process clusters exactly as one normalized in this one."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import aggregator.pipeline
from aggregator import cluster_ahead
from aggregator.cluster import Clusterer, Item, cluster_items
from aggregator.config import ClusterSettings, Settings
from aggregator.models import Entry, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Store

HARD_CASES = Path(__file__).parent / "fixtures" / "dedupe" / "hard_cases.jsonl"
OUTLETS = ["news.example", "blatt.example", "funk.example", "tv.example"]
SUFFIXES = [" - News", " | blatt.example", " · Funk", ""]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch goes to the worker, in many small messages, several on their way.

    Epochs of two chunks: the worker hands over its boilerplate model and
    numbers tokens afresh several times per batch.
    """
    monkeypatch.setattr(cluster_ahead, "MIN_ENTRIES", 1)
    monkeypatch.setattr(cluster_ahead, "CHUNK", 16)
    monkeypatch.setattr(cluster_ahead, "IN_FLIGHT", 2)
    monkeypatch.setattr(cluster_ahead, "EPOCH", 2)


def reports(copies: int = 6) -> list[Item]:
    """Each hand-written hard case as several outlets print it: suffixes, kickers, later times."""
    rng = random.Random(4)
    rows = [json.loads(line) for line in HARD_CASES.read_text(encoding="utf-8").splitlines()]
    items = []
    for copy in range(copies):
        for row in rows:
            outlet = rng.randrange(len(OUTLETS))
            title = ("Video: " if rng.random() < 0.2 else "") + row["title"] + SUFFIXES[outlet]
            items.append(
                Item(
                    id=len(items) + 1,
                    outlet=OUTLETS[outlet],
                    title=title,
                    summary=row["summary"] if rng.random() < 0.8 else "",
                    published=datetime.fromisoformat(row["published"])
                    + timedelta(minutes=rng.randint(0, 90) + 30 * copy),
                    canonical_url=f"{row['url']}?copy={copy}" if copy else row["url"],
                    language="de",
                )
            )
    return sorted(items, key=lambda item: (item.published, item.id))


@pytest.mark.parametrize("granularity", ["event", "story"])
def test_worker_clusters_as_this_process_does(granularity: str) -> None:
    items = reports()
    inline = cluster_items(items, ClusterSettings(granularity=granularity, parallel=False))
    ahead = cluster_items(items, ClusterSettings(granularity=granularity, parallel=True))
    assert ahead == inline
    assert len({m.cluster_id for m in inline}) < len(items) / 3  # the copies did cluster


def test_a_worker_with_a_tiny_analysis_cache_clusters_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's cache is smaller than the matcher's: it saves work, never changes results."""
    monkeypatch.setattr(cluster_ahead, "WORKER_ANALYSES", 2)
    items = reports()
    inline = cluster_items(items, ClusterSettings(parallel=False))
    assert cluster_items(items, ClusterSettings(parallel=True)) == inline


def test_with_one_cpu_the_batch_is_normalized_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker on the same CPU as the decisions would only take turns with them."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    started = []
    monkeypatch.setattr(cluster_ahead, "AheadNormalizer", lambda *args: started.append(args))
    items = reports()
    got = list(Clusterer(ClusterSettings(parallel=True)).add_many(items))
    assert got == cluster_items(items, ClusterSettings(parallel=False))
    assert started == []


def test_state_after_a_batch_is_the_state_after_adding_one_by_one() -> None:
    """The model and statistics a batch leaves decide the entries that come after it alike."""
    items = reports()
    first, later = items[: len(items) // 2], items[len(items) // 2 :]
    one_by_one = Clusterer(ClusterSettings(parallel=False))
    expected = [one_by_one.add(item) for item in items]
    batch = Clusterer(ClusterSettings(parallel=True))
    got = list(batch.add_many(first)) + [batch.add(item) for item in later]
    assert got == expected
    assert batch.frequencies.counts == one_by_one.frequencies.counts
    assert batch.boilerplate.strip(OUTLETS[1], "Neu | blatt.example") == "Neu"


def test_stopping_early_leaves_a_consistent_clusterer() -> None:
    items = reports()
    expected = cluster_items(items, ClusterSettings(parallel=False))
    clusterer = Clusterer(ClusterSettings(parallel=True))
    matches = clusterer.add_many(items)
    got = [next(matches) for _ in range(40)]  # the worker has normalized more by now
    del matches  # closes the generator: the model catches up on the 40 taken
    got += [clusterer.add(item) for item in items[40:]]
    assert got == expected


def killing_the_worker_after(items: list[Item], count: int) -> Iterator[Item]:
    for number, item in enumerate(items):
        if number == count:
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
        yield item


def test_a_dead_worker_costs_nothing_but_time(caplog: pytest.LogCaptureFixture) -> None:
    items = reports()
    expected = cluster_items(items, ClusterSettings(parallel=False))
    clusterer = Clusterer(ClusterSettings(parallel=True))
    with caplog.at_level(logging.WARNING, logger="aggregator.cluster_ahead"):
        got = list(clusterer.add_many(killing_the_worker_after(items, 60), count=len(items)))
    assert got == expected
    assert "normalizer process died" in caplog.text


def test_an_error_reading_the_items_is_raised_not_taken_for_a_dead_worker() -> None:
    """Even a BrokenProcessPool from the caller's own items: the worker is fine."""
    items = reports()

    def failing() -> Iterator[Item]:
        yield from items[:50]
        raise BrokenProcessPool("the caller's own pool")

    clusterer = Clusterer(ClusterSettings(parallel=True))
    with pytest.raises(BrokenProcessPool, match="caller's own pool"):
        list(clusterer.add_many(failing(), count=len(items)))


def _grouping(store: Store) -> set[frozenset[str]]:
    stored = store.clusters_between(T - timedelta(days=30), T + timedelta(days=30))
    return {frozenset(e.guid for e in c.entries) for c in stored}


def _expected(items: list[Item]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for match in cluster_items(items, ClusterSettings(parallel=False)):
        groups.setdefault(match.cluster_id, set()).add(str(match.entry_id))
    return {frozenset(group) for group in groups.values()}


def _save(store: Store, items: list[Item]) -> None:
    feeds = {
        outlet: store.add_feed(
            f"https://{outlet}/rss", Outlet(outlet), source="config", interval_seconds=60, now=T
        )[0]
        for outlet in OUTLETS
    }
    for item in items:
        entry = Entry(
            guid=str(item.id),
            url=item.canonical_url,
            canonical_url=item.canonical_url,
            title=item.title,
            summary=item.summary,
            published=item.published,
            content_hash=str(item.id),
            language="de",
        )
        store.save_fetch(feeds[item.outlet], [entry], T)


def test_pipeline_reads_pages_ahead_and_primes_through_the_worker(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aggregator.pipeline, "CLUSTER_BATCH", 25)  # many pages, read ahead
    items = reports()
    first, later = items[: len(items) // 2], items[len(items) // 2 :]
    store = Store(database_url)
    settings = Settings(cluster=ClusterSettings(parallel=True))
    _save(store, first)
    assert Pipeline(settings, store).cluster() == len(first)
    assert store.count_unclustered() == 0
    assert _grouping(store) == _expected(first)

    _save(store, later)
    fresh = Pipeline(settings, store)  # primes its window from the database
    assert fresh.cluster() == len(later)
    assert fresh.primed == 1
    assert _grouping(store) == _expected(items)


T = datetime.fromisoformat("2024-03-06T00:00:00+00:00")


ORPHAN_SCRIPT = """
import multiprocessing, sys, time
from datetime import UTC, datetime
from aggregator import cluster_ahead
from aggregator.cluster import Clusterer, Item
from aggregator.config import ClusterSettings

def slow():
    for number in range(1_000_000):
        if number == 50:
            print(*(child.pid for child in multiprocessing.active_children()), flush=True)
            time.sleep(600)
        yield Item(number, "o", f"Meldung {number}", "", datetime(2026, 1, 1, tzinfo=UTC))

if __name__ == "__main__":
    cluster_ahead.MIN_ENTRIES, cluster_ahead.CHUNK = 1, 10
    list(Clusterer(ClusterSettings(parallel=True)).add_many(slow(), count=1_000_000))
"""


def test_a_killed_run_leaves_no_normalizer_behind(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(ORPHAN_SCRIPT, encoding="utf-8")
    run = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert run.stdout is not None
    workers = [int(pid) for pid in run.stdout.readline().split()]
    assert workers, "the run started no normalizer process"
    run.kill()
    run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, dead but not reaped by its parent, does not count)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
