# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The matcher's loops over an entry's tokens, compiled: counting, weighing, key-word overlap.

Every entry is counted and weighed on arrival (every sampled member again
when the collection has grown) and its headline's key words are looked up in
each member it is scored against: a dictionary operation or two per token,
40 or more tokens an entry with a lead. In Python these loops were about a
third of the deciding process's time once the index was compiled. The
arithmetic is the one the Python did (C's `log`, which `math.log` calls;
rounding half to even, as `round`; a level `l` weighs `l / steps`, as Python's
true division of two ints gives it; sums in the same order), so the results
are the same values.

An entry's weights are levels (whole numbers of `1 / steps`), two bytes each
in one `bytes` object: first its tokens' (sorted, distinct), then its
headline tokens'. A window of 100,000 entries held them as a dict of about
0.8 KB an entry; the sorted tuple of tokens is the analysis's own, so this
costs about 0.1 KB more.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.object cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_Compare
from libc.math cimport log, nearbyint, sqrt
from libc.stdint cimport uint16_t


def count(counts, tuple tokens not None):
    """One more document with each of `tokens` in `counts` (a dict, e.g. a Counter)."""
    _check_dict(counts)
    cdef PyObject* found
    for token in tokens:
        found = PyDict_GetItem(counts, token)
        PyDict_SetItem(counts, token, 1 if found == NULL else <object>found + 1)


def weigh(
    tuple tokens not None, tuple title_tokens not None, counts, Py_ssize_t documents,
    int steps, Py_ssize_t top,
):
    """(levels, title mass, title length, total mass) of `tokens` among `documents` seen.

    A token's level is `round((ln((documents + 1) / (count + 1)) + 1) * steps)`,
    at most `top`, `count` being how many documents had it (`counts`, missing:
    0); its weight is `level / steps`. `tokens` are sorted and distinct (their
    overlap with a headline is a binary search); `title_tokens` are among
    them. `levels` holds the tokens' levels and then the title tokens', as
    native unsigned 16-bit numbers; the sums run in the order of the tokens given.
    """
    _check_dict(counts)
    if top > 65535:
        raise ValueError(f"{top + 1} weight levels do not fit in 16 bits")
    cdef Py_ssize_t n = PyTuple_GET_SIZE(tokens), m = PyTuple_GET_SIZE(title_tokens), i
    for i in range(1, n):
        if _compare(<object>PyTuple_GET_ITEM(tokens, i - 1), <object>PyTuple_GET_ITEM(tokens, i)) >= 0:
            raise ValueError("tokens must be sorted and distinct")
    levels = PyBytes_FromStringAndSize(NULL, 2 * (n + m))
    cdef uint16_t* out = <uint16_t*>PyBytes_AS_STRING(levels)
    cdef double total = 0.0, mass = 0.0, squares = 0.0, value
    for i in range(n):
        out[i] = _level(<object>PyTuple_GET_ITEM(tokens, i), counts, documents, steps, top)
        total += <double>out[i] / steps
    for i in range(m):
        out[n + i] = _level(<object>PyTuple_GET_ITEM(title_tokens, i), counts, documents, steps, top)
        value = <double>out[n + i] / steps
        mass += value
        squares += value * value
    return levels, mass, sqrt(squares), total


cdef uint16_t _level(object token, object counts, Py_ssize_t documents, int steps, Py_ssize_t top) except? 65535:
    cdef PyObject* found = PyDict_GetItem(counts, token)
    cdef Py_ssize_t count = 0 if found == NULL else <Py_ssize_t><object>found
    cdef double level = nearbyint((log(<double>(documents + 1) / <double>(count + 1)) + 1.0) * steps)
    if not 0 <= level <= top:  # NaN too: a count above the documents, or below 0
        raise ValueError(
            f"token {token!r}: {count} of {documents} documents gives weight level {level}, "
            f"outside the table of {top + 1}"
        )
    return <uint16_t>level


def overlap(
    tuple a_title, tuple a_tokens, bytes a_levels, double a_mass,
    tuple b_title, tuple b_tokens, bytes b_levels, double b_mass,
    int steps,
):
    """Each headline's weight found among the other entry's tokens, as shares: 50 * (a in b + b in a).

    Tokens and levels as `weigh` made them (None is refused by `pair_overlap`).
    """
    return pair_overlap(
        a_title, a_tokens, a_levels, a_mass, b_title, b_tokens, b_levels, b_mass, steps
    )


cdef double pair_overlap(
    tuple a_title, tuple a_tokens, bytes a_levels, double a_mass,
    tuple b_title, tuple b_tokens, bytes b_levels, double b_mass,
    int steps,
) except? -1.0:
    """`overlap` as a C function: `cluster_pairs` calls it once a pair (see cluster_tokens.pxd)."""
    if (a_title is None or a_tokens is None or a_levels is None
            or b_title is None or b_tokens is None or b_levels is None):
        raise TypeError("an entry's tokens and levels cannot be None")
    return 50.0 * (_containment(a_title, a_tokens, a_levels, a_mass, b_tokens, steps)
                   + _containment(b_title, b_tokens, b_levels, b_mass, a_tokens, steps))


cdef double _containment(
    tuple title, tuple tokens, bytes levels, double mass, tuple found, int steps
) except? -1.0:
    """Weighted share of `title`'s tokens (after `tokens`' levels in `levels`) that are in `found`."""
    if not mass:
        return 0.0
    cdef const uint16_t* title_levels = _title_levels(title, tokens, levels)
    cdef Py_ssize_t i
    cdef double shared = 0.0
    # In headline order, not over a set: a set's order depends on the process's
    # string hash seed, and so would the last bits of the sum.
    for i in range(PyTuple_GET_SIZE(title)):
        if _in_sorted(<object>PyTuple_GET_ITEM(title, i), found):
            shared += <double>title_levels[i] / steps
    return shared / mass


def title_dot(
    tuple title not None, tuple tokens not None, bytes levels not None, profile, int steps,
):
    """Sum of weight ** 2 * count over the title tokens that `profile` (a dict) counts.

    Tokens and levels as `weigh` made them; in headline order, as Python's
    `sum` of `w ** 2 * profile[t]` adds them (plain additions up to 3.11).
    """
    _check_dict(profile)
    cdef const uint16_t* title_levels = _title_levels(title, tokens, levels)
    cdef Py_ssize_t i
    cdef double dot = 0.0
    cdef PyObject* found
    for i in range(PyTuple_GET_SIZE(title)):
        found = PyDict_GetItem(profile, <object>PyTuple_GET_ITEM(title, i))
        if found != NULL:
            dot += _python_square(<double>title_levels[i] / steps) * <double><object>found
    return dot


cdef const uint16_t* _title_levels(tuple title, tuple tokens, bytes levels) except NULL:
    """The headline tokens' levels, which `weigh` puts after the tokens' own."""
    cdef Py_ssize_t n = PyTuple_GET_SIZE(tokens)
    if PyBytes_GET_SIZE(levels) != 2 * (n + PyTuple_GET_SIZE(title)):
        raise ValueError("levels do not match the tokens and the headline")
    return (<const uint16_t*>PyBytes_AS_STRING(levels)) + n


cdef extern from *:
    """
    #include <math.h>
    /* What Python's `w ** 2` computes: libm's pow. A compiler turns pow(w, 2.0)
       into w * w, which differs in the last bit for 44 of the 64,000 levels. */
    static double _python_square(double w) {
        volatile double two = 2.0;
        return pow(w, two);
    }
    """
    double _python_square(double w) nogil


cdef bint _in_sorted(object token, tuple tokens) except -1:
    """Whether `token` is in `tokens` (sorted, distinct): a binary search."""
    cdef Py_ssize_t low = 0, high = PyTuple_GET_SIZE(tokens), middle
    cdef int order
    cdef object other
    while low < high:
        middle = (low + high) // 2
        other = <object>PyTuple_GET_ITEM(tokens, middle)
        if other is token:
            return True
        order = _compare(other, token)
        if order == 0:
            return True
        if order < 0:
            low = middle + 1
        else:
            high = middle
    return False


cdef inline int _compare(object a, object b) except? -1:
    """-1, 0 or 1 as `a` sorts before, equal to or after `b` (two str)."""
    return PyUnicode_Compare(a, b)


cdef int _check_dict(object counts) except -1:
    if not isinstance(counts, dict):  # a Counter is one; its lookups must not call __missing__
        raise TypeError(f"counts must be a dict, not {type(counts).__name__}")
    return 0
