"""Tokens as numbers between the normalizer process and the matcher: what goes in comes out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.token_codec import decode, encode

token_lists = st.lists(st.lists(st.text(min_size=1, max_size=8), max_size=12), max_size=6)


@given(token_lists)
def test_tokens_come_back_as_the_same_shared_strings(entries: list[list[str]]) -> None:
    numbers: dict[str, int] = {}
    vocabulary: list[str] = []  # the receiver's: what `new` brought, in order
    for tokens in entries:
        new: list[str] = []
        data = encode(tuple(tokens), numbers, new)
        vocabulary.extend(new)
        assert len(data) == 4 * len(tokens)
        decoded = decode(data, vocabulary)
        assert decoded == tuple(tokens)
        # One string object per token on the receiving side, whichever entry it came in.
        assert all(token is vocabulary[numbers[token]] for token in decoded)
    assert len(vocabulary) == len(numbers) == len({t for tokens in entries for t in tokens})


def test_only_tokens_not_sent_before_travel() -> None:
    numbers: dict[str, int] = {}
    first: list[str] = []
    encode(("merz", "haushalt"), numbers, first)
    second: list[str] = []
    encode(("haushalt", "rente", "merz"), numbers, second)
    assert (first, second) == (["merz", "haushalt"], ["rente"])


def test_a_number_beyond_the_vocabulary_is_an_error() -> None:
    data = encode(("a", "b"), {}, [])
    with pytest.raises(IndexError, match="token number 1"):
        decode(data, ["a"])


def test_bytes_that_are_no_whole_number_of_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="3 bytes"):
        decode(b"\0\0\0", ["a"])
