"""Incremental clustering: which stored entries report the same event.

Entries arrive in order of publication (or close to it). Each new entry is
normalized once, compared only with the clusters inside the time window that
share informative tokens with it (an inverted index from token to cluster,
evicted as the window moves), and joins the best cluster it is close to *as a
whole*. Exact duplicates (same canonical URL, same normalized text) short-cut
the fuzzy path.

Design choices, all in favour of precision (a wrong merge hides a story, a
missed merge only shows it twice):

- No chaining: an entry joins a cluster when it is strongly similar to one
  member and at least loosely similar to most of a bounded sample of members
  (the oldest in the window, which anchors what the cluster is about, and the
  most recent), so A~B and B~C do not pull A and C together.
- Time is evidence: the score loses points as publication times drift apart,
  because follow-ups with new facts a day later are new events.
- Conflicting numbers in headlines (1:2 vs 2:2, 0,75 vs 0,25) cost points.
- Story granularity compares with the cluster's centroid. Clusters founded
  in parallel before a story's vocabulary settled merge when their centroids
  come closer than an entry must be to join (`Merge`, `take_merges`); an
  event cluster never merges.

Cost per entry is bounded: a few clusters are scored, a few members each, so
throughput does not fall as clusters grow. Decisions depend only on the items
seen so far, in order, so a batch run and a one-by-one run (or priming from
stored state, then adding) agree.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import Counter, deque
from collections.abc import Generator, Iterable, Sequence, Sized
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TypeVar

from aggregator import cluster_ahead, cluster_pairs, cluster_tokens, text
from aggregator.cluster_index import ClusterIndex
from aggregator.cluster_score import (
    STEPS,
    DocumentFrequencies,
    Features,
    Fuzzy,
    Scored,
    Tuning,
    explain_pair,
    featurize,
    pair_score,
    reread,
    reweigh,
)
from aggregator.config import ClusterSettings
from aggregator.models import Item, Match

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TUNING",
    "Clusterer",
    "Item",
    "Merge",
    "PairScorer",
    "cluster_items",
    "resolve_merges",
]

# Tuned on ../shared/data/german/dev.jsonl (event) and uci/dev.jsonl (story);
# see bench/matcher_quality.py. `ClusterSettings.threshold` overrides.
DEFAULT_THRESHOLDS = {"event": 45.0, "story": 20.0}

TUNING = {
    "event": Tuning(),
    # A story's clusters are broad, so more of them share words with an entry.
    "story": Tuning(
        hourly_decay=0.0,
        number_conflict_penalty=0.0,
        use_profile=True,
        max_candidates=10,
        merge_threshold=25.0,
    ),
}


_Key = TypeVar("_Key", str, bytes)


@dataclass(slots=True)
class _Cluster:
    """A cluster's members inside the window and what its centroid needs of them."""

    members: deque[int] = field(default_factory=deque)
    # Story centroid: title token -> members having it, and the centroid's squared
    # TF-IDF length, kept up to date as members come and go and recomputed in
    # full when the collection grew by 5 % (IDF drifts slowly).
    profile: Counter[str] = field(default_factory=Counter)
    sumsq: float = 0.0
    normed_at: int = 0

    def update_profile(
        self, features: Features, sign: int, frequencies: DocumentFrequencies
    ) -> None:
        profile = self.profile
        for token in features.title_tokens:
            old = profile[token]
            new = old + sign
            self.sumsq += (new * new - old * old) * frequencies.idf(token) ** 2
            if new:
                profile[token] = new
            else:
                del profile[token]
        self.sumsq = max(self.sumsq, 0.0)

    def centroid_norm(self, frequencies: DocumentFrequencies) -> float:
        if frequencies.documents > self.normed_at * 1.05:
            self.sumsq = sum((n * frequencies.idf(t)) ** 2 for t, n in self.profile.items())
            self.normed_at = frequencies.documents
        return math.sqrt(self.sumsq)


@dataclass
class _Window:
    """Items inside the time window, indexed by token (per cluster), URL and exact text."""

    frequencies: DocumentFrequencies
    use_profile: bool
    features: dict[int, Features] = field(default_factory=dict)
    cluster_of: dict[int, int] = field(default_factory=dict)
    clusters: dict[int, _Cluster] = field(default_factory=dict)
    index: ClusterIndex = field(default_factory=ClusterIndex)
    by_url: dict[str, int] = field(default_factory=dict)
    by_text: dict[bytes, int] = field(default_factory=dict)
    heap: list[tuple[datetime, int]] = field(default_factory=list)
    newest: datetime | None = None

    def insert(self, features: Features, cluster_id: int) -> None:
        if features.id in self.features:
            raise ValueError(f"entry {features.id} is already in the matcher's window")
        self.features[features.id] = features
        self.cluster_of[features.id] = cluster_id
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            cluster = self.clusters[cluster_id] = _Cluster()
        self.index.add(cluster_id, features.tokens)
        cluster.members.append(features.id)
        if self.use_profile:
            cluster.update_profile(features, 1, self.frequencies)
        self._remember_keys(features)
        heapq.heappush(self.heap, (features.published, features.id))
        if self.newest is None or features.published > self.newest:
            self.newest = features.published

    def refresh(self, fresh: Sequence[Features]) -> None:
        """Swap entries' features for `fresh` ones (same ids and times), each in its cluster.

        Everything the window derives from features follows: the token index,
        the story centroid, and the URL and exact-text keys. Every key an
        edited entry had or has points again at the newest entry holding it,
        as in a window primed from the stored texts (one pass over the window:
        edits arrive a few at a time, and two of them may trade a key).
        """
        urls: set[str] = set()
        texts: set[bytes] = set()
        for new in fresh:
            old = self.features[new.id]
            cluster_id = self.cluster_of[new.id]
            self.features[new.id] = new
            # Added first, so tokens the edit kept are not dropped from the index and re-added.
            self.index.add(cluster_id, new.tokens)
            self.index.remove(cluster_id, old.tokens)
            if self.use_profile:
                cluster = self.clusters[cluster_id]
                cluster.update_profile(old, -1, self.frequencies)
                cluster.update_profile(new, 1, self.frequencies)
            for features in (old, new):
                if features.canonical_url:
                    urls.add(features.canonical_url)
                if features.text_key:
                    texts.add(features.text_key)
        if not urls and not texts:
            return
        for url in urls:
            self.by_url.pop(url, None)
        for text_key in texts:
            self.by_text.pop(text_key, None)
        for features in self.features.values():
            if features.canonical_url in urls:
                self._remember(self.by_url, features.canonical_url, features)
            if features.text_key in texts:
                self._remember(self.by_text, features.text_key, features)

    def _remember_keys(self, features: Features) -> None:
        if features.canonical_url:
            self._remember(self.by_url, features.canonical_url, features)
        if features.text_key:
            self._remember(self.by_text, features.text_key, features)

    def _forget_keys(self, features: Features) -> None:
        """Drop the URL and text keys that lead to `features`' entry."""
        url, text_key = features.canonical_url, features.text_key
        if url and self.by_url.get(url) == features.id:
            del self.by_url[url]
        if text_key and self.by_text.get(text_key) == features.id:
            del self.by_text[text_key]

    def _remember(self, index: dict[_Key, int], key: _Key, features: Features) -> None:
        """Point `key` at the copy that leaves the window last, the newest.

        A copy keeps finding its cluster by URL or text for as long as any
        copy is in the window, and is compared in time with the closest one:
        an outlet updating a story for days under one URL stays one story.
        """
        current = index.get(key)
        if current is None or (self.features[current].published, current) < (
            features.published,
            features.id,
        ):
            index[key] = features.id

    def merge(self, absorbed: int, into: int) -> None:
        """Move every member, index entry and centroid count of `absorbed` to `into`."""
        gone, target = self.clusters.pop(absorbed), self.clusters[into]
        for item_id in gone.members:
            self.cluster_of[item_id] = into
        # Oldest first, as `_Cluster.members` is kept: the sample's anchor stays the oldest.
        target.members = deque(
            sorted((*target.members, *gone.members), key=lambda m: (self.features[m].hours, m))
        )
        self.index.merge(absorbed, into)
        target.profile.update(gone.profile)
        target.normed_at = 0  # the centroid's length is recomputed on next use

    def evict_before(self, horizon: datetime) -> None:
        while self.heap and self.heap[0][0] < horizon:
            _, item_id = heapq.heappop(self.heap)
            features = self.features.pop(item_id)
            cluster_id = self.cluster_of.pop(item_id)
            cluster = self.clusters[cluster_id]
            if cluster.members[0] == item_id:
                cluster.members.popleft()
            else:
                cluster.members.remove(item_id)
            self.index.remove(cluster_id, features.tokens)
            if not cluster.members:
                del self.clusters[cluster_id]
            elif self.use_profile:
                cluster.update_profile(features, -1, self.frequencies)
            self._forget_keys(features)


@dataclass(frozen=True)
class Merge:
    """Two clusters found to report one story: every entry of `absorbed` now belongs to `into`.

    `into` is the older cluster (the smaller id), so ids already shown stay
    valid for the bigger part of a story. `score` is the cosine (0-100) of
    the two clusters' IDF-weighted headline vocabularies.
    """

    absorbed: int
    into: int
    score: float

    @property
    def reason(self) -> str:
        """How the absorbed cluster's founder explains where it went."""
        return f"its cluster merged: story key words {self.score:.0f}% alike"


@dataclass(frozen=True)
class _Verdict:
    score: float
    cluster_id: int
    matched: int
    note: str
    # The rapidfuzz parts of the score with `matched` (exact: the score reached the threshold).
    parts: Fuzzy | None = None


class Clusterer:
    """Assigns items to clusters one at a time; state is bounded by the time window."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.window = settings.window_delta
        self.window_hours = self.window.total_seconds() / 3600
        # A quarter window of slack: items may arrive slightly out of order.
        self._kept = self.window * 1.25
        self.tuning = TUNING[settings.granularity]
        self.threshold = (
            settings.threshold
            if settings.threshold is not None
            else DEFAULT_THRESHOLDS[settings.granularity]
        )
        self.boilerplate = text.BoilerplateModel()
        self.frequencies = DocumentFrequencies()
        self._state = _Window(self.frequencies, use_profile=self.tuning.use_profile)
        self._merges: list[Merge] = []

    def _featurize(self, item: Item) -> Features:
        return featurize(item, self.boilerplate, self.frequencies, self.tuning)

    def _advance(self, published: datetime) -> None:
        newest = self._state.newest
        if newest is None or published > newest:
            newest = published
        self._state.evict_before(newest - self._kept)

    def prime(self, item: Item, match: Match) -> None:
        """Load an entry clustered earlier (e.g. from the database) without re-deciding it."""
        self.prime_many([(item, match)])

    def add(self, item: Item) -> Match:
        """Assign a new item to an existing cluster or found a new one.

        At story granularity the cluster it joined may then absorb a parallel
        cluster of the same story (see `take_merges`); the returned match
        names the surviving cluster.
        """
        self._advance(item.published)
        return self._place(self._featurize(item))

    def add_many(
        self, items: Iterable[Item], count: int | None = None
    ) -> Generator[Match, None, None]:
        """`add` for each item in order, lazily; a long batch is normalized in a second process.

        `count` (how many items there are; `len(items)` if not given) decides
        whether a second process pays. The matches, merges and the state left
        behind are those of calling `add` item by item. Until the iterator is
        exhausted or closed, nothing else may be added, primed or refreshed.
        """
        with contextlib.closing(self._normalized(items, count)) as normalized:
            for features in normalized:
                yield self._place(features)

    def prime_many(self, clustered: Sequence[tuple[Item, Match]]) -> None:
        """`prime` for each (item, match) in order; a long window is normalized in parallel."""
        with contextlib.closing(self._normalized([item for item, _ in clustered])) as normalized:
            for features, (_, match) in zip(normalized, clustered, strict=True):
                self._state.insert(features, match.cluster_id)

    def refresh(self, items: Iterable[Item]) -> int:
        """Read entries of the window again after their headline or lead changed; how many were.

        An outlet editing a story keeps the entry in its cluster, but later
        entries must be compared with what it says now, as they would be in a
        window primed from the stored texts. Its features are made from the
        new text with the statistics as they are, without observing it: an
        edit is not one more report (counted again, its words would weigh
        less and its outlet's kickers look more common). The entry keeps its
        cluster and its place in time (the store never moves a publication
        time); entries not in the window are ignored.
        """
        held = self._state.features
        fresh = [self._reread(item, held[item.id]) for item in items if item.id in held]
        self._state.refresh(fresh)
        return len(fresh)

    def _reread(self, item: Item, old: Features) -> Features:
        """`item`'s features in the place of `old`, weighed by the statistics as they are."""
        item = replace(item, published=old.published)
        return reread(item, self.boilerplate, self.frequencies, self.tuning)

    def _normalized(
        self, items: Iterable[Item], count: int | None = None
    ) -> Generator[Features, None, None]:
        """Features of `items` in order, each after the window advanced to its time.

        The window advances before an item is observed in the statistics, as
        in `add`: at story granularity an evicted member's centroid update
        reads the IDF, which the next item's observation would move.
        """
        if count is None:
            count = len(items) if isinstance(items, Sized) else 0
        if not self.settings.parallel or not cluster_ahead.worthwhile(count):
            for item in items:
                self._advance(item.published)
                yield self._featurize(item)
            return
        ahead = cluster_ahead.AheadNormalizer(
            items, self.boilerplate, self.frequencies, self.tuning, self._advance
        )
        try:
            yield from ahead
        finally:
            self.boilerplate = ahead.boilerplate

    def _place(self, features: Features) -> Match:
        """Decide and record where `features` go (the window has advanced to their time)."""
        match, candidates = self._decide(features)
        self._state.insert(features, match.cluster_id)
        if self.tuning.merge_threshold is not None and match.matched_id is not None:
            survivor = self._merge_around(match.cluster_id, candidates, self.tuning.merge_threshold)
            if survivor != match.cluster_id:
                match = Match(match.entry_id, survivor, match.matched_id, match.score, match.reason)
        return match

    def assignments(self) -> tuple[datetime | None, dict[int, int]]:
        """The oldest publication time in the window, and entry id -> cluster id of the window.

        What a caller compares with the database to know whether this state
        can go on (see `Pipeline`), rather than being primed again.
        """
        state = self._state
        oldest = state.heap[0][0] if state.heap else None
        return oldest, dict(state.cluster_of)

    def take_merges(self) -> list[Merge]:
        """Merges decided since the last call, oldest first (the caller relabels their entries).

        Matches issued earlier name the absorbed cluster; `resolve_merges`
        rewrites them, and a store would move the absorbed cluster's entries.
        """
        merges, self._merges = self._merges, []
        return merges

    def _merge_around(self, cluster_id: int, candidates: list[int], threshold: float) -> int:
        """Merge the grown cluster with the candidate whose centroid is closest, if close enough.

        Two clusters founded in parallel before a story's vocabulary settled
        meet here once each has grown. Merging needs a centroid-to-centroid
        cosine above `threshold`, which is set higher than the threshold for
        an entry to join: a wrong merge hides a whole cluster, not one entry.
        """
        state = self._state
        grown = state.clusters[cluster_id]
        best: tuple[float, int] | None = None
        for other_id in candidates:
            other = state.clusters.get(other_id)
            if other_id == cluster_id or other is None:
                continue
            score = self._centroid_cosine(grown, other)
            if score >= threshold and (best is None or score > best[0]):
                best = (score, other_id)
        if best is None:
            return cluster_id
        score, other_id = best
        into, absorbed = min(cluster_id, other_id), max(cluster_id, other_id)
        state.merge(absorbed, into)
        self._merges.append(Merge(absorbed, into, round(score, 1)))
        return into

    def _centroid_cosine(self, a: _Cluster, b: _Cluster) -> float:
        frequencies = self.frequencies
        norm = a.centroid_norm(frequencies) * b.centroid_norm(frequencies)
        if not norm:
            return 0.0
        small, large = sorted((a.profile, b.profile), key=len)
        idf = frequencies.idf
        dot = sum(n * large[t] * idf(t) ** 2 for t, n in small.items() if t in large)
        return 100.0 * dot / norm

    def _decide(self, features: Features) -> tuple[Match, list[int]]:
        """The match for a new item, and the candidate clusters it was compared with."""
        state = self._state
        url, text_key = features.canonical_url, features.text_key
        for other, reason in (
            (state.by_url.get(url) if url else None, "same canonical URL"),
            (state.by_text.get(text_key) if text_key else None, "same normalized text"),
        ):
            if other is not None and self._within(features, state.features[other]):
                return Match(features.id, state.cluster_of[other], other, 100.0, reason), []
        best: _Verdict | None = None
        score = self._profile_score if self.tuning.use_profile else self._members_score
        candidates = self._candidate_clusters(features)
        for cluster_id in candidates:
            verdict = score(features, cluster_id)
            if verdict is not None and (best is None or verdict.score > best.score):
                best = verdict
        if best is None:
            return Match(features.id, features.id, None, 100.0, "new cluster"), candidates
        matched = state.features[best.matched]
        reason = explain_pair(features, matched, self.tuning, best.parts) + best.note
        match = Match(features.id, best.cluster_id, best.matched, round(best.score, 1), reason)
        return match, candidates

    def _within(self, a: Features, b: Features) -> bool:
        return cluster_pairs.within(a, b, self.window_hours)

    def _candidate_clusters(self, features: Features) -> list[int]:
        """Clusters sharing the most token weight with the item (highest first, ties by id)."""
        tuning = self.tuning
        floor = tuning.min_shared * features.index_mass * STEPS
        return self._state.index.candidates(
            features.tokens, features.levels, floor, tuning.max_candidates, tuning.max_postings
        )

    def _members_score(self, features: Features, cluster_id: int) -> _Verdict | None:
        """Event granularity: a strong match with one member, support from most of the sample.

        The sample is the cluster's anchor (oldest member in the window) and
        its most recent members, those within the window of the item. Scoring
        stops as soon as the sample can no longer give a majority: most
        candidate clusters are rejected after one or two pair scores. The
        loop is compiled (`cluster_pairs`): it is most of the matcher's time.
        """
        state, tuning = self._state, self.tuning
        members = state.clusters[cluster_id].members
        sample = cluster_pairs.sample_within(
            features, members, state.features, tuning.sample_size, self.window_hours
        )
        if not sample:
            return None
        floor = self.threshold - tuning.support_margin
        needed = math.floor(tuning.support_share * len(sample)) + 1
        found = cluster_pairs.best_member(
            features, sample, state.features, tuning, STEPS, floor, len(sample) - needed,
            self.frequencies, reweigh,
        )  # fmt: skip
        if found is None or found[0] < self.threshold:
            return None
        top, matched, parts, agree = found
        note = f" ({agree}/{len(sample)} sampled members agree)" if len(sample) > 1 else ""
        return _Verdict(top, cluster_id, matched, note, parts)

    def _profile_score(self, features: Features, cluster_id: int) -> _Verdict | None:
        """Story granularity: cosine of the headline with the cluster's centroid (TF-IDF).

        Comparing with the cluster's vocabulary rather than one member lets a
        story drift over its sub-events (a merger, then its approval) while an
        item that shares words with a single member only still stays out.
        """
        state = self._state
        cluster = state.clusters[cluster_id]
        centroid_norm = cluster.centroid_norm(self.frequencies)
        if not features.title_norm or not centroid_norm:
            return None
        dot = cluster_tokens.title_dot(
            features.title_tokens, features.tokens, features.levels, cluster.profile, STEPS
        )
        score = 100.0 * dot / (features.title_norm * centroid_norm)
        if score < self.threshold:
            return None
        recent = [
            state.features[m]
            for m in cluster_pairs.sample(cluster.members, self.tuning.sample_size)
        ]
        title = set(features.title_tokens)
        matched = max(recent, key=lambda m: (len(title.intersection(m.title_tokens)), -m.id))
        note = f"; shares {score:.0f}% of the story's key words ({len(cluster.members)} members)"
        return _Verdict(score, cluster_id, matched.id, note)


def cluster_items(items: Iterable[Item], settings: ClusterSettings) -> list[Match]:
    """Batch clustering: exactly `Clusterer.add` applied in order, then its merges applied."""
    clusterer = Clusterer(settings)
    matches = list(clusterer.add_many(list(items)))
    return resolve_merges(matches, clusterer.take_merges())


def resolve_merges(matches: list[Match], merges: Iterable[Merge]) -> list[Match]:
    """`matches` with every cluster id replaced by the cluster it was finally merged into.

    The founder of an absorbed cluster gets a match that names the survivor's
    founder and the merge score, so `dedupe --explain` says why it moved.
    """
    final: dict[int, int] = {}
    absorbed: dict[int, Merge] = {}
    for merge in merges:
        final[merge.absorbed] = merge.into
        absorbed[merge.absorbed] = merge

    def survivor(cluster_id: int) -> int:
        while cluster_id in final:
            cluster_id = final[cluster_id]
        return cluster_id

    resolved: list[Match] = []
    for match in matches:
        into = survivor(match.cluster_id)
        if match.matched_id is None and match.entry_id in absorbed:
            merge = absorbed[match.entry_id]
            match = Match(match.entry_id, into, merge.into, merge.score, merge.reason)
        elif into != match.cluster_id:
            match = Match(match.entry_id, into, match.matched_id, match.score, match.reason)
        resolved.append(match)
    return resolved


class PairScorer:
    """Scores any two of a fixed set of items as the clusterer would (for reports).

    Items are normalized in the given order, as `Clusterer.add` would see them.
    """

    def __init__(self, items: Iterable[Item], settings: ClusterSettings) -> None:
        self.tuning = TUNING[settings.granularity]
        boilerplate = text.BoilerplateModel()
        frequencies = DocumentFrequencies()
        self._features = {
            item.id: featurize(item, boilerplate, frequencies, self.tuning) for item in items
        }

    def __call__(self, a: int, b: int) -> Scored:
        first, second = self._features[a], self._features[b]
        return Scored(
            pair_score(first, second, self.tuning), explain_pair(first, second, self.tuning)
        )
