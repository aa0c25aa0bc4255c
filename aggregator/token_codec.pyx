# cython: language_level=3, boundscheck=False, wraparound=False
"""Tokens as numbers on their way from the normalizer process to the matcher (`cluster_ahead`).

Each token travels once per epoch as a string, then as its number, so the
receiving side shares one string per token across all entries instead of
unpickling copies entry by entry. Turning an entry's tokens into numbers and
back was, in Python, a tenth of each process's time; here it is a loop
over 4-byte integers in a bytes object.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint32_t


def encode(tuple tokens not None, dict numbers not None, list new not None):
    """`tokens` as native 4-byte numbers from `numbers`.

    A token not numbered yet gets the next number (`len(numbers)`) and is
    appended to `new`, which the receiver appends to its vocabulary.
    """
    cdef Py_ssize_t count = len(tokens), at = 0
    cdef bytes out = PyBytes_FromStringAndSize(NULL, count * 4)
    cdef uint32_t* numbered = <uint32_t*>PyBytes_AS_STRING(out)
    cdef PyObject* found
    cdef Py_ssize_t number
    for token in tokens:
        found = PyDict_GetItem(numbers, token)
        if found == NULL:
            number = len(numbers)
            if number > 0xFFFFFFFF:
                raise OverflowError("more than 2**32 tokens in one epoch")
            PyDict_SetItem(numbers, token, number)
            new.append(token)
        else:
            number = <Py_ssize_t><object>found
        numbered[at] = <uint32_t>number
        at += 1
    return out


def decode(bytes data not None, list vocabulary not None):
    """The tuple of tokens `encode` numbered, looked up in `vocabulary` (number -> token)."""
    if PyBytes_GET_SIZE(data) % 4:
        raise ValueError(f"{PyBytes_GET_SIZE(data)} bytes are no whole number of tokens")
    cdef Py_ssize_t count = PyBytes_GET_SIZE(data) // 4, at
    cdef const uint32_t* numbered = <const uint32_t*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t known = PyList_GET_SIZE(vocabulary)
    cdef tuple tokens = PyTuple_New(count)
    cdef object token
    for at in range(count):
        if numbered[at] >= known:
            raise IndexError(f"token number {numbered[at]} is not in the vocabulary of {known}")
        token = <object>PyList_GET_ITEM(vocabulary, numbered[at])
        Py_INCREF(token)
        PyTuple_SET_ITEM(tokens, at, token)
    return tokens
