# What other compiled modules call of aggregator/token_set.pyx directly (C calls, no boxing).

from cpython.ref cimport PyObject


# Which texts of an entry a token is in (`marks`), bits of one byte a token.
cpdef enum Mark:
    TITLE = 1
    LEAD = 2

cdef struct Aligned:
    # Two sorted token tuples merged (see `align`): borrowed, valid until the next `align`.
    PyObject* a
    PyObject* b
    const unsigned char* a_marks
    const unsigned char* b_marks
    Py_ssize_t na
    Py_ssize_t nb
    Py_ssize_t* a_other  # a[i] == b[a_other[i]], or -1
    Py_ssize_t* b_other

cdef int align(tuple a, bytes a_marks, tuple b, bytes b_marks, Aligned* out) except -1
cdef bint has_mark(const Aligned* aligned, bint of_b, int mark) noexcept
cdef double ratio(const Aligned* aligned, int mark, double score_cutoff) except -1.0
