"""Matcher quality and speed on the labelled sets, against two baselines.

Run from the project root (data sets live outside the repo):

    python bench/matcher_quality.py [--data ../shared/data]

For each set it prints BCubed P/R/F1 and pairwise F1 of
- exact: items with the same folded title form a cluster;
- allpairs: rapidfuzz token_sort_ratio on folded titles over *all* pairs,
  single-link, at the threshold that scores best on that very set (an
  optimistic baseline: it sees the answers);
- matcher: `aggregator.cluster` at its defaults (event for German,
  story for UCI),
and the matcher's throughput in entries/s on UCI dev+test.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Hashable, Sequence
from pathlib import Path

from rapidfuzz import fuzz, process

from aggregator.config import ClusterSettings
from aggregator.dedupe import Row, dedupe, load_rows
from aggregator.evaluate import Metrics, metrics
from aggregator.text import fold

SETS = (
    ("german/dev", "german/dev.jsonl", "event"),
    ("uci/dev", "uci/dev.jsonl", "story"),
    ("uci/test", "uci/test.jsonl", "story"),
)


def replace_section(path: Path, heading: str, command: str, body: str) -> None:
    """Write `body` under `## heading` in the Markdown file, keeping its other sections.

    Each bench owns one section, so running one bench does not erase the other's figures.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    sections = [part.strip() for part in re.split(r"(?m)^(?=## )", old) if part.strip()]
    new = f"## {heading}\n\nProduced by `{command}`:\n\n{body.strip()}"
    mine = [i for i, part in enumerate(sections) if part.startswith(f"## {heading}\n")]
    if mine:
        sections[mine[0]] = new
    else:
        sections.append(new)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n", encoding="utf-8")


def load_note(before: float) -> str:
    """How busy the machine was: figures taken under load are lower bounds."""
    after = os.getloadavg()[0]
    return (
        f"- load average (1 min) at start / end: {before:.2f} / {after:.2f} "
        f"on {os.cpu_count()} cores"
    )


def gold(rows: Sequence[Row]) -> dict[str, Hashable]:
    return {row.id: row.story for row in rows}


def exact_titles(rows: Sequence[Row]) -> Metrics:
    return metrics({row.id: fold(row.title) for row in rows}, gold(rows))


def _components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[find(a)] = find(b)
    return [find(i) for i in range(n)]


def all_pairs_single_link_clusters(titles: Sequence[str], threshold: float) -> list[int]:
    """The naive baseline: rapidfuzz token_sort_ratio on every pair of folded titles, single-link.

    Quadratic by construction: this is what the matcher's index must beat.
    """
    folded = [fold(title) for title in titles]
    edges = [
        (i, i + 1 + j)
        for i, title in enumerate(folded)
        for _, _, j in process.extract(
            title, folded[i + 1 :], scorer=fuzz.token_sort_ratio, score_cutoff=threshold, limit=None
        )
    ]
    return _components(len(folded), edges)


def all_pairs_single_link(rows: Sequence[Row]) -> tuple[float, Metrics]:
    """The naive baseline at its best threshold on the set itself (it sees the answers)."""
    titles = [fold(row.title) for row in rows]
    scored: list[tuple[float, int, int]] = []
    for i, title in enumerate(titles):
        for _, score, j in process.extract(
            title, titles[i + 1 :], scorer=fuzz.token_sort_ratio, score_cutoff=50, limit=None
        ):
            scored.append((score, i, i + 1 + j))
    best: tuple[float, Metrics] | None = None
    for threshold in range(50, 100, 5):
        edges = [(i, j) for score, i, j in scored if score >= threshold]
        roots = _components(len(rows), edges)
        result = metrics({row.id: roots[i] for i, row in enumerate(rows)}, gold(rows))
        if best is None or result.bcubed_f1 > best[1].bcubed_f1:
            best = (float(threshold), result)
    assert best is not None
    return best


def matcher(rows: Sequence[Row], granularity: str) -> tuple[Metrics, float]:
    settings = ClusterSettings.model_validate({"granularity": granularity})
    start = time.perf_counter()
    clusters = dedupe(rows, settings)
    elapsed = time.perf_counter() - start
    predicted = {entry.guid: cluster.id for cluster in clusters for entry in cluster.entries}
    return metrics(predicted, gold(rows)), len(rows) / elapsed


def row_line(name: str, method: str, result: Metrics, note: str = "") -> str:
    """One Markdown table row."""
    return (
        f"| {name} | {method} | {result.bcubed_precision:.3f} | {result.bcubed_recall:.3f} "
        f"| {result.bcubed_f1:.3f} | {result.pairwise_f1:.3f} | {note} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    lines = [
        "| set | method | B3 P | B3 R | B3 F1 | pair F1 | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    print("\n".join(lines))
    speed_rows: list[Row] = []
    for name, path, granularity in SETS:
        rows = load_rows(args.data / path)
        if name.startswith("uci"):
            speed_rows.extend(rows)
        threshold, single = all_pairs_single_link(rows)
        result, rate = matcher(rows, granularity)
        for line in (
            row_line(name, "exact title", exact_titles(rows)),
            row_line(name, "all-pairs single-link", single, f"best threshold {threshold:.0f}"),
            row_line(name, f"matcher ({granularity})", result, f"{rate:,.0f} entries/s"),
        ):
            lines.append(line)
            print(line, flush=True)
    lines.append("")
    for granularity in ("event", "story"):
        _, rate = matcher(speed_rows, granularity)
        lines.append(
            f"- speed, uci dev+test ({len(speed_rows):,} entries), {granularity}: "
            f"{rate:,.0f} entries/s"
        )
        print(lines[-1])
    lines.append(load_note(load))
    print(lines[-1])
    command = " ".join(["python", "bench/matcher_quality.py", *sys.argv[1:]])
    replace_section(args.docs, "Matcher quality", command, "\n".join(lines))


if __name__ == "__main__":
    main()
