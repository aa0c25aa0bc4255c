"""The compiled token loops against the formulas they implement, written out in Python."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.cluster_score import STEPS, WEIGHT_LEVELS
from aggregator.cluster_tokens import count, overlap, weigh

WORDS = [f"w{n}" for n in range(12)]


def weigh_in_python(
    tokens: list[str], title: tuple[str, ...], counts: Counter[str], documents: int
) -> tuple[dict[str, float], float, float, float]:
    """IDF level of each token; title sum and Euclidean length; sum of all."""
    weights = {
        t: WEIGHT_LEVELS[round((math.log((documents + 1) / (counts.get(t, 0) + 1)) + 1.0) * STEPS)]
        for t in tokens
    }
    mass = squares = total = 0.0
    for t in title:  # left to right: `sum` compensates rounding from Python 3.12 on
        mass += weights[t]
        squares += weights[t] * weights[t]
    for weight in weights.values():
        total += weight
    return weights, mass, math.sqrt(squares), total


@given(
    tokens=st.lists(st.sampled_from(WORDS), unique=True),
    counts=st.dictionaries(st.sampled_from(WORDS), st.integers(1, 10**6)),
    extra=st.integers(0, 10**6),
    data=st.data(),
)
def test_weights_are_the_formulas(
    tokens: list[str], counts: dict[str, int], extra: int, data: st.DataObject
) -> None:
    documents = max(counts.values(), default=0) + extra
    title = tuple(data.draw(st.lists(st.sampled_from(tokens), unique=True)) if tokens else [])
    frequencies = Counter(counts)
    got = weigh(tokens, title, frequencies, documents, WEIGHT_LEVELS, STEPS)
    assert got == weigh_in_python(tokens, title, frequencies, documents)
    # Each weight is one of the shared level objects, not a copy.
    assert all(WEIGHT_LEVELS[round(w * STEPS)] is w for w in got[0].values())


def test_a_rarer_token_weighs_more_and_an_unseen_one_most() -> None:
    weights, *_ = weigh(
        ["haushalt", "merz", "neu"], (), Counter(haushalt=50, merz=5), 100, WEIGHT_LEVELS, STEPS
    )
    assert weights["haushalt"] < weights["merz"] < weights["neu"]
    assert weights["neu"] == WEIGHT_LEVELS[round((math.log(101) + 1) * STEPS)]


def test_counts_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="counts must be a dict"):
        weigh(["a"], (), [("a", 1)], 1, WEIGHT_LEVELS, STEPS)  # type: ignore[arg-type]


@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=8), max_size=8))
def test_counting_is_counter_update(documents: list[list[str]]) -> None:
    counts: Counter[str] = Counter()
    for tokens in documents:
        count(counts, tuple(tokens))
    assert counts == Counter(token for tokens in documents for token in tokens)


def containment_in_python(
    title: tuple[str, ...], weights: dict[str, float], mass: float, found: dict[str, float]
) -> float:
    if not mass:
        return 0.0
    shared = 0.0
    for t in title:
        if t in found:
            shared += weights[t]
    return shared / mass


@given(
    a=st.dictionaries(st.sampled_from(WORDS), st.sampled_from(WEIGHT_LEVELS[1000:9000])),
    b=st.dictionaries(st.sampled_from(WORDS), st.sampled_from(WEIGHT_LEVELS[1000:9000])),
    data=st.data(),
)
def test_overlap_is_both_containments(
    a: dict[str, float], b: dict[str, float], data: st.DataObject
) -> None:
    a_title = tuple(data.draw(st.lists(st.sampled_from(sorted(a)), unique=True)) if a else [])
    b_title = tuple(data.draw(st.lists(st.sampled_from(sorted(b)), unique=True)) if b else [])
    a_mass, b_mass = math.fsum(a[t] for t in a_title), math.fsum(b[t] for t in b_title)
    expected = 50.0 * (
        containment_in_python(a_title, a, a_mass, b) + containment_in_python(b_title, b, b_mass, a)
    )
    assert overlap(a_title, a, a_mass, b_title, b, b_mass) == expected


def test_a_headline_found_whole_in_the_other_counts_fully() -> None:
    a = {"merz": 2.0, "haushalt": 3.0}
    b = {"merz": 2.0, "haushalt": 3.0, "streit": 4.0}
    # a's headline is all in b; b's headline ("streit") is not in a.
    assert overlap(("merz", "haushalt"), a, 5.0, ("streit",), b, 4.0) == 50.0
    assert overlap((), {}, 0.0, (), {}, 0.0) == 0.0


@pytest.mark.parametrize("count", [100, -1])
def test_a_count_the_documents_cannot_have_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="outside the table"):
        weigh(("a",), (), Counter(a=count), 5, WEIGHT_LEVELS, STEPS)
