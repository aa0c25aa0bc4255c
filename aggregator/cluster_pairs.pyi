# Types of the compiled module aggregator/cluster_pairs.pyx (its docstrings are there).

from collections.abc import Callable, Sequence

from aggregator.cluster_score import DocumentFrequencies, Features, Fuzzy, Tuning

def scored_pair(
    a: Features, b: Features, tuning: Tuning, steps: int, floor: float = 0.0
) -> tuple[float, Fuzzy | None]: ...
def best_member(
    features: Features,
    sample: list[int],
    window: dict[int, Features],
    tuning: Tuning,
    steps: int,
    floor: float,
    allowed_misses: int,
    frequencies: DocumentFrequencies,
    reweigh: Callable[[Features, DocumentFrequencies], Features],
) -> tuple[float, int, Fuzzy | None, int] | None: ...
def sample_within(
    features: Features,
    members: Sequence[int],
    window: dict[int, Features],
    size: int,
    window_hours: float,
) -> list[int]: ...
def sample(members: Sequence[int], size: int) -> list[int]: ...
def within(a: Features, b: Features, window_hours: float) -> bool: ...
def fuzzy(a: Features, b: Features, tuning: Tuning, need: float = 0.0) -> Fuzzy: ...
def penalty(a: Features, b: Features, tuning: Tuning) -> tuple[float, bool]: ...
def total(key_words: float, fuzzy: float, penalty: float, tuning: Tuning) -> float: ...
