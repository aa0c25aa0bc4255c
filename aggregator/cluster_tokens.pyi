# Types of the compiled module aggregator/cluster_tokens.pyx (its docstrings are there).

def weigh(
    tokens: tuple[str, ...],
    title_tokens: tuple[str, ...],
    counts: dict[str, int],
    documents: int,
    steps: int,
    top: int,
) -> tuple[bytes, float, float, float]: ...
def count(counts: dict[str, int], tokens: tuple[str, ...]) -> None: ...
def overlap(
    a_title: tuple[str, ...],
    a_tokens: tuple[str, ...],
    a_levels: bytes,
    a_mass: float,
    b_title: tuple[str, ...],
    b_tokens: tuple[str, ...],
    b_levels: bytes,
    b_mass: float,
    steps: int,
) -> float: ...
def title_dot(
    title: tuple[str, ...],
    tokens: tuple[str, ...],
    levels: bytes,
    profile: dict[str, int],
    steps: int,
) -> float: ...
