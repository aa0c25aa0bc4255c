"""The candidate search: the pruned top-k equals the full sum over every posting."""

from __future__ import annotations

import heapq

from hypothesis import example, given, settings
from hypothesis import strategies as st

from aggregator.cluster_candidates import Term, most_shared


def full_sum(terms: list[Term], floor: float, wanted: int) -> list[int]:
    """What the index answered before pruning: every posting of every token visited."""
    shared: dict[int, int] = {}
    for weight, posting in terms:
        for cluster in posting:
            shared[cluster] = shared.get(cluster, 0) + weight
    ranked = [(-total, cluster) for cluster, total in shared.items() if total >= floor]
    return [cluster for _, cluster in heapq.nsmallest(wanted, ranked)]


# Few clusters and a few distinct weights, so that ties (broken by id) and
# clusters met only in the light tokens are common.
terms_strategy = st.lists(
    st.tuples(
        st.sampled_from([1000, 1500, 2000, 2001, 4500, 9000]),
        st.sets(st.integers(min_value=1, max_value=30), max_size=25),
    ),
    max_size=12,
)


@settings(max_examples=400)
@given(
    terms=terms_strategy,
    floor=st.sampled_from([0.0, 500.0, 2000.0, 4000.0, 12000.0]),
    wanted=st.integers(min_value=1, max_value=10),
)
@example(  # the best two are only known once the lightest token is counted
    terms=[(9000, {1}), (4500, {2}), (4500, {3}), (1000, {2, 3})], floor=0.0, wanted=2
)
@example(  # a tie at the bar: the smaller id wins, as in the full sum
    terms=[(2000, {5, 4}), (1000, {7}), (1000, {6})], floor=0.0, wanted=3
)
def test_the_pruned_search_ranks_as_the_full_sum(
    terms: list[Term], floor: float, wanted: int
) -> None:
    expected = full_sum(terms, floor, wanted)
    assert most_shared(list(terms), floor, wanted) == expected


def test_a_cluster_met_only_in_light_tokens_is_left_out_only_when_it_cannot_win() -> None:
    heavy = (9000, {1, 2})
    light = [(1000, {3}), (1000, {3}), (1000, {3})]
    # 3 shares 3,000 in all, below both 9,000s: the light tokens need no walk.
    assert most_shared([heavy, *light], 0.0, 2) == [1, 2]
    # With room for a third candidate it is found all the same.
    assert most_shared([heavy, *light], 0.0, 3) == [1, 2, 3]
    # Below the floor it is never a candidate.
    assert most_shared([heavy, *light], 3001.0, 3) == [1, 2]


def test_no_terms_no_candidates() -> None:
    assert most_shared([], 0.0, 2) == []
