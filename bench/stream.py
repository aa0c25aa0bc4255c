"""Throughput of the matcher on a synthetic 200,000-entry, 7-day stream.

Run from the project root (data sets live outside the repo):

    python bench/stream.py [--data ../shared/data] [--entries 200000] [--repeat 3]

No real feed archive of that size exists here, so the stream is generated from
the labelled dev files (`german/dev.jsonl` and `uci/dev.jsonl`) with a fixed
seed. Each entry is a sampled headline (and lead, where the row has one) as
another outlet would print it:

- an outlet from a pool of 400, each with its own habit: a suffix
  (" - Name", " | name.de", " · Name") or none, and sometimes a kicker
  ("Video:", "+++ Liveblog +++", "Exklusiv:");
- word drops (one or two words, 30 %), reorderings (the part after a colon
  moved to the front, or two neighbouring words swapped, 20 %), a lead cut
  to its first sentence (30 %) or left out (10 %);
- a publication time drawn uniformly over 7 days, so about 3/7 of the
  entries (85,700 of 200,000) fall in any 72-hour window, the matcher's
  default window.

The bench times the full clustering (normalisation included: `cluster_items`
on `Item`s built beforehand) of the first 100,000 and of all 200,000 entries
in time order, each in a forked child that starts with cold normaliser
caches, in one process (`cluster.parallel = false`) and with the normalizer
process of `aggregator.cluster_ahead` (`cluster.parallel = true`), each
`--repeat` times with the runs interleaved. It reports the fastest run's
entries/s and the slowest run's time (this machine's speed drifts by tens of
percent within minutes), the ratio of the two fastest times, the peak RSS of
those children (`resource.getrusage`) and of the normalizer (sampled), and in
the same run the naive all-pairs baseline of `bench/matcher_quality.py`
(rapidfuzz on every pair, single-link) against the matcher on the first
10,000 entries. The figures go
to the "Stream throughput" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import random
import resource
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
from matcher_quality import all_pairs_single_link_clusters, load_note, replace_section

from aggregator.cluster import Item, cluster_items
from aggregator.config import ClusterSettings

SEED = 20240601
START = datetime(2024, 6, 3, tzinfo=UTC)
DAYS = 7
OUTLETS = 400
SOURCES = ("german/dev.jsonl", "uci/dev.jsonl")
# The matcher in this process alone, and with a normalizer process (`cluster.parallel`).
MODES = (("one process", False), ("two processes", True))
KICKERS = ("Video: ", "+++ Liveblog +++ ", "Exklusiv: ", "Eilmeldung: ", "Kommentar: ")
SUFFIX_FORMS = (" - {name}", " | {host}", " · {name}", "")


@dataclass(frozen=True)
class Source:
    title: str
    summary: str
    language: str | None


@dataclass(frozen=True)
class Outlet:
    host: str
    suffix: str
    kicker_rate: float


def load_sources(data: Path) -> list[Source]:
    sources: list[Source] = []
    for name in SOURCES:
        with (data / name).open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                sources.append(Source(row["title"], row.get("summary") or "", row.get("lang")))
    return sources


def make_outlets(rng: random.Random) -> list[Outlet]:
    outlets = []
    for number in range(OUTLETS):
        name = f"Nachrichten {number}" if number % 2 else f"Daily Courier {number}"
        host = f"outlet{number}.example"
        form = rng.choice(SUFFIX_FORMS)
        outlets.append(
            Outlet(host, form.format(name=name, host=host), rng.choice((0.0, 0.0, 0.05, 0.2)))
        )
    return outlets


def perturb_title(title: str, rng: random.Random) -> str:
    words = title.split()
    if len(words) > 4 and rng.random() < 0.3:
        for _ in range(rng.choice((1, 1, 2))):
            del words[rng.randrange(1, len(words))]
    if len(words) > 3 and rng.random() < 0.2:
        text = " ".join(words)
        if ": " in text and rng.random() < 0.5:
            head, tail = text.split(": ", 1)
            words = f"{tail}: {head}".split()
        else:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def perturb_lead(summary: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.1:
        return ""
    if roll < 0.4:
        return summary.split(". ", 1)[0]
    return summary


def generate(data: Path, entries: int, seed: int = SEED) -> list[Item]:
    """The stream, sorted by publication time, ids 0..n-1 in that order."""
    rng = random.Random(seed)
    sources = load_sources(data)
    outlets = make_outlets(rng)
    span = DAYS * 24 * 3600
    drafts = []
    for _ in range(entries):
        source = rng.choice(sources)
        outlet = rng.choice(outlets)
        title = perturb_title(source.title, rng)
        if rng.random() < outlet.kicker_rate:
            title = rng.choice(KICKERS) + title
        published = START + timedelta(seconds=rng.randrange(span))
        drafts.append((published, outlet, title + outlet.suffix, perturb_lead(source.summary, rng)))
    drafts.sort(key=lambda draft: draft[0])
    return [
        Item(
            id=number,
            outlet=outlet.host,
            title=title,
            summary=summary,
            published=published,
            canonical_url=f"https://{outlet.host}/{number}",
            language=None,
        )
        for number, (published, outlet, title, summary) in enumerate(drafts)
    ]


def densest_window(items: Sequence[Item], window: timedelta) -> int:
    """Most entries inside any `window`-long span (two pointers over sorted times)."""
    best, start = 0, 0
    for end, item in enumerate(items):
        while item.published - items[start].published > window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _cluster_and_time(items: Sequence[Item], settings: ClusterSettings) -> tuple[float, float]:
    """Seconds to cluster `items`, and the peak RSS (MB) of the normalizer process, if any.

    The normalizer is started by the matcher (`aggregator.cluster_ahead`) from
    the forkserver, so it is no child of the bench: its RSS is sampled here.
    """
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            for child in multiprocessing.active_children():
                with contextlib.suppress(psutil.Error):
                    peak = max(peak, psutil.Process(child.pid).memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    cluster_items(items, settings)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, peak


def timed_clustering(items: Sequence[Item], settings: ClusterSettings) -> tuple[float, float]:
    """`_cluster_and_time` in a forked child that starts with cold caches.

    The normaliser's caches (stems, analysed texts) would otherwise carry
    over from one measurement to the next and flatter the later ones.
    """
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    # Forked, the child shares `items` with this process: nothing is pickled but the time.
    child = context.Process(target=lambda: sender.send(_cluster_and_time(items, settings)))
    child.start()
    seconds, worker_peak = receiver.recv()
    child.join()
    return float(seconds), float(worker_peak)


def peak_rss_mb() -> float:
    """The largest resident set of a clustering child so far."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--baseline-rows", type=int, default=10_000)
    parser.add_argument("--granularity", choices=("event", "story"), default="event")
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="Runs of each matcher measurement, interleaved; the fastest is reported and the "
        "slowest shown beside it (a shared machine's speed drifts by tens of percent).",
    )
    args = parser.parse_args()
    settings = ClusterSettings.model_validate({"granularity": args.granularity})
    load = os.getloadavg()[0]
    items = generate(args.data, args.entries)
    dense = densest_window(items, settings.window_delta)
    lines = [
        f"Stream: {len(items):,} entries over {DAYS} days, seed {SEED}, "
        f"densest {settings.window} window {dense:,} entries; granularity {args.granularity}.",
        "",
        f"| measurement | entries | seconds (best of {args.repeat}) | entries/s | slowest s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    half = items[: len(items) // 2]
    runs: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    worker_rss = 0.0
    for _ in range(args.repeat):
        for mode, parallel in MODES:
            for part in (half, items):
                mode_settings = settings.model_copy(update={"parallel": parallel})
                seconds, worker_peak = timed_clustering(part, mode_settings)
                runs[mode, len(part)].append(seconds)
                worker_rss = max(worker_rss, worker_peak)
                print(f"{mode}, {len(part):,} entries: {seconds:.2f} s", flush=True)
    times = {key: min(seconds) for key, seconds in runs.items()}
    for mode, _ in MODES:
        for part in (half, items):
            best, slowest = times[mode, len(part)], max(runs[mode, len(part)])
            lines.append(
                f"| matcher, {mode} | {len(part):,} | {best:.2f} | {len(part) / best:,.0f} "
                f"| {slowest:.2f} |"
            )
    rss = peak_rss_mb()
    few = items[: args.baseline_rows]
    one_process = settings.model_copy(update={"parallel": False})  # as the baseline runs
    matcher_small = min(timed_clustering(few, one_process)[0] for _ in range(args.repeat))
    start = time.perf_counter()
    all_pairs_single_link_clusters([item.title for item in few], threshold=60)
    naive = time.perf_counter() - start
    lines += [
        f"| matcher | {len(few):,} | {matcher_small:.2f} | {len(few) / matcher_small:,.0f} | |",
        f"| naive all-pairs baseline (one run) | {len(few):,} | {naive:.2f} "
        f"| {len(few) / naive:,.0f} | |",
        "",
        *(
            f"- {mode}: time({len(items):,}) / time({len(half):,}): "
            f"{times[mode, len(items)] / times[mode, len(half)]:.2f}"
            for mode, _ in MODES
        ),
        f"- peak RSS of the clustering process (stream included): {rss:,.0f} MB; "
        f"of the normalizer process (two processes): {worker_rss:,.0f} MB",
        f"- matcher vs naive all-pairs at {len(few):,} rows: {naive / matcher_small:.1f}x faster "
        f"({len(few):,} entries are normalized in one process)",
        load_note(load),
    ]
    report = "\n".join(lines)
    print(report)
    command = "python bench/stream.py " + " ".join(sys.argv[1:])
    replace_section(args.docs, "Stream throughput", command.strip(), report)


if __name__ == "__main__":
    main()
