"""The compiled weighing against the formula it implements, written out in Python."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.cluster_score import STEPS, WEIGHT_LEVELS
from aggregator.cluster_weights import weigh

WORDS = [f"w{n}" for n in range(12)]


def weigh_in_python(
    tokens: list[str], title: tuple[str, ...], counts: Counter[str], documents: int
) -> tuple[dict[str, float], float, float, float]:
    """IDF level of each token; title sum and Euclidean length; sum of all."""
    weights = {
        t: WEIGHT_LEVELS[round((math.log((documents + 1) / (counts.get(t, 0) + 1)) + 1.0) * STEPS)]
        for t in tokens
    }
    title_weights = [weights[t] for t in title]
    return (
        weights,
        sum(title_weights),
        math.sqrt(sum(w * w for w in title_weights)),
        sum(weights.values()),
    )


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
