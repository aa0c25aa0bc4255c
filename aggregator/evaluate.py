"""Scoring a clustering against gold labels: BCubed and pairwise metrics.

BCubed (Bagga & Baldwin 1998; Amigó et al. 2009) averages, per item, how much
of its predicted cluster shares its gold label (precision) and how much of its
gold cluster it was put with (recall). Unlike pairwise scores it does not let
one huge cluster dominate, which is why it is the headline figure; pairwise
precision/recall are reported too because they are what a reader of a digest
feels (every wrong pair is a wrong line).

Pure functions over ``{item: label}`` mappings, so benches and tests share them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Metrics:
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    items: int
    gold_clusters: int
    predicted_clusters: int

    def line(self) -> str:
        """One line for terminals and reports."""
        return (
            f"BCubed P {self.bcubed_precision:.3f} R {self.bcubed_recall:.3f} "
            f"F1 {self.bcubed_f1:.3f} | pairwise P {self.pairwise_precision:.3f} "
            f"R {self.pairwise_recall:.3f} F1 {self.pairwise_f1:.3f} | "
            f"{self.items} items, {self.gold_clusters} gold / "
            f"{self.predicted_clusters} predicted clusters"
        )


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _check_same_items(predicted: Mapping[K, Hashable], gold: Mapping[K, Hashable]) -> None:
    if predicted.keys() != gold.keys():
        missing = len(gold.keys() - predicted.keys())
        extra = len(predicted.keys() - gold.keys())
        raise ValueError(
            f"predicted and gold labels cover different items ({missing} missing, {extra} extra)"
        )


def metrics(predicted: Mapping[K, Hashable], gold: Mapping[K, Hashable]) -> Metrics:
    """BCubed and pairwise precision/recall/F1 of `predicted` cluster labels against `gold`.

    Both map every item to a label; labels are only compared for equality.
    An empty input scores 1.0 everywhere (nothing was done wrong).
    """
    _check_same_items(predicted, gold)
    if not gold:
        return Metrics(1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 0)
    joint = Counter((predicted[k], gold[k]) for k in gold)
    pred_sizes = Counter(predicted[k] for k in gold)
    gold_sizes = Counter(gold.values())
    n = len(gold)
    # Every item in the cell (p, g) has the same per-item BCubed values, so sum per cell.
    precision = sum(c * c / pred_sizes[p] for (p, _), c in joint.items()) / n
    recall = sum(c * c / gold_sizes[g] for (_, g), c in joint.items()) / n

    def pairs(count: int) -> int:
        return count * (count - 1) // 2

    true_pairs = sum(pairs(c) for c in joint.values())
    predicted_pairs = sum(pairs(c) for c in pred_sizes.values())
    gold_pairs = sum(pairs(c) for c in gold_sizes.values())
    pair_precision = true_pairs / predicted_pairs if predicted_pairs else 1.0
    pair_recall = true_pairs / gold_pairs if gold_pairs else 1.0
    return Metrics(
        bcubed_precision=precision,
        bcubed_recall=recall,
        bcubed_f1=_f1(precision, recall),
        pairwise_precision=pair_precision,
        pairwise_recall=pair_recall,
        pairwise_f1=_f1(pair_precision, pair_recall),
        items=n,
        gold_clusters=len(gold_sizes),
        predicted_clusters=len(pred_sizes),
    )


@dataclass(frozen=True)
class PairError:
    """Two items the clustering got wrong, with the matcher's score for the pair."""

    a: Hashable
    b: Hashable
    score: float


def pair_errors(
    predicted: Mapping[K, Hashable],
    gold: Mapping[K, Hashable],
    score: Callable[[K, K], float],
    limit: int = 10,
) -> tuple[list[PairError], list[PairError]]:
    """The worst false merges and missed pairs, each sorted by the matcher's score, highest first.

    A high-scoring false merge is a confident mistake (threshold or scorer too
    loose); a high-scoring missed pair is a near miss (threshold too strict).

    Only pairs inside a predicted or a gold cluster are scored, so the cost is
    that of the clusters, not of all pairs.
    """
    _check_same_items(predicted, gold)
    by_pred: dict[Hashable, list[K]] = defaultdict(list)
    by_gold: dict[Hashable, list[K]] = defaultdict(list)
    for key in gold:
        by_pred[predicted[key]].append(key)
        by_gold[gold[key]].append(key)
    false_merges = [
        PairError(a, b, score(a, b))
        for members in by_pred.values()
        for a, b in combinations(members, 2)
        if gold[a] != gold[b]
    ]
    missed = [
        PairError(a, b, score(a, b))
        for members in by_gold.values()
        for a, b in combinations(members, 2)
        if predicted[a] != predicted[b]
    ]
    false_merges.sort(key=lambda e: -e.score)
    missed.sort(key=lambda e: -e.score)
    return false_merges[:limit], missed[:limit]
