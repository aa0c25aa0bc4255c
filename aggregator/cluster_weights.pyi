# Types of the compiled module aggregator/cluster_weights.pyx (its docstrings are there).
from collections.abc import Iterable

def weigh(
    tokens: Iterable[str],
    title_tokens: tuple[str, ...],
    counts: dict[str, int],
    documents: int,
    levels: list[float],
    steps: int,
) -> tuple[dict[str, float], float, float, float]: ...
