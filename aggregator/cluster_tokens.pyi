# Types of the compiled module aggregator/cluster_tokens.pyx (its docstrings are there).
from collections.abc import Iterable

def weigh(
    tokens: Iterable[str],
    title_tokens: tuple[str, ...],
    counts: dict[str, int],
    documents: int,
    levels: list[float],
    steps: int,
) -> tuple[dict[str, float], float, float, float]: ...
def count(counts: dict[str, int], tokens: tuple[str, ...]) -> None: ...
def overlap(
    a_title: tuple[str, ...],
    a_weights: dict[str, float],
    a_mass: float,
    b_title: tuple[str, ...],
    b_weights: dict[str, float],
    b_mass: float,
) -> float: ...
