"""The compiled cluster index against a plain model of what it must hold and answer."""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.cluster_index import ClusterIndex
from aggregator.cluster_score import STEPS, WEIGHT_LEVELS

TOKENS = [f"t{n}" for n in range(10)]
# Few distinct weights, so that ties (broken by cluster id) are common.
WEIGHTS = [WEIGHT_LEVELS[level] for level in (1000, 1500, 2000, 2001, 4500)]


class Model:
    """Every member's tokens by cluster; the index answers must follow from it."""

    def __init__(self) -> None:
        self.members: dict[int, list[dict[str, float]]] = {}

    def counts(self, cluster: int) -> Counter[str]:
        return Counter(token for member in self.members.get(cluster, []) for token in member)

    def postings(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for cluster in self.members:
            for token in self.counts(cluster):
                found.setdefault(token, set()).add(cluster)
        return found

    def candidates(
        self, weights: dict[str, float], floor: float, wanted: int, max_postings: int
    ) -> list[int]:
        postings = self.postings()
        shared: Counter[int] = Counter()
        for token, weight in weights.items():
            having = postings.get(token, set())
            if len(having) <= max_postings:
                for cluster in having:
                    shared[cluster] += round(weight * STEPS)
        ranked = [(-total, cluster) for cluster, total in shared.items() if total >= floor]
        return [cluster for _, cluster in heapq.nsmallest(wanted, ranked)]


token_weights = st.dictionaries(st.sampled_from(TOKENS), st.sampled_from(WEIGHTS), max_size=6)
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
    index, model = ClusterIndex(STEPS), Model()
    for op, *args in ops:
        clusters = sorted(model.members)
        if op == "add":
            cluster, weights = args
            index.add(cluster, weights)
            model.members.setdefault(cluster, []).append(weights)
        elif op == "remove" and clusters:
            cluster = clusters[args[0] % len(clusters)]
            members = model.members[cluster]
            weights = members.pop(args[1] % len(members))
            if not members:
                del model.members[cluster]
            index.remove(cluster, weights)
        elif op == "merge" and len(clusters) >= 2:
            absorbed = clusters[args[0] % len(clusters)]
            into = clusters[(args[0] + 1 + args[1] % (len(clusters) - 1)) % len(clusters)]
            index.merge(absorbed, into)
            model.members[into].extend(model.members.pop(absorbed))
        elif op == "candidates":
            weights, floor, wanted, max_postings = args
            expected = model.candidates(weights, floor, wanted, max_postings)
            assert index.candidates(weights, floor, wanted, max_postings) == expected
        for cluster in model.members:
            assert index.tokens_of(cluster) == dict(model.counts(cluster))
        assert index.postings() == model.postings()
        assert len(index) == sum(1 for cluster in model.members if model.counts(cluster))


def test_a_member_leaving_keeps_the_tokens_others_still_have() -> None:
    index = ClusterIndex(STEPS)
    index.add(7, {"merz": 2.0, "haushalt": 3.0})
    index.add(7, {"merz": 2.0, "rente": 4.0})
    index.remove(7, {"merz": 2.0, "haushalt": 3.0})
    assert index.tokens_of(7) == {"merz": 1, "rente": 1}
    assert index.postings() == {"merz": {7}, "rente": {7}}
    index.remove(7, {"merz": 2.0, "rente": 4.0})
    assert index.postings() == {}
    assert len(index) == 0


def test_ties_go_to_the_smaller_cluster_id_and_the_floor_holds() -> None:
    index = ClusterIndex(STEPS)
    for cluster in (30, 10, 20):
        index.add(cluster, {"kanzler": 2.0})
    index.add(40, {"kanzler": 2.0, "wahl": 1.5})
    query = {"kanzler": 2.0, "wahl": 1.5}
    assert index.candidates(query, 0.0, 3, 10) == [40, 10, 20]
    assert index.candidates(query, 2001.0, 3, 10) == [40]
    # A token in more clusters than `max_postings` says nothing.
    assert index.candidates(query, 0.0, 3, 3) == [40]


def test_merging_moves_counts_and_postings() -> None:
    index = ClusterIndex(STEPS)
    index.add(1, {"bundesliga": 3.0, "bayern": 2.0})
    index.add(2, {"bayern": 2.0, "dortmund": 3.0})
    index.merge(2, 1)
    assert index.tokens_of(1) == {"bundesliga": 1, "bayern": 2, "dortmund": 1}
    assert index.tokens_of(2) == {}
    assert index.postings() == {"bundesliga": {1}, "bayern": {1}, "dortmund": {1}}


def test_removing_an_unknown_token_is_an_error_not_a_silent_drift() -> None:
    index = ClusterIndex(STEPS)
    index.add(1, {"wahl": 2.0})
    with pytest.raises(KeyError, match="nachwahl"):
        index.remove(1, {"nachwahl": 2.0})


def test_a_failed_removal_changes_nothing() -> None:
    index = ClusterIndex(STEPS)
    index.add(1, {"wahl": 2.0, "merz": 3.0})
    index.add(2, {"wahl": 2.0})
    before = index.postings(), index.tokens_of(1)
    with pytest.raises(KeyError):
        index.remove(1, {"wahl": 2.0, "merz": 3.0, "nachwahl": 2.0})
    assert (index.postings(), index.tokens_of(1)) == before
    index.remove(1, {"wahl": 2.0, "merz": 3.0})
    assert index.postings() == {"wahl": {2}}


def test_a_failed_search_leaves_nothing_behind_for_the_next() -> None:
    index = ClusterIndex(STEPS)
    index.add(1, {"wahl": 2.0})
    index.add(2, {"wahl": 2.0, "merz": 3.0})
    with pytest.raises(ValueError, match="weight"):
        index.candidates({"wahl": 2.0, "merz": float("nan")}, 0.0, 2, 10)
    assert index.candidates({"wahl": 2.0, "merz": 3.0}, 0.0, 2, 10) == [2, 1]


def test_odd_requests_are_refused_or_empty() -> None:
    index = ClusterIndex(STEPS)
    index.add(1, {"wahl": 2.0})
    assert index.candidates({"wahl": 2.0}, 0.0, 0, 10) == []
    with pytest.raises(ValueError, match="itself"):
        index.merge(1, 1)
    assert index.tokens_of(1) == {"wahl": 1}
