"""Pair scores: how likely two entries report the same event, 0-100.

An entry is normalized once on arrival into `Features` (stems of headline and
lead, their IDF weights at that moment, numbers, an exact-duplicate key), so
that scoring a pair is one merge of two sorted token tuples, two
`token_set_ratio`s on them and a few lookups. Weights are
frozen when an item arrives: decisions then depend only on the items seen
before, which keeps a batch run and a one-by-one run identical.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime

from aggregator import cluster_pairs, cluster_tokens, text, token_set
from aggregator.models import Item


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
    # Two, not more: on German dev 2, 3 and 4 decide alike, but in a big window
    # (the labelled 50,000-entry stream of bench/stream.py) every extra
    # candidate is another chance for a wrong cluster to out-score the right
    # one on wording alone: BCubed P 0.929 -> 0.944 and R 0.165 -> 0.213 from
    # 4 to 2, and each candidate fewer saves pair scores. One loses recall on dev.
    max_postings: int = 300
    max_candidates: int = 2
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
    # Story granularity: two clusters whose centroids' cosine (0-100) reaches
    # this are one story and merge; None never merges (event granularity).
    merge_threshold: float | None = None


@dataclass(slots=True)
class Features:
    """An item normalized once: what scoring and indexing read.

    It keeps of the item only what the window needs (not the raw headline and
    lead), so a window of 100,000 entries does not hold their texts twice.
    Never changed once made (`reweigh` makes new ones), but not frozen: a
    frozen dataclass's constructor costs ten times more, and one is built
    for every entry and every re-weighing.
    """

    id: int
    published: datetime
    canonical_url: str | None
    language: str
    # Distinct headline tokens, and those that are numbers: tuples, because a
    # window holds one per entry and a small frozenset costs five times more.
    title_numbers: tuple[str, ...]
    title_tokens: tuple[str, ...]
    # Title and lead tokens, sorted and distinct (the analysis's own tuple; also
    # the index keys), and their IDF when the item arrived as levels (weight
    # `level / STEPS`), then the title tokens': see `cluster_tokens.weigh`. A
    # dict of token -> weight was about 0.8 KB an entry, these about 0.1 KB.
    tokens: tuple[str, ...]
    # Which of `tokens` are in the headline and which in the lead, a byte each
    # (`token_set.marks`): the headline's and the lead's token sets, which are
    # all `token_set_ratio` compares, without a string of either.
    marks: bytes
    levels: bytes
    title_mass: float  # sum of the title tokens' weights
    index_mass: float  # sum of all weights
    title_norm: float  # Euclidean length of the title tokens' weights
    weighed_at: int  # documents seen when `levels` were computed
    hours: float  # publication time, hours since the epoch
    text_key: bytes | None  # exact-duplicate key, None when too short to trust
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

    def observe(self, tokens: tuple[str, ...]) -> None:
        self.documents += 1
        cluster_tokens.count(self.counts, tokens)
        if len(self.counts) > self.max_tokens:
            for token in [t for t, n in self.counts.items() if n <= 1]:
                del self.counts[token]

    def idf(self, token: str) -> float:
        return math.log((self.documents + 1) / (self.counts[token] + 1)) + 1.0

    def stale(self, features: Features) -> bool:
        """Whether the collection grew enough since `features` were weighed to weigh them again.

        IDF drifts slowly once a few hundred items were seen, so weights are
        refreshed only after the collection grew by 2 %: on a small file the
        first items' flat weights are corrected. Past 10,000 items, by 10 %: a
        token's IDF then moves by at most log(1.1) ~ 0.1 between refreshes,
        and refreshing every sampled member every 2 % was a tenth of the cost
        of a long stream.
        """
        weighed_at = features.weighed_at
        growth = 1.02 if weighed_at < 10_000 else 1.1
        return self.documents > weighed_at * growth


# Weights are kept to three decimals, as levels of two bytes: a window of
# 100,000 entries with leads would otherwise hold four million float objects
# of its own (about 1 KB an entry), and no score moves by 0.001.
STEPS = 1000
# IDF stays below 64 up to e^63 items.
TOP_LEVEL = 64 * STEPS - 1


def _weigh(
    tokens: tuple[str, ...], title_tokens: tuple[str, ...], frequencies: DocumentFrequencies
) -> tuple[bytes, float, float, float]:
    """Levels of the tokens then of the title's, the title's mass and length, the total mass."""
    return cluster_tokens.weigh(
        tokens, title_tokens, frequencies.counts, frequencies.documents, STEPS, TOP_LEVEL
    )


def reweigh(features: Features, frequencies: DocumentFrequencies) -> Features:
    """The same features with IDF weights of the collection as it is now."""
    levels, mass, norm, total = _weigh(features.tokens, features.title_tokens, frequencies)
    f = features
    # Built directly: `dataclasses.replace` costs several times more on this hot path.
    return Features(
        f.id, f.published, f.canonical_url, f.language, f.title_numbers, f.title_tokens,
        f.tokens, f.marks, levels, mass, total, norm, frequencies.documents, f.hours, f.text_key,
        f.title_is_weak,
    )  # fmt: skip


@dataclass(slots=True)
class Analysis:
    """What an item's headline and lead say, whatever the outlet, the time and the statistics.

    Never changed once made (the analysis cache shares it between copies of a
    text), but not frozen, like `Features`: a frozen dataclass's constructor
    costs several times more, and one is built for every entry.
    """

    language: str
    title_numbers: tuple[str, ...]
    title_tokens: tuple[str, ...]
    index_tokens: tuple[str, ...]  # sorted and distinct: `Features.tokens`
    marks: bytes  # `Features.marks`
    text_key: bytes | None
    title_is_weak: bool


def _digest(*texts: str) -> bytes:
    """A 128-bit BLAKE2 digest of the texts: a key that does not keep them alive."""
    joined = "\x00".join(texts)
    return hashlib.blake2b(joined.encode(errors="surrogatepass"), digest_size=16).digest()


class _AnalysisCache:
    """The analyses of the last `size` distinct texts, keyed by a digest of the texts.

    Agency copy runs under many outlets' names with the same headline and
    lead, and a feed re-fetched shows the same entries again, so on a long
    stream most items are analyzed once. The key is a 128-bit BLAKE2 digest,
    not the texts, which would keep every raw headline and lead alive (about
    1 KB each). Copies arrive within hours of each other, so the last 50,000
    texts (a day and a half of 2,000 busy feeds) find nearly all of them; the
    cache costs about 0.6 KB a text beyond what the matcher's window shares.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._analyses: OrderedDict[bytes, Analysis] = OrderedDict()

    def __call__(self, headline: str, summary: str, language: str | None, limit: int) -> Analysis:
        key = _digest(str(language), str(limit), headline, summary)
        analyses = self._analyses
        found = analyses.get(key)
        if found is None:
            found = analyses[key] = _analyze_texts(headline, summary, language, limit)
            if len(analyses) > self.size:
                analyses.popitem(last=False)
        else:
            analyses.move_to_end(key)
        return found

    def resize(self, size: int) -> None:
        """Keep at most the last `size` analyses from now on."""
        self.size = size
        while len(self._analyses) > size:
            self._analyses.popitem(last=False)


def _analyze_texts(headline: str, summary: str, language: str | None, lead_tokens: int) -> Analysis:
    """Normalize a headline (boilerplate already removed) and a lead."""
    language = text.language_code(language) or text.guess_language(headline, lead=summary)
    lead = text.tokens(summary, language)[:lead_tokens]
    title = text.tokens(headline, language)
    weak = len(title) < 2 or text.is_clickbait(headline)
    if not title:  # social posts: the text is the headline
        title = lead[:20]
    title_tokens = tuple(dict.fromkeys(title))
    index_tokens = tuple(sorted({*title_tokens, *lead}))
    return Analysis(
        language=language,
        # Number tokens are the only ones with characters other than letters.
        title_numbers=tuple(t for t in title_tokens if not t.isalpha()),
        title_tokens=title_tokens,
        index_tokens=index_tokens,
        marks=token_set.marks(index_tokens, title_tokens, lead),
        # Same stems in the same order, outlet boilerplate removed: a syndicated
        # copy (agency text under another outlet's name) or a re-post.
        text_key=(
            _digest(" ".join(title), " ".join(lead)) if len(title) + len(lead) >= 4 else None
        ),
        title_is_weak=weak and bool(lead),
    )


_analyze = _AnalysisCache(50_000)


def limit_analyses(size: int) -> None:
    """Keep at most `size` analyses in this process's cache (50,000 unless limited)."""
    _analyze.resize(size)


def featurize(
    item: Item, boilerplate: text.BoilerplateModel, frequencies: DocumentFrequencies, tuning: Tuning
) -> Features:
    """Normalize an item once, observing its title and tokens in the running statistics."""
    return weigh(item, analyze(item, boilerplate, tuning), frequencies)


def analyze(item: Item, boilerplate: text.BoilerplateModel, tuning: Tuning) -> Analysis:
    """The first half of `featurize`: the item's text, its title observed in `boilerplate`.

    Apart from `weigh` because it needs no document frequencies: a second
    process can analyze entries ahead of the matcher (`cluster_ahead`).
    """
    boilerplate.observe(item.outlet, item.title)
    return _read(item, boilerplate, tuning)


def weigh(item: Item, found: Analysis, frequencies: DocumentFrequencies) -> Features:
    """The second half of `featurize`: the analysis observed in `frequencies`, then weighed."""
    frequencies.observe(found.index_tokens)
    return _weighed(item, found, frequencies)


def reread(
    item: Item, boilerplate: text.BoilerplateModel, frequencies: DocumentFrequencies, tuning: Tuning
) -> Features:
    """`featurize` for an item observed before, whose text changed: nothing is observed again.

    An edit is not one more report: counted again, its words would weigh less
    and its outlet's kickers would look more common.
    """
    return _weighed(item, _read(item, boilerplate, tuning), frequencies)


def _read(item: Item, boilerplate: text.BoilerplateModel, tuning: Tuning) -> Analysis:
    raw_title = item.title.strip()
    # Outlet boilerplate ("| site.example") says nothing about the event or the language.
    headline = boilerplate.strip(item.outlet, raw_title) if raw_title else ""
    return _analyze(headline, item.summary, item.language, tuning.lead_tokens)


def _weighed(item: Item, found: Analysis, frequencies: DocumentFrequencies) -> Features:
    levels, mass, norm, total = _weigh(found.index_tokens, found.title_tokens, frequencies)
    # Positional: keyword arguments cost a tenth of this function on its hot path.
    return Features(
        item.id, item.published, item.canonical_url, found.language, found.title_numbers,
        found.title_tokens, found.index_tokens, found.marks, levels, mass, total, norm,
        frequencies.documents, item.published.timestamp() / 3600, found.text_key,
        found.title_is_weak,
    )  # fmt: skip


def overlap(a: Features, b: Features) -> float:
    """Each headline's rare words found in the other item, 0-100.

    Paraphrasing outlets keep the rare words (names, places, numbers) of an
    event even when word order and framing differ; the headline of one report
    usually reappears in the other's headline or lead. Each side is the
    IDF-weighted share of its headline tokens found anywhere in the other.
    """
    return cluster_tokens.overlap(
        a.title_tokens, a.tokens, a.levels, a.title_mass,
        b.title_tokens, b.tokens, b.levels, b.title_mass, STEPS,
    )  # fmt: skip


def pair_score(a: Features, b: Features, tuning: Tuning, floor: float = 0.0) -> float:
    """How likely two items report the same event, 0-100.

    Exact from `floor` up; below it, only some value below `floor`.
    """
    return scored_pair(a, b, tuning, floor)[0]


# rapidfuzz's similarity of title and lead combined, of the title, of the lead
# (`cluster_pairs.fuzzy`).
Fuzzy = tuple[float, float | None, float | None]


def scored_pair(
    a: Features, b: Features, tuning: Tuning, floor: float = 0.0
) -> tuple[float, Fuzzy | None]:
    """`pair_score`, and its rapidfuzz parts (exact if the score is above zero and reaches `floor`).

    Compiled (`cluster_pairs`: the clusterer's hot path), where the formula is.
    """
    return cluster_pairs.scored_pair(a, b, tuning, STEPS, floor)


def explain_pair(a: Features, b: Features, tuning: Tuning, parts: Fuzzy | None = None) -> str:
    """`pair_score` as a human-readable breakdown, computed only for reported matches.

    Every part is computed once, without cutoffs, and the score is made of
    them by the same compiled arithmetic as `scored_pair`'s; `parts` are the
    rapidfuzz parts where `scored_pair` made them exactly already (a pair
    scoring above zero that reached its floor).
    """
    fuzzy, title, lead = cluster_pairs.fuzzy(a, b, tuning) if parts is None else parts
    if lead is None:
        reason = f"title {title:.0f}"
    elif title is None:
        reason = f"lead {lead:.0f} (headline too thin)"
    else:
        reason = f"title {title:.0f} + lead {lead:.0f}"
    key_words = overlap(a, b)
    reason += f", key words {key_words:.0f}"
    penalty, conflict = cluster_pairs.penalty(a, b, tuning)
    if conflict:
        reason += ", numbers differ"
    if penalty:
        reason += f" - {penalty:.0f}"
    score = cluster_pairs.total(key_words, fuzzy, penalty, tuning)
    return f"{reason} -> {score:.0f}"


@dataclass(frozen=True)
class Scored:
    score: float
    reason: str
