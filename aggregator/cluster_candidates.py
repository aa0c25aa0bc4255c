"""Which clusters an entry is scored against: the few sharing the most of its token weight.

The window's index maps each token to the clusters having it. Summing an
entry's weight over every posting of every token costs what the postings are
long: several hundred visits an entry in a busy window whose outlets share a
vocabulary (a day of one country's politics). Most visits cannot change the
answer. With the tokens taken heaviest first, once those left weigh less than
the `wanted`-th best sum so far (or than the floor), no cluster not met yet
can get into the answer: the MaxScore bound of top-k retrieval. The clusters
already met only need their sums completed, a membership test each instead of
a walk along a long posting, and only for those whose partial sum plus
the weight left can still reach the best ones'.

Weights are whole numbers (thousandths, the levels of
`cluster_score.WEIGHT_LEVELS`), so a sum is exact in whatever order its
tokens are visited: the answer is the one the full sum gives.
"""

from __future__ import annotations

import heapq
from operator import itemgetter

__all__ = ["Term", "most_shared"]

# A token of the entry: its weight (thousandths) and the clusters having it.
Term = tuple[int, set[int]]


def most_shared(terms: list[Term], floor: float, wanted: int) -> list[int]:
    """The `wanted` clusters sharing the most weight, at least `floor`; highest first, ties by id.

    Sorts `terms` in place. Exactly the clusters a full sum over every
    posting would rank first.
    """
    terms.sort(key=itemgetter(0), reverse=True)
    rest = sum(weight for weight, _ in terms)  # weight of the terms not visited yet
    shared: dict[int, int] = {}
    get = shared.get
    # The `wanted` best sums so far: sums only grow, so a cluster leaves this
    # table only for one that overtook it, and its smallest is the bar a
    # cluster not met yet must be able to reach.
    best: dict[int, int] = {}
    kth = 0
    bar = floor
    visited = 0
    while visited < len(terms) and rest >= bar:
        weight, posting = terms[visited]
        visited += 1
        rest -= weight
        for cluster in posting:
            total = shared[cluster] = get(cluster, 0) + weight
            if total > kth:
                if cluster not in best and len(best) >= wanted:
                    del best[min(best, key=best.__getitem__)]
                best[cluster] = total
                if len(best) >= wanted:
                    kth = min(best.values())
        bar = max(floor, kth)
    # Only clusters met so far can get in. Complete the sums of the best ones
    # first, then of the others from the highest partial sum down: the
    # `wanted`-th best complete sum is a bar that a partial sum plus the
    # weight left must reach, and once one cannot, none after it can.
    rest_terms = terms[visited:]
    complete = {cluster: _completed(shared[cluster], cluster, rest_terms) for cluster in best}
    if len(complete) >= wanted:
        bar = max(bar, min(complete.values()))
    others = [
        (total, cluster)
        for cluster, total in shared.items()
        if total + rest >= bar and cluster not in complete
    ]
    others.sort(reverse=True)
    for total, cluster in others:
        if total + rest < bar:
            break
        complete[cluster] = final = _completed(total, cluster, rest_terms)
        if final > bar:
            bar = max(bar, heapq.nlargest(wanted, complete.values())[-1])
    # (-sum, id) pairs order as wanted without a key function called per cluster.
    ranked = [(-total, cluster) for cluster, total in complete.items() if total >= floor]
    return [cluster for _, cluster in heapq.nsmallest(wanted, ranked)]


def _completed(partial: int, cluster: int, terms: list[Term]) -> int:
    """`partial` plus the weight of the `terms` whose postings hold `cluster`."""
    return partial + sum([weight for weight, posting in terms if cluster in posting])
