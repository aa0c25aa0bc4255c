"""The compiled pair scoring against the Python formulas it replaced, written out again here.

The clusterer's decisions must not change by a bit when this arithmetic moves
between Python and C, so every comparison is `==`, never approximate.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from aggregator import cluster_pairs
from aggregator.cluster_score import STEPS, Features, Fuzzy, Tuning, overlap
from aggregator.token_set import Mark, marks

# Few words, so that drawn entries often share some: overlap, rapidfuzz and
# numbers all get both outcomes. Some need 2 or 4 bytes a character in a str.
WORDS = ["merz", "haushalt", "straße", "győr", "bund", "wahl", "🙂", "1:2", "2:2", "0,75", "2024"]


def text(features: Features, mark: Mark) -> str:
    """The headline's or lead's tokens as a text: all `fuzz.token_set_ratio` reads of one.

    It splits a text, sorts and dedupes the words; tests/test_token_set.py
    checks that the marks keep exactly those of the texts they were made of.
    """
    return " ".join(t for t, m in zip(features.tokens, features.marks, strict=True) if m & mark)


def fuzzy_in_python(a: Features, b: Features, tuning: Tuning, need: float = 0.0) -> Fuzzy:
    a_lead, b_lead = text(a, Mark.LEAD), text(b, Mark.LEAD)
    both = bool(a_lead and b_lead)
    weak = both and (a.title_is_weak or b.title_is_weak)
    share = tuning.title_weight
    title = 0.0
    if not weak:
        cutoff = need if not both else (need - (1 - share) * 100) / share
        title = fuzz.token_set_ratio(
            text(a, Mark.TITLE), text(b, Mark.TITLE), score_cutoff=max(0.0, cutoff - 1e-6)
        )
    if not both:
        return title, title, None
    cutoff = need if weak else (need - share * 100) / (1 - share)
    lead = fuzz.token_set_ratio(a_lead, b_lead, score_cutoff=max(0.0, cutoff - 1e-6))
    if weak:
        return lead, None, lead
    return share * title + (1 - share) * lead, title, lead


def penalty_in_python(a: Features, b: Features, tuning: Tuning) -> tuple[float, bool]:
    penalty = max(0.0, abs(a.hours - b.hours) - tuning.grace_hours) * tuning.hourly_decay
    conflict = bool(
        a.title_numbers
        and b.title_numbers
        and not any(number in b.title_numbers for number in a.title_numbers)
    )
    return penalty + (tuning.number_conflict_penalty if conflict else 0.0), conflict


def total_in_python(weighted_overlap: float, fuzzy: float, penalty: float, tuning: Tuning) -> float:
    return max(0.0, weighted_overlap + (1 - tuning.overlap_weight) * fuzzy - penalty)


def scored_pair_in_python(
    a: Features, b: Features, tuning: Tuning, floor: float = 0.0
) -> tuple[float, Fuzzy | None]:
    penalty = penalty_in_python(a, b, tuning)[0]
    fuzzy_share = 1 - tuning.overlap_weight
    if floor + penalty > 100.0:
        return 0.0, None
    weighted_overlap = tuning.overlap_weight * overlap(a, b)
    need = (floor + penalty - weighted_overlap) / fuzzy_share
    if need > 100.0:
        return 0.0, None
    fuzzy = fuzzy_in_python(a, b, tuning, need)
    return total_in_python(weighted_overlap, fuzzy[0], penalty, tuning), fuzzy


class Frequencies:
    """What the loop asks of `DocumentFrequencies`: which members to weigh again."""

    def __init__(self, stale: set[int]) -> None:
        self.stale_ids = stale

    def stale(self, features: Features) -> bool:
        return features.id in self.stale_ids


def reweigh_by_halving(features: Features, frequencies: Frequencies) -> Features:
    """Different weights, so a member scored with its old ones would show."""
    levels = array("H", features.levels)
    halved = array("H", [level // 2 for level in levels]).tobytes()
    frequencies.stale_ids.discard(features.id)
    return replace(features, levels=halved, title_mass=features.title_mass / 2)


def best_member_in_python(
    features: Features,
    sample: list[int],
    window: dict[int, Features],
    tuning: Tuning,
    floor: float,
    allowed_misses: int,
    frequencies: Frequencies,
) -> tuple[float, int, Fuzzy | None, int] | None:
    agree = misses = 0
    top, matched, parts = -1.0, sample[0], None
    for member in sample:
        other = window[member]
        if frequencies.stale(other):
            other = window[member] = reweigh_by_halving(other, frequencies)
        score, fuzzy = scored_pair_in_python(features, other, tuning, floor)
        if score >= floor:
            agree += 1
        else:
            misses += 1
            if misses > allowed_misses:
                return None
        if score > top:
            top, matched, parts = score, member, fuzzy
    return top, matched, parts, agree


@st.composite
def entries(draw: st.DrawFn, id: int = 0) -> Features:
    title = draw(st.lists(st.sampled_from(WORDS), max_size=6))
    lead = draw(st.lists(st.sampled_from(WORDS), max_size=12))
    title_tokens = tuple(dict.fromkeys(title))
    tokens = tuple(sorted({*title_tokens, *lead}))
    level = st.integers(0, 9000)
    levels = {t: draw(level) for t in tokens}
    title_levels = [levels[t] for t in title_tokens]
    mass = math.fsum(x / STEPS for x in title_levels)
    return Features(
        id=id,
        published=datetime(2024, 3, 1, tzinfo=UTC),
        canonical_url=None,
        language="de",
        title_numbers=tuple(t for t in title_tokens if not t.isalpha()),
        title_tokens=title_tokens,
        tokens=tokens,
        marks=marks(tokens, title_tokens, lead),
        levels=array("H", [levels[t] for t in tokens] + title_levels).tobytes(),
        title_mass=mass,
        index_mass=math.fsum(x / STEPS for x in levels.values()),
        title_norm=0.0,
        weighed_at=0,
        hours=draw(st.floats(400_000.0, 400_100.0)),
        text_key=None,
        title_is_weak=draw(st.booleans()),
    )


tunings = st.builds(
    Tuning,
    title_weight=st.floats(0.05, 0.95),
    overlap_weight=st.floats(0.0, 0.95),
    hourly_decay=st.sampled_from([0.0, 1.5]) | st.floats(0.0, 10.0),
    grace_hours=st.floats(0.0, 48.0),
    number_conflict_penalty=st.sampled_from([0.0, 12.0]) | st.floats(0.0, 50.0),
)
floors = st.sampled_from([0.0, 30.0, 45.0]) | st.floats(-10.0, 110.0)


@settings(max_examples=1000)
@given(a=entries(), b=entries(id=1), tuning=tunings, floor=floors)
def test_scored_pair_is_the_python_formula(
    a: Features, b: Features, tuning: Tuning, floor: float
) -> None:
    expected = scored_pair_in_python(a, b, tuning, floor)
    assert cluster_pairs.scored_pair(a, b, tuning, STEPS, floor) == expected
    assert cluster_pairs.penalty(a, b, tuning) == penalty_in_python(a, b, tuning)
    need = floor + 20.0
    assert cluster_pairs.fuzzy(a, b, tuning, need) == fuzzy_in_python(a, b, tuning, need)
    key_words, parts = overlap(a, b), fuzzy_in_python(a, b, tuning)
    penalty = penalty_in_python(a, b, tuning)[0]
    assert cluster_pairs.total(key_words, parts[0], penalty, tuning) == total_in_python(
        tuning.overlap_weight * key_words, parts[0], penalty, tuning
    )


@settings(max_examples=300)
@given(
    features=entries(),
    members=st.lists(entries(), min_size=1, max_size=5),
    stale=st.sets(st.integers(1, 5)),
    tuning=tunings,
    floor=floors,
    allowed_misses=st.integers(0, 3),
)
def test_best_member_is_the_python_loop(
    features: Features,
    members: list[Features],
    stale: set[int],
    tuning: Tuning,
    floor: float,
    allowed_misses: int,
) -> None:
    members = [replace(m, id=i) for i, m in enumerate(members, 1)]
    sample = [m.id for m in members]
    window = {m.id: m for m in members}
    expected_window = dict(window)
    expected = best_member_in_python(
        features, sample, expected_window, tuning, floor, allowed_misses, Frequencies(set(stale))
    )
    got = cluster_pairs.best_member(
        features, sample, window, tuning, STEPS, floor, allowed_misses,
        Frequencies(set(stale)), reweigh_by_halving,
    )  # fmt: skip
    assert got == expected
    # The same members were weighed again (those scored before the loop stopped), and kept.
    assert window == expected_window


def test_best_member_of_no_member_is_none() -> None:
    assert (
        cluster_pairs.best_member(
            None, [], {}, Tuning(), STEPS, 0.0, 0, Frequencies(set()), reweigh_by_halving
        )
        is None
    )


@given(
    members=st.lists(st.integers(0, 1000), unique=True, max_size=8),
    size=st.integers(0, 6),
    hours=st.lists(st.floats(0.0, 100.0), min_size=8, max_size=8),
    now=st.floats(0.0, 100.0),
    window_hours=st.floats(0.0, 50.0),
)
def test_the_sample_is_the_anchor_and_the_most_recent_within_the_window(
    members: list[int], size: int, hours: list[float], now: float, window_hours: float
) -> None:
    expected = (
        list(members)
        if len(members) <= size
        else [members[0]] + [members[i] for i in range(1 - size, 0)]
    )
    assert cluster_pairs.sample(deque(members), size) == expected
    window = {m: FakeTime(hours[i]) for i, m in enumerate(members)}
    within = [m for m in expected if abs(now - window[m].hours) <= window_hours]
    got = cluster_pairs.sample_within(FakeTime(now), deque(members), window, size, window_hours)
    assert got == within
    for m in members:
        assert cluster_pairs.within(FakeTime(now), window[m], window_hours) == (
            abs(now - window[m].hours) <= window_hours
        )


@pytest.mark.parametrize("size", [-1, 0, 1])
def test_no_member_samples_nothing_whatever_the_size(size: int) -> None:
    """Indexing is unchecked in the compiled module: no member must not read an anchor."""
    assert cluster_pairs.sample([], size) == []
    assert cluster_pairs.sample(["only"], size) == ["only"]


class FakeTime:
    """Of an entry, the window only reads its time."""

    def __init__(self, hours: float) -> None:
        self.hours = hours


@pytest.mark.parametrize("field", ["title_weight", "overlap_weight"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_a_division_by_zero_raises_as_in_python(field: str, value: float) -> None:
    a = _entry("merz haushalt", "merz streit bund")
    b = _entry("merz wahl", "bund wahl streit")
    tuning = replace(Tuning(), **{field: value})
    try:
        expected: object = scored_pair_in_python(a, b, tuning, 30.0)
    except ZeroDivisionError:
        with pytest.raises(ZeroDivisionError):
            cluster_pairs.scored_pair(a, b, tuning, STEPS, 30.0)
    else:
        assert cluster_pairs.scored_pair(a, b, tuning, STEPS, 30.0) == expected


def _entry(title: str, lead: str) -> Features:
    title_tokens = tuple(dict.fromkeys(title.split()))
    tokens = tuple(sorted({*title_tokens, *lead.split()}))
    return Features(
        0, datetime(2024, 3, 1, tzinfo=UTC), None, "de", (), title_tokens, tokens,
        marks(tokens, title_tokens, lead.split()),
        array("H", [2000] * (len(tokens) + len(title_tokens))).tobytes(),
        2.0 * len(title_tokens), 2.0 * len(tokens), 0.0, 0, 400_000.0, None, False,
    )  # fmt: skip
