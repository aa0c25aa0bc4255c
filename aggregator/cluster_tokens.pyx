# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The matcher's loops over an entry's tokens, compiled: counting, weighing, key-word overlap.

Every entry is counted and weighed on arrival (every sampled member again
when the collection has grown) and its headline's key words are looked up in
each member it is scored against: a dictionary operation or two per token,
40 or more tokens an entry with a lead. In Python these loops were about a
third of the deciding process's time once the index was compiled. The
arithmetic is the one the Python did (C's `log`, which `math.log` calls;
rounding half to even, as `round`; sums in the same order), so the results
are the same values.
"""

from cpython.dict cimport PyDict_Contains, PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.math cimport log, nearbyint, sqrt


def count(counts, tuple tokens not None):
    """One more document with each of `tokens` in `counts` (a dict, e.g. a Counter)."""
    _check_dict(counts)
    cdef PyObject* found
    for token in tokens:
        found = PyDict_GetItem(counts, token)
        PyDict_SetItem(counts, token, 1 if found == NULL else <object>found + 1)


def weigh(
    tokens, tuple title_tokens not None, counts, Py_ssize_t documents, list levels not None,
    int steps,
):
    """(weights, title mass, title length, total mass) of `tokens` among `documents` seen.

    A token's weight is `levels[round((ln((documents + 1) / (count + 1)) + 1) * steps)]`,
    `count` being how many documents had it (`counts`, missing: 0). `title_tokens`
    are among `tokens`; the sums run in the order of the tokens given.
    """
    _check_dict(counts)
    cdef dict weights = {}
    cdef double seen = <double>(documents + 1)
    cdef double total = 0.0, mass = 0.0, squares = 0.0, value
    cdef Py_ssize_t count, top = PyList_GET_SIZE(levels) - 1
    cdef double level
    cdef PyObject* found
    for token in tokens:
        found = PyDict_GetItem(counts, token)
        count = 0 if found == NULL else <Py_ssize_t><object>found
        level = nearbyint((log(seen / <double>(count + 1)) + 1.0) * steps)
        if not 0 <= level <= top:  # NaN too: a count above the documents, or below 0
            raise ValueError(
                f"token {token!r}: {count} of {documents} documents gives weight level {level}, "
                f"outside the table of {top + 1}"
            )
        weights[token] = <object>PyList_GET_ITEM(levels, <Py_ssize_t>level)
    for weight in weights.values():  # each token once, in the order given
        total += <double>weight
    for token in title_tokens:
        value = <double>weights[token]
        mass += value
        squares += value * value
    return weights, mass, sqrt(squares), total


def overlap(
    tuple a_title not None, dict a_weights not None, double a_mass,
    tuple b_title not None, dict b_weights not None, double b_mass,
):
    """Each headline's weight found among the other entry's tokens, as shares: 50 * (a in b + b in a)."""
    return 50.0 * (_containment(a_title, a_weights, a_mass, b_weights)
                   + _containment(b_title, b_weights, b_mass, a_weights))


cdef double _containment(tuple title, dict weights, double mass, dict found) except? -1.0:
    """IDF-weighted share of `title`'s tokens (weights in `weights`) that are keys of `found`."""
    if not mass:
        return 0.0
    cdef double shared = 0.0
    # In headline order, not over a set: a set's order depends on the process's
    # string hash seed, and so would the last bits of the sum.
    for token in title:
        if PyDict_Contains(found, token):
            shared += <double>weights[token]
    return shared / mass


cdef int _check_dict(object counts) except -1:
    if not isinstance(counts, dict):  # a Counter is one; its lookups must not call __missing__
        raise TypeError(f"counts must be a dict, not {type(counts).__name__}")
    return 0
