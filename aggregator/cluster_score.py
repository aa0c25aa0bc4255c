"""Pair scores: how likely two entries report the same event, 0-100.

An entry is normalized once on arrival into `Features` (stems of headline and
lead, their IDF weights at that moment, numbers, an exact-duplicate key), so
that scoring a pair is two rapidfuzz calls and a few set lookups. Weights are
frozen when an item arrives: decisions then depend only on the items seen
before, which keeps a batch run and a one-by-one run identical.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from rapidfuzz import fuzz

from aggregator import text


@dataclass(frozen=True)
class Item:
    """What the matcher needs of an entry."""

    id: int
    outlet: str
    title: str
    summary: str
    published: datetime
    canonical_url: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Tuning:
    """How pair scores are made and combined; defaults chosen on the dev files.

    Kept apart from `ClusterSettings` (what users configure) because these
    numbers only make sense together and are re-tuned as a set.
    """

    title_weight: float = 0.4
    # Share of the score from IDF-weighted token containment (the rest: rapidfuzz).
    overlap_weight: float = 0.4
    lead_tokens: int = 40
    # Points lost per hour of publication-time difference beyond `grace_hours`.
    hourly_decay: float = 1.5
    grace_hours: float = 12.0
    number_conflict_penalty: float = 12.0
    # No chaining: besides one strong match, more than this share of the
    # sampled members must score at least `threshold - support_margin`.
    support_share: float = 0.5
    support_margin: float = 15.0
    # Candidate generation: a token found in more clusters than this is too
    # common to block on; only the clusters sharing the most weight are scored.
    max_postings: int = 300
    max_candidates: int = 4
    # A cluster sharing less than this share of the item's token weight is not
    # scored at all (on German dev no accepted join shares less than 0.15).
    min_shared: float = 0.1
    # Members scored per candidate cluster: the oldest in the window (the
    # cluster's anchor) and the most recent ones. Bounded, so a big cluster
    # costs what a small one does.
    sample_size: int = 3
    # Story granularity: cosine with the cluster's IDF-weighted vocabulary
    # (its centroid) instead of member by member.
    use_profile: bool = False


@dataclass(frozen=True, slots=True)
class Features:
    """An item normalized once: what scoring and indexing read."""

    item: Item
    language: str
    title: str  # stems joined by spaces, boilerplate removed
    lead: str
    title_numbers: frozenset[str]
    title_tokens: frozenset[str]
    # Title and lead tokens -> IDF when the item arrived (also the index keys).
    weights: dict[str, float]
    title_mass: float  # sum of the title tokens' weights
    index_mass: float  # sum of all weights
    title_norm: float  # Euclidean length of the title tokens' weights
    weighed_at: int  # documents seen when `weights` were computed
    hours: float  # publication time, hours since the epoch
    text_key: str | None  # exact-duplicate key, None when too short to trust
    title_is_weak: bool  # clickbait or near-empty: the lead decides


class DocumentFrequencies:
    """How many items seen so far contain each token, for IDF weights.

    Counts every item ever observed (not just the window) so that weights are
    stable on small feeds; memory is bounded by forgetting tokens seen once
    when the table grows past `max_tokens`.
    """

    def __init__(self, max_tokens: int = 500_000) -> None:
        self.documents = 0
        self.counts: Counter[str] = Counter()
        self.max_tokens = max_tokens

    def observe(self, tokens: Iterable[str]) -> None:
        self.documents += 1
        self.counts.update(tokens)
        if len(self.counts) > self.max_tokens:
            for token in [t for t, n in self.counts.items() if n <= 1]:
                del self.counts[token]

    def idf(self, token: str) -> float:
        return math.log((self.documents + 1) / (self.counts[token] + 1)) + 1.0

    def stale(self, features: Features, growth: float = 1.02) -> bool:
        """Whether the collection grew enough since `features` were weighed to weigh them again.

        IDF drifts slowly once a few hundred items were seen, so weights are
        refreshed only after the collection grew by `growth`: on a small file
        the first items' flat weights are corrected, on a long stream rarely.
        """
        return self.documents > features.weighed_at * growth


def _weigh(
    tokens: Iterable[str], title_tokens: frozenset[str], frequencies: DocumentFrequencies
) -> tuple[dict[str, float], float, float, float]:
    """Weights by token, and the title's mass and length, and the total mass."""
    weights = {token: frequencies.idf(token) for token in tokens}
    title_weights = [weights[token] for token in title_tokens]
    return (
        weights,
        sum(title_weights),
        math.sqrt(sum(w * w for w in title_weights)),
        sum(weights.values()),
    )


def reweigh(features: Features, frequencies: DocumentFrequencies) -> Features:
    """The same features with IDF weights of the collection as it is now."""
    weights, mass, norm, total = _weigh(features.weights, features.title_tokens, frequencies)
    return replace(
        features,
        weights=weights,
        title_mass=mass,
        index_mass=total,
        title_norm=norm,
        weighed_at=frequencies.documents,
    )


def featurize(
    item: Item, boilerplate: text.BoilerplateModel, frequencies: DocumentFrequencies, tuning: Tuning
) -> Features:
    """Normalize an item once, observing its title and tokens in the running statistics."""
    boilerplate.observe(item.outlet, item.title)
    raw_title = item.title.strip()
    # Outlet boilerplate ("| site.example") says nothing about the language either.
    headline = boilerplate.strip(item.outlet, raw_title) if raw_title else ""
    language = text.language_code(item.language) or text.guess_language(
        f"{headline} {item.summary}"
    )
    lead = text.tokens(item.summary, language)[: tuning.lead_tokens]
    title = text.tokens(headline, language)
    weak = len(title) < 2 or text.is_clickbait(raw_title)
    if not title:  # social posts: the text is the headline
        title = lead[:20]
    title_tokens = frozenset(title)
    index_tokens = title_tokens | frozenset(lead)
    frequencies.observe(index_tokens)
    weights, mass, norm, total = _weigh(sorted(index_tokens), title_tokens, frequencies)
    title_text, lead_text = " ".join(title), " ".join(lead)
    return Features(
        item=item,
        language=language,
        title=title_text,
        lead=lead_text,
        # Number tokens are the only ones with characters other than letters.
        title_numbers=frozenset(t for t in title_tokens if not t.isalpha()),
        title_tokens=title_tokens,
        weights=weights,
        title_mass=mass,
        index_mass=total,
        title_norm=norm,
        weighed_at=frequencies.documents,
        hours=item.published.timestamp() / 3600,
        # Same stems in the same order, outlet boilerplate removed: a syndicated
        # copy (agency text under another outlet's name) or a re-post.
        text_key=f"{title_text}\n{lead_text}" if len(title) + len(lead) >= 4 else None,
        title_is_weak=weak and bool(lead),
    )


def _fuzzy(a: Features, b: Features, tuning: Tuning) -> tuple[float, float | None]:
    """rapidfuzz similarity (0-100) of title and lead combined, and the lead's part."""
    title = fuzz.token_set_ratio(a.title, b.title)
    if not (a.lead and b.lead):
        return title, None
    lead = fuzz.token_set_ratio(a.lead, b.lead)
    if a.title_is_weak or b.title_is_weak:
        return lead, lead
    return tuning.title_weight * title + (1 - tuning.title_weight) * lead, lead


def _containment(part: Features, whole: Features) -> float:
    """IDF-weighted share of `part`'s headline tokens found anywhere in `whole`."""
    if not part.title_mass:
        return 0.0
    found = whole.weights
    weights = part.weights
    return sum(weights[t] for t in part.title_tokens if t in found) / part.title_mass


def overlap(a: Features, b: Features) -> float:
    """Each headline's rare words found in the other item, 0-100.

    Paraphrasing outlets keep the rare words (names, places, numbers) of an
    event even when word order and framing differ; the headline of one report
    usually reappears in the other's headline or lead.
    """
    return 50.0 * (_containment(a, b) + _containment(b, a))


def _penalty(a: Features, b: Features, tuning: Tuning) -> tuple[float, bool]:
    """Points lost for drifting publication times and for conflicting headline numbers."""
    penalty = max(0.0, abs(a.hours - b.hours) - tuning.grace_hours) * tuning.hourly_decay
    conflict = bool(a.title_numbers and b.title_numbers and not a.title_numbers & b.title_numbers)
    return penalty + (tuning.number_conflict_penalty if conflict else 0.0), conflict


def pair_score(a: Features, b: Features, tuning: Tuning) -> float:
    """How likely two items report the same event, 0-100 (the clusterer's hot path)."""
    fuzzy, _ = _fuzzy(a, b, tuning)
    similarity = tuning.overlap_weight * overlap(a, b) + (1 - tuning.overlap_weight) * fuzzy
    return max(0.0, similarity - _penalty(a, b, tuning)[0])


def explain_pair(a: Features, b: Features, tuning: Tuning) -> str:
    """`pair_score` as a human-readable breakdown, computed only for reported matches."""
    title = fuzz.token_set_ratio(a.title, b.title)
    _, lead = _fuzzy(a, b, tuning)
    if lead is None:
        reason = f"title {title:.0f}"
    elif a.title_is_weak or b.title_is_weak:
        reason = f"lead {lead:.0f} (headline too thin)"
    else:
        reason = f"title {title:.0f} + lead {lead:.0f}"
    reason += f", key words {overlap(a, b):.0f}"
    penalty, conflict = _penalty(a, b, tuning)
    if conflict:
        reason += ", numbers differ"
    if penalty:
        reason += f" - {penalty:.0f}"
    return f"{reason} -> {pair_score(a, b, tuning):.0f}"


@dataclass(frozen=True)
class Scored:
    score: float
    reason: str
