"""The JSON shape of clusters (`aggregator.digest/1`), shared by digests and `dedupe`.

Other tools read this format (ARCHITECTURE.md, "Contracts"): keys are only ever added.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rapidfuzz import fuzz

from aggregator.models import Cluster, Digest, Entry

SCHEMA = "aggregator.digest/1"


def isoformat(moment: datetime) -> str:
    """UTC timestamps as ``2026-11-25T06:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def representative(cluster: Cluster) -> Entry:
    """The headline that stands for the cluster: the member most similar to the others.

    A medoid rather than the first report, because early reports are often
    teasers ("Eilmeldung: ...") while the medoid is the wording most outlets share.
    """
    written = [e for e in cluster.entries if e.title and not _derived_title(e)]
    entries = written or [e for e in cluster.entries if e.title] or cluster.entries
    if len(entries) <= 2:
        return min(entries, key=lambda e: (e.published, e.id or 0))

    def centrality(entry: Entry) -> float:
        return sum(fuzz.token_set_ratio(entry.title, other.title) for other in entries)

    return max(entries, key=lambda e: (centrality(e), -e.published.timestamp()))


def _derived_title(entry: Entry) -> bool:
    """Whether the title was made from the text (a social post without a title).

    Such titles are cut mid-sentence; an outlet's own headline reads better.
    """
    stem = entry.title.rstrip("…").rstrip()
    return bool(stem) and entry.summary.startswith(stem)


def headline(entry: Entry) -> str:
    """The entry's title without a trailing outlet name ("… | tagesschau.de", "… - news.de")."""
    name = entry.outlet.lower().removeprefix("www.").split(".")[0]
    for separator in (" | ", " - ", " – ", " — "):
        head, found, tail = entry.title.rpartition(separator)
        if found and head and name and name in tail.lower() and len(tail) <= 40:
            return head.rstrip()
    return entry.title


def entry_record(entry: Entry, cluster: Cluster) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": entry.guid,
        "url": entry.link,
        "title": entry.title,
        "outlet": entry.outlet,
        "published": isoformat(entry.published),
    }
    match = cluster.matches.get(entry.id) if entry.id is not None else None
    if match is not None and match.matched_id is not None:
        matched = next((e for e in cluster.entries if e.id == match.matched_id), None)
        record["matched"] = {
            "id": matched.guid if matched else None,
            "score": round(match.score, 1),
            "reason": match.reason,
        }
    return record


def cluster_record(cluster: Cluster) -> dict[str, Any]:
    """One cluster as the JSON contract describes it, entries in order of publication."""
    entries = sorted(cluster.entries, key=lambda e: (e.published, e.id or 0))
    first = cluster.first
    return {
        "id": cluster.id,
        "title": headline(representative(cluster)),
        "outlets": cluster.outlets,
        "first_seen": isoformat(first.published),
        "first_outlet": first.outlet,
        "size": len(entries),
        "entries": [entry_record(entry, cluster) for entry in entries],
    }


def digest_record(digest: Digest) -> dict[str, Any]:
    """A whole digest as JSON: every cluster of the period, with no display limit applied."""
    return {
        "schema": SCHEMA,
        "name": digest.name,
        "title": digest.title or digest.name,
        "period": {"start": isoformat(digest.period_start), "end": isoformat(digest.period_end)},
        "generated_at": isoformat(digest.generated_at),
        "clusters": [cluster_record(cluster) for cluster in digest.clusters],
    }
