"""The compiled cluster index against a plain model of what it must hold and answer."""

from __future__ import annotations

import heapq
from array import array
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.cluster_index import ClusterIndex

TOKENS = [f"t{n}" for n in range(10)]
# Few distinct levels, so that ties (broken by cluster id) are common.
LEVELS = [1000, 1500, 2000, 2001, 4500]


def levels(weights: dict[str, int]) -> bytes:
    """The tokens' levels as `cluster_tokens.weigh` lays them out."""
    return array("H", weights.values()).tobytes()


class Model:
    """Every member's tokens by cluster; the index answers must follow from it."""

    def __init__(self) -> None:
        self.members: dict[int, list[dict[str, int]]] = {}

    def counts(self, cluster: int) -> Counter[str]:
        return Counter(token for member in self.members.get(cluster, []) for token in member)

    def postings(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for cluster in self.members:
            for token in self.counts(cluster):
                found.setdefault(token, set()).add(cluster)
        return found

    def candidates(
        self, weights: dict[str, int], floor: float, wanted: int, max_postings: int
    ) -> list[int]:
        postings = self.postings()
        shared: Counter[int] = Counter()
        for token, weight in weights.items():
            having = postings.get(token, set())
            if len(having) <= max_postings:
                for cluster in having:
                    shared[cluster] += weight
        ranked = [(-total, cluster) for cluster, total in shared.items() if total >= floor]
        return [cluster for _, cluster in heapq.nsmallest(wanted, ranked)]


token_weights = st.dictionaries(st.sampled_from(TOKENS), st.sampled_from(LEVELS), max_size=6)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 8), token_weights),
        st.tuples(st.just("remove"), st.integers(0, 100), st.integers(0, 100)),
        st.tuples(st.just("merge"), st.integers(0, 100), st.integers(0, 100)),
        st.tuples(
            st.just("candidates"),
            token_weights,
            st.sampled_from([0.0, 1000.0, 3000.0, 6000.0]),
            st.integers(1, 4),
            st.integers(1, 6),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_the_index_holds_and_answers_what_its_members_say(ops: list[tuple[Any, ...]]) -> None:
    index, model = ClusterIndex(), Model()
    for op, *args in ops:
        clusters = sorted(model.members)
        if op == "add":
            cluster, weights = args
            index.add(cluster, tuple(weights))
            model.members.setdefault(cluster, []).append(weights)
        elif op == "remove" and clusters:
            cluster = clusters[args[0] % len(clusters)]
            members = model.members[cluster]
            weights = members.pop(args[1] % len(members))
            if not members:
                del model.members[cluster]
            index.remove(cluster, tuple(weights))
        elif op == "merge" and len(clusters) >= 2:
            absorbed = clusters[args[0] % len(clusters)]
            into = clusters[(args[0] + 1 + args[1] % (len(clusters) - 1)) % len(clusters)]
            index.merge(absorbed, into)
            model.members[into].extend(model.members.pop(absorbed))
        elif op == "candidates":
            weights, floor, wanted, max_postings = args
            expected = model.candidates(weights, floor, wanted, max_postings)
            found = index.candidates(tuple(weights), levels(weights), floor, wanted, max_postings)
            assert found == expected
        for cluster in model.members:
            assert index.tokens_of(cluster) == dict(model.counts(cluster))
        assert index.postings() == model.postings()
        assert len(index) == sum(1 for cluster in model.members if model.counts(cluster))


def test_a_member_leaving_keeps_the_tokens_others_still_have() -> None:
    index = ClusterIndex()
    index.add(7, ("merz", "haushalt"))
    index.add(7, ("merz", "rente"))
    index.remove(7, ("merz", "haushalt"))
    assert index.tokens_of(7) == {"merz": 1, "rente": 1}
    assert index.postings() == {"merz": {7}, "rente": {7}}
    index.remove(7, ("merz", "rente"))
    assert index.postings() == {}
    assert len(index) == 0


def test_ties_go_to_the_smaller_cluster_id_and_the_floor_holds() -> None:
    index = ClusterIndex()
    for cluster in (30, 10, 20):
        index.add(cluster, ("kanzler",))
    index.add(40, ("kanzler", "wahl"))
    query, weights = ("kanzler", "wahl"), levels({"kanzler": 2000, "wahl": 1500})
    assert index.candidates(query, weights, 0.0, 3, 10) == [40, 10, 20]
    assert index.candidates(query, weights, 2001.0, 3, 10) == [40]
    # A token in more clusters than `max_postings` says nothing.
    assert index.candidates(query, weights, 0.0, 3, 3) == [40]


def test_merging_moves_counts_and_postings() -> None:
    index = ClusterIndex()
    index.add(1, ("bundesliga", "bayern"))
    index.add(2, ("bayern", "dortmund"))
    index.merge(2, 1)
    assert index.tokens_of(1) == {"bundesliga": 1, "bayern": 2, "dortmund": 1}
    assert index.tokens_of(2) == {}
    assert index.postings() == {"bundesliga": {1}, "bayern": {1}, "dortmund": {1}}


def test_removing_an_unknown_token_is_an_error_not_a_silent_drift() -> None:
    index = ClusterIndex()
    index.add(1, ("wahl",))
    with pytest.raises(KeyError, match="nachwahl"):
        index.remove(1, ("nachwahl",))


def test_a_failed_removal_changes_nothing() -> None:
    index = ClusterIndex()
    index.add(1, ("wahl", "merz"))
    index.add(2, ("wahl",))
    before = index.postings(), index.tokens_of(1)
    with pytest.raises(KeyError):
        index.remove(1, ("wahl", "merz", "nachwahl"))
    assert (index.postings(), index.tokens_of(1)) == before
    index.remove(1, ("wahl", "merz"))
    assert index.postings() == {"wahl": {2}}


def test_a_failed_search_leaves_nothing_behind_for_the_next() -> None:
    index = ClusterIndex()
    index.add(1, ("wahl",))
    index.add(2, ("wahl", "merz"))
    with pytest.raises(ValueError, match="levels for 2 tokens"):
        index.candidates(("wahl", "merz"), levels({"wahl": 2000}), 0.0, 2, 10)
    query = {"wahl": 2000, "merz": 3000}
    assert index.candidates(tuple(query), levels(query), 0.0, 2, 10) == [2, 1]


def test_odd_requests_are_refused_or_empty() -> None:
    index = ClusterIndex()
    index.add(1, ("wahl",))
    assert index.candidates(("wahl",), levels({"wahl": 2000}), 0.0, 0, 10) == []
    with pytest.raises(ValueError, match="itself"):
        index.merge(1, 1)
    assert index.tokens_of(1) == {"wahl": 1}
