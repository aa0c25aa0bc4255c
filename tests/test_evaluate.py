"""Metrics on examples small enough to compute by hand."""

from __future__ import annotations

import pytest

from aggregator.evaluate import metrics, pair_errors


def test_perfect_clustering_scores_one() -> None:
    gold = {1: "a", 2: "a", 3: "b"}
    result = metrics({1: 10, 2: 10, 3: 11}, gold)
    assert result.bcubed_f1 == pytest.approx(1.0)
    assert result.pairwise_f1 == pytest.approx(1.0)


def test_hand_computed_example() -> None:
    # gold {1,2,3} {4,5}; predicted {1,2} {3,4,5}
    gold = {1: "a", 2: "a", 3: "a", 4: "b", 5: "b"}
    predicted = {1: "x", 2: "x", 3: "y", 4: "y", 5: "y"}
    result = metrics(predicted, gold)
    # precision per item: 1, 1, 1/3, 2/3, 2/3 -> 11/3 / 5
    assert result.bcubed_precision == pytest.approx(11 / 15)
    # recall per item: 2/3, 2/3, 1/3, 1, 1 -> 11/3 / 5
    assert result.bcubed_recall == pytest.approx(11 / 15)
    # pairs: predicted {12, 34, 35, 45}, gold {12, 13, 23, 45}; correct {12, 45}
    assert result.pairwise_precision == pytest.approx(2 / 4)
    assert result.pairwise_recall == pytest.approx(2 / 4)
    assert (result.gold_clusters, result.predicted_clusters) == (2, 2)


def test_all_singletons_have_full_precision_and_no_pairs() -> None:
    gold = {1: "a", 2: "a"}
    result = metrics({1: 1, 2: 2}, gold)
    assert result.bcubed_precision == pytest.approx(1.0)
    assert result.bcubed_recall == pytest.approx(0.5)
    assert result.pairwise_precision == pytest.approx(1.0)
    assert result.pairwise_recall == pytest.approx(0.0)
    assert result.pairwise_f1 == pytest.approx(0.0)


def test_mismatched_items_are_refused() -> None:
    with pytest.raises(ValueError, match="1 missing"):
        metrics({1: "x"}, {1: "a", 2: "a"})


def test_pair_errors_sorted_by_score() -> None:
    gold = {1: "a", 2: "a", 3: "b", 4: "c"}
    predicted = {1: "x", 2: "y", 3: "z", 4: "z"}
    scores = {(1, 2): 40.0, (3, 4): 55.0}

    def score(a: int, b: int) -> float:
        return scores[(min(a, b), max(a, b))]

    false_merges, missed = pair_errors(predicted, gold, score)
    assert [(e.a, e.b, e.score) for e in false_merges] == [(3, 4, 55.0)]
    assert [(e.a, e.b, e.score) for e in missed] == [(1, 2, 40.0)]
