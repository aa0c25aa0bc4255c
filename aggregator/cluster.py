"""Incremental clustering: which stored entries report the same event.

Entries arrive in order of publication (or close to it). Each new entry is
compared only with entries inside the time window that share informative
tokens with it (an inverted index, evicted as the window moves), scored with
rapidfuzz on normalized titles and leads, and joins the best cluster it is
close to *as a whole*. Exact duplicates (same canonical URL, same normalized
text) short-cut the fuzzy path.

Design choices, all in favour of precision (a wrong merge hides a story, a
missed merge only shows it twice):

- No chaining: an entry joins a cluster when it is strongly similar to one
  member and at least loosely similar to most members, so A~B and B~C do not
  pull A and C together.
- Time is evidence: the score loses points as publication times drift apart,
  because follow-ups with new facts a day later are new events.
- Conflicting numbers in headlines (1:2 vs 2:2, 0,75 vs 0,25) cost points.

Decisions depend only on the items seen so far, in order, so a batch run and
a one-by-one run (or priming from stored state, then adding) agree.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from rapidfuzz import fuzz

from aggregator import text
from aggregator.config import ClusterSettings
from aggregator.models import Match

# Tuned on ../shared/data/german/dev.jsonl (event) and uci/dev.jsonl (story);
# see bench/matcher_quality.py. `ClusterSettings.threshold` overrides.
DEFAULT_THRESHOLDS = {"event": 45.0, "story": 16.0}


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
    # cluster's members must score at least `threshold - support_margin`.
    support_share: float = 0.5
    support_margin: float = 15.0
    # Candidate generation: postings longer than this are too common to block on.
    max_postings: int = 400
    max_candidates: int = 40
    max_members_compared: int = 12
    # Story granularity: cosine with the cluster's IDF-weighted vocabulary
    # (its centroid) instead of member by member.
    use_profile: bool = False


TUNING = {
    "event": Tuning(),
    "story": Tuning(hourly_decay=0.0, number_conflict_penalty=0.0, use_profile=True),
}


@dataclass(frozen=True)
class Features:
    """An item normalized once: what scoring and indexing read."""

    item: Item
    language: str
    title: str  # stems joined by spaces, boilerplate removed
    lead: str
    title_numbers: frozenset[str]
    title_tokens: frozenset[str]
    index_tokens: frozenset[str]
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
        # Weights only change when an item is observed; between observations
        # (one decision) each token's weight is computed once.
        self._memo: dict[str, float] = {}

    def observe(self, tokens: Iterable[str]) -> None:
        self._memo.clear()
        self.documents += 1
        self.counts.update(tokens)
        if len(self.counts) > self.max_tokens:
            for token in [t for t, n in self.counts.items() if n <= 1]:
                del self.counts[token]

    def idf(self, token: str) -> float:
        weight = self._memo.get(token)
        if weight is None:
            weight = math.log((self.documents + 1) / (self.counts[token] + 1)) + 1.0
            self._memo[token] = weight
        return weight


@dataclass(frozen=True)
class Scored:
    score: float
    reason: str


def _join(stems: Iterable[str]) -> str:
    return " ".join(stems)


def featurize(item: Item, boilerplate: text.BoilerplateModel, tuning: Tuning) -> Features:
    """Normalize an item once; `boilerplate` must already have observed its title."""
    raw_title = item.title.strip()
    language = text.language_code(item.language) or text.guess_language(
        f"{raw_title} {item.summary}"
    )
    lead = text.tokens(item.summary, language)[: tuning.lead_tokens]
    title = text.tokens(boilerplate.strip(item.outlet, raw_title), language) if raw_title else []
    weak = len(title) < 2 or text.is_clickbait(raw_title)
    if not title:  # social posts: the text is the headline
        title = lead[:20]
    numbers = frozenset(t for t in title if any(c.isdigit() for c in t))
    folded = text.fold(f"{raw_title} {item.summary}")
    key = folded if len(title) + len(lead) >= 4 else None
    return Features(
        item=item,
        language=language,
        title=_join(title),
        lead=_join(lead),
        title_numbers=numbers,
        title_tokens=frozenset(title),
        index_tokens=frozenset(title) | frozenset(lead),
        text_key=key,
        title_is_weak=weak and bool(lead),
    )


def text_similarity(a: Features, b: Features, tuning: Tuning) -> tuple[float, str]:
    """Title and lead similarity (0-100) combined, with a human-readable breakdown."""
    title = fuzz.token_set_ratio(a.title, b.title)
    if a.lead and b.lead:
        lead = fuzz.token_set_ratio(a.lead, b.lead)
        if a.title_is_weak or b.title_is_weak:
            return lead, f"lead {lead:.0f} (headline too thin)"
        combined = tuning.title_weight * title + (1 - tuning.title_weight) * lead
        return combined, f"title {title:.0f} + lead {lead:.0f}"
    return title, f"title {title:.0f}"


def _containment(part: frozenset[str], whole: frozenset[str], df: DocumentFrequencies) -> float:
    total = sum(df.idf(t) for t in part)
    return sum(df.idf(t) for t in part & whole) / total if total else 0.0


def overlap(a: Features, b: Features, df: DocumentFrequencies) -> float:
    """IDF-weighted share of each headline's tokens found anywhere in the other item, 0-100.

    Paraphrasing outlets keep the rare words (names, places, numbers) of an
    event even when word order and framing differ; the headline of one report
    usually reappears in the other's headline or lead.
    """
    a_in_b = _containment(a.title_tokens, b.index_tokens, df)
    b_in_a = _containment(b.title_tokens, a.index_tokens, df)
    return 50.0 * (a_in_b + b_in_a)


def pair_score(a: Features, b: Features, tuning: Tuning, df: DocumentFrequencies) -> Scored:
    """How likely two items report the same event, 0-100."""
    fuzzy, reason = text_similarity(a, b, tuning)
    shared = overlap(a, b, df)
    similarity = tuning.overlap_weight * shared + (1 - tuning.overlap_weight) * fuzzy
    reason += f", key words {shared:.0f}"
    hours = abs((a.item.published - b.item.published).total_seconds()) / 3600
    penalty = max(0.0, hours - tuning.grace_hours) * tuning.hourly_decay
    if a.title_numbers and b.title_numbers and not a.title_numbers & b.title_numbers:
        penalty += tuning.number_conflict_penalty
        reason += ", numbers differ"
    if penalty:
        reason += f" - {penalty:.0f}"
    score = max(0.0, similarity - penalty)
    return Scored(score, f"{reason} -> {score:.0f}")


@dataclass
class _Window:
    """Items inside the time window, indexed by token, URL and exact text."""

    features: dict[int, Features] = field(default_factory=dict)
    cluster_of: dict[int, int] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)
    profiles: dict[int, Counter[str]] = field(default_factory=dict)
    # Story granularity: cluster -> (centroid norm, member count, documents seen).
    norms: dict[int, tuple[float, int, int]] = field(default_factory=dict)
    postings: dict[str, set[int]] = field(default_factory=dict)
    by_url: dict[str, int] = field(default_factory=dict)
    by_text: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[datetime, int]] = field(default_factory=list)
    newest: datetime | None = None

    def insert(self, features: Features, cluster_id: int) -> None:
        item = features.item
        self.features[item.id] = features
        self.cluster_of[item.id] = cluster_id
        self.members.setdefault(cluster_id, []).append(item.id)
        self.profiles.setdefault(cluster_id, Counter()).update(features.title_tokens)
        for token in features.index_tokens:
            self.postings.setdefault(token, set()).add(item.id)
        if item.canonical_url:
            self.by_url.setdefault(item.canonical_url, item.id)
        if features.text_key:
            self.by_text.setdefault(features.text_key, item.id)
        heapq.heappush(self.heap, (item.published, item.id))
        if self.newest is None or item.published > self.newest:
            self.newest = item.published

    def evict_before(self, horizon: datetime) -> None:
        while self.heap and self.heap[0][0] < horizon:
            _, item_id = heapq.heappop(self.heap)
            features = self.features.pop(item_id)
            cluster_id = self.cluster_of.pop(item_id)
            members = self.members[cluster_id]
            members.remove(item_id)
            self.profiles[cluster_id].subtract(features.title_tokens)
            if not members:
                del self.members[cluster_id]
                del self.profiles[cluster_id]
                self.norms.pop(cluster_id, None)
            for token in features.index_tokens:
                posting = self.postings[token]
                posting.discard(item_id)
                if not posting:
                    del self.postings[token]
            url = features.item.canonical_url
            if url and self.by_url.get(url) == item_id:
                del self.by_url[url]
            if features.text_key and self.by_text.get(features.text_key) == item_id:
                del self.by_text[features.text_key]


class Clusterer:
    """Assigns items to clusters one at a time; state is bounded by the time window."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.window = settings.window_delta
        self.tuning = TUNING[settings.granularity]
        self.threshold = (
            settings.threshold
            if settings.threshold is not None
            else DEFAULT_THRESHOLDS[settings.granularity]
        )
        self.boilerplate = text.BoilerplateModel()
        self.frequencies = DocumentFrequencies()
        self._state = _Window()

    def _featurize(self, item: Item) -> Features:
        self.boilerplate.observe(item.outlet, item.title)
        features = featurize(item, self.boilerplate, self.tuning)
        self.frequencies.observe(features.index_tokens)
        return features

    def _advance(self, published: datetime) -> None:
        newest = self._state.newest
        if newest is None or published > newest:
            newest = published
        # Keep one extra window of history: items may arrive slightly out of order.
        self._state.evict_before(newest - 2 * self.window)

    def prime(self, item: Item, match: Match) -> None:
        """Load an entry clustered earlier (e.g. from the database) without re-deciding it."""
        self._advance(item.published)
        self._state.insert(self._featurize(item), match.cluster_id)

    def add(self, item: Item) -> Match:
        """Assign a new item to an existing cluster or found a new one."""
        self._advance(item.published)
        features = self._featurize(item)
        match = self._decide(features)
        self._state.insert(features, match.cluster_id)
        return match

    def _within(self, a: Item, b: Item) -> bool:
        return abs(a.published - b.published) <= self.window

    def _decide(self, features: Features) -> Match:
        item = features.item
        state = self._state
        for key, index, reason in (
            (item.canonical_url, state.by_url, "same canonical URL"),
            (features.text_key, state.by_text, "same normalized text"),
        ):
            other = index.get(key) if key else None
            if other is not None and self._within(item, state.features[other].item):
                return Match(item.id, state.cluster_of[other], other, 100.0, reason)
        best: tuple[float, int, int, str] | None = None
        for cluster_id, hits in self._candidate_clusters(features).items():
            verdict = self._cluster_score(features, cluster_id, hits)
            if verdict is not None and (best is None or verdict[0] > best[0]):
                best = (verdict[0], cluster_id, verdict[1], verdict[2])
        if best is None:
            return Match(item.id, item.id, None, 100.0, "new cluster")
        score, cluster_id, matched, reason = best
        return Match(item.id, cluster_id, matched, round(score, 1), reason)

    def _candidate_clusters(self, features: Features) -> dict[int, list[int]]:
        """Clusters of the window items sharing the most informative tokens, with those items."""
        state, tuning = self._state, self.tuning
        weight: dict[int, float] = {}
        for token in features.index_tokens:
            posting = state.postings.get(token)
            if not posting or len(posting) > tuning.max_postings:
                continue
            share = 1.0 / len(posting)
            for other in posting:
                weight[other] = weight.get(other, 0.0) + share
        clusters: dict[int, list[int]] = {}
        ranked = heapq.nlargest(tuning.max_candidates, weight, key=lambda o: (weight[o], -o))
        for other in ranked:
            if self._within(features.item, state.features[other].item):
                clusters.setdefault(state.cluster_of[other], []).append(other)
        return clusters

    def _cluster_score(
        self, features: Features, cluster_id: int, hits: list[int]
    ) -> tuple[float, int, str] | None:
        """(score, best member, reason) if the item is close to the cluster as a whole."""
        if self.tuning.use_profile:
            return self._profile_score(features, cluster_id)
        return self._members_score(features, cluster_id, hits)

    def _profile_score(self, features: Features, cluster_id: int) -> tuple[float, int, str] | None:
        """Story granularity: cosine of the headline with the cluster's centroid (TF-IDF).

        Comparing with the cluster's vocabulary rather than one member lets a
        story drift over its sub-events (a merger, then its approval) while an
        item that shares words with a single member only still stays out.
        """
        state, df = self._state, self.frequencies
        members = state.members[cluster_id]
        profile = state.profiles[cluster_id]
        weights = {t: df.idf(t) for t in features.title_tokens}
        norm = math.sqrt(sum(w * w for w in weights.values()))
        centroid_norm = self._centroid_norm(cluster_id)
        if not norm or not centroid_norm:
            return None
        dot = sum(w * profile[t] * w for t, w in weights.items() if profile[t] > 0)
        score = 100.0 * dot / (norm * centroid_norm)
        if score < self.threshold:
            return None
        matched = max(
            (state.features[m] for m in members[-self.tuning.max_members_compared :]),
            key=lambda m: (len(m.title_tokens & features.title_tokens), -m.item.id),
        )
        reason = f"shares {score:.0f}% of the story's key words ({len(members)} members)"
        return score, matched.item.id, reason

    def _centroid_norm(self, cluster_id: int) -> float:
        """Length of the cluster's TF-IDF centroid, recomputed when the cluster changed
        or the collection grew by 5 % (IDF drifts slowly; this is the hot loop)."""
        state, df = self._state, self.frequencies
        size = len(state.members[cluster_id])
        cached = state.norms.get(cluster_id)
        if cached is not None and cached[1] == size and df.documents <= cached[2] * 1.05:
            return cached[0]
        profile = state.profiles[cluster_id]
        norm = math.sqrt(sum((n * df.idf(t)) ** 2 for t, n in profile.items() if n > 0))
        state.norms[cluster_id] = (norm, size, df.documents)
        return norm

    def _members_score(
        self, features: Features, cluster_id: int, hits: list[int]
    ) -> tuple[float, int, str] | None:
        """Event granularity: a strong match with one member, support from most of them.

        The members the index found are scored first; the rest of the cluster
        is only scored (for the support check) when one of them passes.
        """
        state, tuning = self._state, self.tuning

        def score(member: int) -> tuple[Scored, int]:
            return pair_score(features, state.features[member], tuning, self.frequencies), member

        scored = [score(m) for m in hits]
        top, matched = max(scored, key=lambda s: (s[0].score, -s[1]))
        if top.score < self.threshold:
            return None
        recent = state.members[cluster_id][-tuning.max_members_compared :]
        scored += [
            score(m)
            for m in recent
            if m not in hits and self._within(features.item, state.features[m].item)
        ]
        floor = self.threshold - tuning.support_margin
        support = sum(s.score >= floor for s, _ in scored) / len(scored)
        if support <= tuning.support_share:
            return None
        reason = top.reason
        if len(scored) > 1:
            reason += f" ({sum(s.score >= floor for s, _ in scored)}/{len(scored)} members agree)"
        return top.score, matched, reason


def cluster_items(items: Iterable[Item], settings: ClusterSettings) -> list[Match]:
    """Batch clustering: exactly `Clusterer.add` applied in order."""
    clusterer = Clusterer(settings)
    return [clusterer.add(item) for item in items]


class PairScorer:
    """Scores any two of a fixed set of items as the clusterer would (for reports).

    Items are normalized in the given order, as `Clusterer.add` would see them.
    """

    def __init__(self, items: Iterable[Item], settings: ClusterSettings) -> None:
        self.tuning = TUNING[settings.granularity]
        boilerplate = text.BoilerplateModel()
        self.frequencies = DocumentFrequencies()
        self._features: dict[int, Features] = {}
        for item in items:
            boilerplate.observe(item.outlet, item.title)
            features = featurize(item, boilerplate, self.tuning)
            self.frequencies.observe(features.index_tokens)
            self._features[item.id] = features

    def __call__(self, a: int, b: int) -> Scored:
        return pair_score(self._features[a], self._features[b], self.tuning, self.frequencies)
