"""`token_set` against rapidfuzz's `fuzz.token_set_ratio` on the texts the tokens came from.

The matcher's decisions must not move by a bit when the ratio is computed
from sorted token sets instead of by rapidfuzz, so every comparison is `==`.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from aggregator.token_set import Mark, marks, token_set_ratio

# Words that drawn texts often share, characters of 1, 2 and 4 bytes in a str
# (also mixed in one text), and words past 64 and 128 characters: the edit
# distance works on 64-character words of bits.
WORDS = [
    "merz", "haushalt", "straße", "győr", "bund", "wahl", "🙂", "1:2", "2:2", "0,75", "2024",
    "a", "ab", "abc", "b", "ä", "żurek", "z" * 70, "straßenbahn" * 12, "ł" * 65,
]  # fmt: skip
words = st.lists(st.sampled_from(WORDS), max_size=14)
cutoffs = st.sampled_from([0.0, 30.0, 50.0, 99.99, 100.0, 100.5]) | st.floats(0.0, 100.0)


def prepared(title: list[str], lead: list[str]) -> tuple[tuple[str, ...], bytes]:
    """An entry's sorted distinct tokens and their marks, as the analysis makes them."""
    tokens = tuple(sorted({*title, *lead}))
    return tokens, marks(tokens, title, lead)


@settings(max_examples=2000)
@given(a_title=words, a_lead=words, b_title=words, b_lead=words, cutoff=cutoffs)
def test_the_ratio_is_rapidfuzzs_of_the_texts(
    a_title: list[str], a_lead: list[str], b_title: list[str], b_lead: list[str], cutoff: float
) -> None:
    a, a_marks = prepared(a_title, a_lead)
    b, b_marks = prepared(b_title, b_lead)
    for mark, a_words, b_words in ((Mark.TITLE, a_title, b_title), (Mark.LEAD, a_lead, b_lead)):
        expected = fuzz.token_set_ratio(" ".join(a_words), " ".join(b_words), score_cutoff=cutoff)
        assert token_set_ratio(a, a_marks, b, b_marks, mark, cutoff) == expected


def test_long_texts_of_random_letters_are_rapidfuzzs() -> None:
    """Differences of hundreds of characters, many of them outside Latin-1, in few words."""
    rng = random.Random(5)
    letters = "abcdeäöüßłżεж" + "🙂"
    for _ in range(3000):
        texts = [
            [
                "".join(rng.choice(letters) for _ in range(rng.randint(1, 90)))
                for _ in range(rng.randint(0, 8))
            ]
            for _ in range(2)
        ]
        shared = texts[0][: rng.randint(0, len(texts[0]))]
        b_words = texts[1] + shared
        a, a_marks = prepared([], texts[0])
        b, b_marks = prepared([], b_words)
        cutoff = rng.choice([0.0, rng.uniform(0.0, 100.0)])
        expected = fuzz.token_set_ratio(" ".join(texts[0]), " ".join(b_words), score_cutoff=cutoff)
        assert token_set_ratio(a, a_marks, b, b_marks, Mark.LEAD, cutoff) == expected


@given(title=words, lead=words)
def test_the_marks_say_which_text_holds_each_token(title: list[str], lead: list[str]) -> None:
    tokens, found = prepared(title, lead)
    assert len(found) == len(tokens)
    for token, mark in zip(tokens, found, strict=True):
        assert bool(mark & Mark.TITLE) == (token in title)
        assert bool(mark & Mark.LEAD) == (token in lead)


def test_a_mark_for_each_token_is_required() -> None:
    with pytest.raises(ValueError, match="a mark for each token"):
        token_set_ratio(("a", "b"), b"\x01", ("a",), b"\x01", Mark.TITLE)
