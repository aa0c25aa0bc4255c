"""The compiled token loops against the formulas they implement, written out in Python."""

from __future__ import annotations

import math
from array import array
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.cluster_score import STEPS, TOP_LEVEL
from aggregator.cluster_tokens import count, overlap, title_dot, weigh

WORDS = [f"w{n}" for n in range(12)]


def weigh_in_python(
    tokens: tuple[str, ...], title: tuple[str, ...], counts: Counter[str], documents: int
) -> tuple[bytes, float, float, float]:
    """IDF level of each token then of each title token; title sum and length; sum of all."""
    levels = {
        t: round((math.log((documents + 1) / (counts.get(t, 0) + 1)) + 1.0) * STEPS) for t in tokens
    }
    mass = squares = total = 0.0
    for t in title:  # left to right: `sum` compensates rounding from Python 3.12 on
        mass += levels[t] / STEPS
        squares += (levels[t] / STEPS) * (levels[t] / STEPS)
    for t in tokens:
        total += levels[t] / STEPS
    laid_out = array("H", [levels[t] for t in (*tokens, *title)]).tobytes()
    return laid_out, mass, math.sqrt(squares), total


def laid_out(levels: dict[str, int], title: tuple[str, ...]) -> tuple[tuple[str, ...], bytes]:
    """Sorted tokens and their levels then the title's, as `weigh` returns them."""
    tokens = tuple(sorted(levels))
    return tokens, array("H", [levels[t] for t in (*tokens, *title)]).tobytes()


@given(
    tokens=st.lists(st.sampled_from(WORDS), unique=True).map(lambda t: tuple(sorted(t))),
    counts=st.dictionaries(st.sampled_from(WORDS), st.integers(1, 10**6)),
    extra=st.integers(0, 10**6),
    data=st.data(),
)
def test_weights_are_the_formulas(
    tokens: tuple[str, ...], counts: dict[str, int], extra: int, data: st.DataObject
) -> None:
    documents = max(counts.values(), default=0) + extra
    title = tuple(data.draw(st.lists(st.sampled_from(tokens), unique=True)) if tokens else [])
    frequencies = Counter(counts)
    got = weigh(tokens, title, frequencies, documents, STEPS, TOP_LEVEL)
    assert got == weigh_in_python(tokens, title, frequencies, documents)


def test_a_rarer_token_weighs_more_and_an_unseen_one_most() -> None:
    levels, *_ = weigh(
        ("haushalt", "merz", "neu"), (), Counter(haushalt=50, merz=5), 100, STEPS, TOP_LEVEL
    )
    haushalt, merz, neu = array("H", levels)
    assert haushalt < merz < neu
    assert neu == round((math.log(101) + 1) * STEPS)


def test_tokens_must_be_sorted_and_distinct() -> None:
    for tokens in (("merz", "haushalt"), ("merz", "merz")):
        with pytest.raises(ValueError, match="sorted and distinct"):
            weigh(tokens, (), Counter(), 1, STEPS, TOP_LEVEL)


def test_counts_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="counts must be a dict"):
        weigh(("a",), (), [("a", 1)], 1, STEPS, TOP_LEVEL)  # type: ignore[arg-type]


@given(st.lists(st.lists(st.sampled_from(WORDS), max_size=8), max_size=8))
def test_counting_is_counter_update(documents: list[list[str]]) -> None:
    counts: Counter[str] = Counter()
    for tokens in documents:
        count(counts, tuple(tokens))
    assert counts == Counter(token for tokens in documents for token in tokens)


def containment_in_python(
    title: tuple[str, ...], levels: dict[str, int], mass: float, found: dict[str, int]
) -> float:
    if not mass:
        return 0.0
    shared = 0.0
    for t in title:
        if t in found:
            shared += levels[t] / STEPS
    return shared / mass


@given(
    a=st.dictionaries(st.sampled_from(WORDS), st.integers(1000, 9000)),
    b=st.dictionaries(st.sampled_from(WORDS), st.integers(1000, 9000)),
    data=st.data(),
)
def test_overlap_is_both_containments(
    a: dict[str, int], b: dict[str, int], data: st.DataObject
) -> None:
    # b's tokens equal a's without being the same objects: the search compares texts.
    b = {t[:1] + t[1:]: level for t, level in b.items()}
    a_title = tuple(data.draw(st.lists(st.sampled_from(sorted(a)), unique=True)) if a else [])
    b_title = tuple(data.draw(st.lists(st.sampled_from(sorted(b)), unique=True)) if b else [])
    a_mass = math.fsum(a[t] / STEPS for t in a_title)
    b_mass = math.fsum(b[t] / STEPS for t in b_title)
    expected = 50.0 * (
        containment_in_python(a_title, a, a_mass, b) + containment_in_python(b_title, b, b_mass, a)
    )
    got = overlap(
        a_title, *laid_out(a, a_title), a_mass, b_title, *laid_out(b, b_title), b_mass, STEPS
    )
    assert got == expected


def test_a_headline_found_whole_in_the_other_counts_fully() -> None:
    a_title, b_title = ("merz", "haushalt"), ("streit",)
    a = laid_out({"merz": 2000, "haushalt": 3000}, a_title)
    b = laid_out({"merz": 2000, "haushalt": 3000, "streit": 4000}, b_title)
    # a's headline is all in b; b's headline ("streit") is not in a.
    assert overlap(a_title, *a, 5.0, b_title, *b, 4.0, STEPS) == 50.0
    assert overlap((), (), b"", 0.0, (), (), b"", 0.0, STEPS) == 0.0


@pytest.mark.parametrize("count", [100, -1])
def test_a_count_the_documents_cannot_have_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="outside the table"):
        weigh(("a",), (), Counter(a=count), 5, STEPS, TOP_LEVEL)


@given(
    levels=st.dictionaries(st.sampled_from(WORDS), st.integers(1000, TOP_LEVEL)),
    profile=st.dictionaries(st.sampled_from(WORDS), st.integers(1, 50)),
    data=st.data(),
)
def test_title_dot_is_the_python_sum(
    levels: dict[str, int], profile: dict[str, int], data: st.DataObject
) -> None:
    drawn = data.draw(st.lists(st.sampled_from(sorted(levels)), unique=True)) if levels else []
    title = tuple(drawn)
    expected = sum((levels[t] / STEPS) ** 2 * profile[t] for t in title if t in profile)
    assert title_dot(title, *laid_out(levels, title), Counter(profile), STEPS) == expected


def test_title_dot_squares_every_level_as_python_does() -> None:
    # A compiler makes pow(w, 2.0) w * w, which differs in the last bit for some levels.
    for level in range(TOP_LEVEL + 1):
        got = title_dot(("a",), *laid_out({"a": level}, ("a",)), {"a": 1}, STEPS)
        assert got == (level / STEPS) ** 2, level
