"""Offline clustering of an exported file: `run.py dedupe FILE [--gold] [--explain]`.

Reads JSONL or CSV rows (id, title, summary, url, outlet, published, optional
story and lang), clusters them with the same `Clusterer` the pipeline uses,
and returns `Cluster` objects that `aggregator.digest.records.cluster_record`
renders. With gold `story` labels it reports how good the clustering is and
where it went wrong, which is how thresholds are checked on new data.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator.cluster import Clusterer, Item, PairScorer, resolve_merges
from aggregator.config import ClusterSettings
from aggregator.evaluate import metrics, pair_errors
from aggregator.models import Cluster, Entry, Match
from aggregator.parse.urls import canonical_url

FIELDS = ("id", "title", "summary", "url", "outlet", "published")
REQUIRED = ("id", "title", "published")


class DedupeInputError(ValueError):
    """A row of the input file cannot be used; the message names file and line."""


@dataclass(frozen=True)
class Row:
    """One input record, validated."""

    id: str
    title: str
    summary: str
    url: str
    outlet: str
    published: datetime
    story: str | None = None
    language: str | None = None
    line: int = 0


def parse_published(value: str) -> datetime:
    """ISO 8601 date or date-time; naive values are taken as UTC."""
    moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row(record: dict[str, Any], where: str) -> Row:
    if not isinstance(record, dict):
        raise DedupeInputError(f"{where}: expected an object with fields {', '.join(FIELDS)}")
    missing = [name for name in REQUIRED if record.get(name) in (None, "")]
    if missing:
        raise DedupeInputError(f"{where}: missing field {missing[0]!r}")
    try:
        published = parse_published(str(record["published"]))
    except ValueError:
        raise DedupeInputError(
            f"{where}: published {record['published']!r} is not an ISO 8601 date"
        ) from None

    def text(name: str) -> str:
        value = record.get(name)
        return "" if value is None else str(value)

    story = record.get("story")
    language = record.get("lang") or record.get("language")
    return Row(
        id=text("id"),
        title=text("title"),
        summary=text("summary"),
        url=text("url"),
        outlet=text("outlet"),
        published=published,
        story=None if story in (None, "") else str(story),
        language=str(language) if language else None,
        line=int(where.rsplit(":", 1)[1]),
    )


def _jsonl(path: Path, lines: Iterable[str]) -> Iterator[Row]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DedupeInputError(f"{where}: not valid JSON ({exc.msg})") from None
        yield _row(record, where)


def _csv(path: Path, lines: Iterable[str]) -> Iterator[Row]:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or not set(REQUIRED) <= set(reader.fieldnames):
        raise DedupeInputError(f"{path}:1: CSV header must name the columns {', '.join(FIELDS)}")
    for record in reader:
        where = f"{path}:{reader.line_num}"
        if None in record:
            raise DedupeInputError(f"{where}: more values than header columns")
        yield _row(record, where)


def load_rows(path: Path) -> list[Row]:
    """Rows of a JSONL or CSV file (by suffix; otherwise by its first character)."""
    try:
        content = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DedupeInputError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DedupeInputError(f"{path}: cannot read: {exc}") from None
    is_csv = path.suffix.lower() == ".csv" or (
        path.suffix.lower() not in (".jsonl", ".json", ".ndjson")
        and not content.lstrip().startswith("{")
    )
    lines = content.splitlines(keepends=is_csv)
    rows = list(_csv(path, lines) if is_csv else _jsonl(path, lines))
    seen: dict[str, int] = {}
    for row in rows:
        if row.id in seen:
            raise DedupeInputError(
                f"{path}:{row.line}: duplicate id {row.id!r} (first on line {seen[row.id]})"
            )
        seen[row.id] = row.line
    return rows


def to_entries(rows: Iterable[Row]) -> list[tuple[Row, Entry]]:
    """Rows as entries sorted by publication, with ids 0..n-1 in that order."""
    ordered = sorted(enumerate(rows), key=lambda pair: (pair[1].published, pair[0]))
    return [
        (
            row,
            Entry(
                guid=row.id,
                url=row.url or None,
                # As the parse stage does: tracking parameters and host case say nothing.
                canonical_url=canonical_url(row.url) if row.url else None,
                title=row.title,
                summary=row.summary,
                published=row.published,
                language=row.language,
                outlet=row.outlet,
                id=number,
            ),
        )
        for number, (_, row) in enumerate(ordered)
    ]


def to_items(rows: Iterable[Row]) -> list[tuple[Row, Item]]:
    """Rows as matcher items, sorted by publication, with ids 0..n-1 in that order."""
    return [(row, Item.from_entry(entry)) for row, entry in to_entries(rows)]


def dedupe(rows: Iterable[Row], settings: ClusterSettings) -> list[Cluster]:
    """Cluster the rows; clusters in order of their first report, story merges applied."""
    clusterer = Clusterer(settings)
    entries = [entry for _, entry in to_entries(rows)]
    issued = list(clusterer.add_many([Item.from_entry(entry) for entry in entries]))
    matches = resolve_merges(issued, clusterer.take_merges())
    clusters: dict[int, Cluster] = {}
    for entry, match in zip(entries, matches, strict=True):
        entry.cluster_id = match.cluster_id
        cluster = clusters.setdefault(match.cluster_id, Cluster(id=match.cluster_id))
        cluster.entries.append(entry)
        cluster.matches[match.entry_id] = match
    return list(clusters.values())


def explain(clusters: Iterable[Cluster]) -> str:
    """Per entry: its cluster, the member it matched and why."""
    lines: list[str] = []
    for cluster in clusters:
        guid_of = {entry.id: entry.guid for entry in cluster.entries}
        for entry in cluster.entries:
            match = cluster.matches.get(entry.id) if entry.id is not None else None
            lines.append(_explain_line(entry, cluster.id, match, guid_of))
    return "\n".join(lines)


def _explain_line(
    entry: Entry, cluster_id: int, match: Match | None, guid_of: dict[int | None, str]
) -> str:
    head = f"{entry.guid}\tcluster {cluster_id}\t"
    if match is None or match.matched_id is None:
        return head + "founds the cluster"
    return (
        f"{head}matched {guid_of.get(match.matched_id, match.matched_id)} "
        f"score {match.score:.1f} ({match.reason})"
    )


def gold_report(
    rows: list[Row],
    clusters: list[Cluster],
    settings: ClusterSettings | None = None,
    limit: int = 10,
) -> str:
    """Metrics against the rows' `story` labels, plus the worst false merges and missed pairs."""
    unlabelled = next((row for row in rows if row.story is None), None)
    if unlabelled is not None:
        raise DedupeInputError(
            f"line {unlabelled.line}: row {unlabelled.id!r} has no 'story' label (needed by --gold)"
        )
    gold = {row.id: row.story for row in rows}
    predicted = {entry.guid: cluster.id for cluster in clusters for entry in cluster.entries}
    by_guid = {row.id: (row, item) for row, item in to_items(rows)}
    scorer = PairScorer(
        [item for _, item in by_guid.values()], settings or ClusterSettings.model_validate({})
    )

    def score(a: str, b: str) -> float:
        return scorer(by_guid[a][1].id, by_guid[b][1].id).score

    false_merges, missed = pair_errors(predicted, gold, score, limit)
    out = [metrics(predicted, gold).line()]
    for heading, errors in (("worst false merges", false_merges), ("missed pairs", missed)):
        out.append(f"{heading} ({len(errors)} shown):")
        for error in errors:
            a, b = by_guid[str(error.a)][0], by_guid[str(error.b)][0]
            out.append(
                f"  {error.score:5.1f}  {a.id} [{a.story}] {a.title!r}\n"
                f"         {b.id} [{b.story}] {b.title!r}"
            )
        if not errors:
            out.append("  none")
    return "\n".join(out)
