"""Parse speed: the lxml fast path against feedparser, on the same documents.

Run from the project root:

    python bench/parse_speed.py [--feeds 200] [--items 50] [--repeat 3] [--data DIR]

Two document sets, each parsed in this one process (one core) by
`aggregator.parse.feeds.parse_xml` with `reader="feedparser"` (the old path),
`reader="auto"` (the product: the fast path where it takes the document,
feedparser elsewhere) and, where it takes it, `reader="fast"`:

- generated: RSS 2.0 feeds exactly as bench/fetch_scale.py serves them (its
  `generate`, same seed, Content-Type application/rss+xml; charset=utf-8);
- realworld: the 138 XML feeds saved from real sites in
  ../shared/data/feeds/realworld (JSON Feeds left out), with the Content-Type
  their extension gives.

Prints documents, entries, how many documents the fast path took, and entries/s
for each reader (best of --repeat runs; the load average is printed alongside,
since the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from fetch_scale import HOSTS, generate
from hostile_corpus import TYPES

from aggregator.parse.feeds import FastPathDeclined, Reader, parse_xml
from aggregator.parse.normalize import FeedContext

Document = tuple[bytes, str, FeedContext]


def generated(feeds: int, items: int) -> list[Document]:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp), dict.fromkeys(HOSTS, 8000), feeds, items, seed=1)
        return [
            (
                (Path(tmp) / file.path.lstrip("/")).read_bytes(),
                "application/rss+xml; charset=utf-8",
                FeedContext(url=file.url, outlet=file.outlet, outlet_language="de", now=now),
            )
            for file in files
        ]


def realworld(folder: Path) -> list[Document]:
    now = datetime.now(UTC)
    return [
        (
            path.read_bytes(),
            TYPES.get(path.suffix.lower(), "application/xml"),
            FeedContext(
                url=f"https://example.org/{path.name}", outlet="o", outlet_language=None, now=now
            ),
        )
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in TYPES and path.suffix.lower() != ".json"
    ]


def parse_all(documents: list[Document], reader: Reader) -> tuple[int, int]:
    """(entries, documents parsed); refused documents count as parsed with none."""
    entries = parsed = 0
    for content, content_type, ctx in documents:
        try:
            entries += len(parse_xml(content, content_type, ctx, reader).entries)
            parsed += 1
        except FastPathDeclined:
            continue
        except ValueError:  # ParseError: refused, the same for every reader
            parsed += 1
    return entries, parsed


def best_rate(run: Callable[[], tuple[int, int]], repeat: int) -> tuple[float, int, int]:
    best = float("inf")
    entries = parsed = 0
    for _ in range(repeat):
        started = time.perf_counter()
        entries, parsed = run()
        best = min(best, time.perf_counter() - started)
    return entries / best, entries, parsed


def measure(name: str, documents: list[Document], repeat: int) -> None:
    print(f"\n{name}: {len(documents)} documents")
    for reader in ("feedparser", "auto", "fast"):
        rate, entries, parsed = best_rate(lambda r=reader: parse_all(documents, r), repeat)
        taken = f" ({parsed} taken by the fast path)" if reader == "fast" else ""
        print(f"  {reader:10s} {rate:9,.0f} entries/s  {entries:6d} entries{taken}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/feeds"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average before: {' '.join(os.getloadavg().__repr__().strip('()').split(', '))}")
    measure("generated (fetch_scale.py feeds)", generated(args.feeds, args.items), args.repeat)
    if (args.data / "realworld").is_dir():
        measure("realworld", realworld(args.data / "realworld"), args.repeat)
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
