# Types of the compiled module aggregator/token_set.pyx (its docstrings are there).

from collections.abc import Iterable
from enum import IntEnum

class Mark(IntEnum):
    TITLE = 1
    LEAD = 2

def token_set_ratio(
    a: tuple[str, ...],
    a_marks: bytes,
    b: tuple[str, ...],
    b_marks: bytes,
    mark: int,
    score_cutoff: float = 0.0,
) -> float: ...
def marks(tokens: tuple[str, ...], title: Iterable[str], lead: Iterable[str]) -> bytes: ...
