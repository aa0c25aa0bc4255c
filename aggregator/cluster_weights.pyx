# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""IDF weights of an entry's tokens, compiled: the matcher's busiest loop once the index was.

Every entry is weighed on arrival, and every sampled member again when the
collection has grown: one logarithm, a dictionary lookup and a dictionary
insert per token, 40 or more tokens an entry with a lead. In Python that was
a fifth of the deciding process's time. The arithmetic is the one Python
did (C's `log`, which `math.log` calls, and rounding half to even, as
`round`), so the weights are the same values.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.math cimport log, nearbyint, sqrt


def weigh(tokens, tuple title_tokens, counts, Py_ssize_t documents, list levels, int steps):
    """(weights, title mass, title length, total mass) of `tokens` among `documents` seen.

    A token's weight is `levels[round((ln((documents + 1) / (count + 1)) + 1) * steps)]`,
    `count` being how many documents had it (`counts`, missing: 0). `title_tokens`
    are among `tokens`; the sums run in the order of the tokens given.
    """
    if not isinstance(counts, dict):  # a Counter is one; its lookups must not call __missing__
        raise TypeError(f"counts must be a dict, not {type(counts).__name__}")
    cdef dict weights = {}
    cdef double seen = <double>(documents + 1)
    cdef double total = 0.0, mass = 0.0, squares = 0.0, value
    cdef Py_ssize_t count, level, top = PyList_GET_SIZE(levels) - 1
    cdef PyObject* found
    cdef object weight
    for token in tokens:
        found = PyDict_GetItem(counts, token)
        count = 0 if found == NULL else <Py_ssize_t><object>found
        level = <Py_ssize_t>nearbyint((log(seen / <double>(count + 1)) + 1.0) * steps)
        if level > top:
            raise OverflowError(f"weight level {level} is beyond the table of {top + 1}")
        weight = <object>PyList_GET_ITEM(levels, level)
        weights[token] = weight
        total += <double>weight
    for token in title_tokens:
        value = <double>weights[token]
        mass += value
        squares += value * value
    return weights, mass, sqrt(squares), total
