# cython: language_level=3, boundscheck=False, wraparound=False
"""rapidfuzz's `token_set_ratio` of two entries' headlines or leads, from tokens both keep sorted.

`fuzz.token_set_ratio` splits both texts on whitespace, sorts and dedupes the
words, and compares the words the two sets do not share, joined by spaces.
The matcher compares each entry with about six members, title and lead, and
rapidfuzz could keep only the entry's side split (its cached scorer): every
call split, sorted and joined the member's text again in fresh allocations,
which was most of a call's cost (a lead pair about 8 us, of which the edit
distance about 1 us). Every entry already keeps its distinct tokens sorted
(`Features.tokens`, the index keys), so here both sides are sorted sets from
the start, with a mark per token for the headline and the lead
(`Features.marks`): one merge of the two tuples finds the shared tokens, and
only the joined differences are built, in buffers reused from call to call.

The result is `fuzz.token_set_ratio(" ".join(title or lead tokens), ...)` to
the last bit, and must stay so: the same integer lengths, the same exact
indel distance (by a bit-parallel LCS, any exact algorithm gives the same
count) and the same double arithmetic in the same order as rapidfuzz's
`fuzz_detail::token_set_ratio` (rapidfuzz-cpp 3.x, fuzz_impl.hpp). Tokens
never contain whitespace (they are words and numbers), so splitting their
join gives them back. tests/test_token_set.py compares the two on drawn sets,
with 1-, 2- and 4-byte characters and every kind of cutoff.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.unicode cimport PyUnicode_Compare

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>

    /* Scratch space, grown on demand and kept: the module runs under the GIL. */
    typedef struct { void* data; size_t size; } TsBuffer;

    static void* ts_reserve(TsBuffer* buffer, size_t size) {
        if (buffer->size < size) {
            void* grown = realloc(buffer->data, size);
            if (grown == NULL) return NULL;
            buffer->data = grown;
            buffer->size = size;
        }
        return buffer->data;
    }

    /* The length of the longest common subsequence of p (m code points) and t
       (n), by Hyyro's bit-parallel algorithm over ceil(m / 64) words. The
       table of p's characters' bits (rows 0-255: Latin-1 code points, rows 256
       on: p's others, listed in `wide`) is all zeros between calls, whatever
       its layout: a call clears the rows it set, not 2 KB a word. */
    static TsBuffer ts_lcs_table = {NULL, 0};
    static TsBuffer ts_lcs_rest = {NULL, 0};

    /* The row of c in the table; p's characters are added to `wide` as met,
       a character of t that p lacks has no row (-1). */
    static int64_t ts_row(Py_UCS4 c, Py_UCS4* wide, size_t* wide_count, int add) {
        size_t j;
        if (c < 256) return c;
        for (j = 0; j < *wide_count && wide[j] != c; j++) {}
        if (j == *wide_count) {
            if (!add) return -1;
            wide[(*wide_count)++] = c;
        }
        return 256 + (int64_t)j;
    }

    static int64_t ts_lcs(const Py_UCS4* p, size_t m, const Py_UCS4* t, size_t n) {
        size_t words = (m + 63) / 64, rows = 256 + m, i, w;
        int64_t row;
        size_t table_size = rows * words * sizeof(uint64_t), had = ts_lcs_table.size;
        uint64_t* match = (uint64_t*)ts_reserve(&ts_lcs_table, table_size);
        if (match == NULL) return -1;
        if (ts_lcs_table.size > had) memset((char*)match + had, 0, ts_lcs_table.size - had);
        uint64_t* v = (uint64_t*)ts_reserve(
            &ts_lcs_rest, words * sizeof(uint64_t) + m * sizeof(Py_UCS4));
        if (v == NULL) return -1;
        Py_UCS4* wide = (Py_UCS4*)(v + words);
        size_t wide_count = 0;
        for (i = 0; i < m; i++) {
            row = ts_row(p[i], wide, &wide_count, 1);
            match[row * words + i / 64] |= (uint64_t)1 << (i % 64);
        }
        for (w = 0; w < words; w++) v[w] = ~(uint64_t)0;
        for (i = 0; i < n; i++) {
            row = ts_row(t[i], wide, &wide_count, 0);
            if (row < 0) continue;  /* not in p: nothing changes */
            const uint64_t* bits = match + row * words;
            uint64_t carry = 0;
            for (w = 0; w < words; w++) {
                uint64_t u = v[w] & bits[w];
                uint64_t sum = v[w] + u;
                uint64_t out = sum < u;
                uint64_t total = sum + carry;
                out |= total < sum;
                v[w] = total | (v[w] - u);
                carry = out;
            }
        }
        int64_t lcs = 0;
        for (w = 0; w < words; w++) {
            uint64_t zeros = ~v[w];
            if (w == words - 1 && m % 64) zeros &= ((uint64_t)1 << (m % 64)) - 1;
            lcs += __builtin_popcountll(zeros);
        }
        for (i = 0; i < m; i++) {
            if (p[i] < 256) memset(match + p[i] * words, 0, words * sizeof(uint64_t));
        }
        memset(match + 256 * words, 0, wide_count * words * sizeof(uint64_t));
        return lcs;
    }

    /* rapidfuzz's fuzz_detail::norm_distance and score_cutoff_to_distance. */
    static double ts_norm_distance(size_t dist, size_t lensum, double score_cutoff) {
        double score = (lensum > 0)
            ? (100.0 - 100.0 * (double)dist / (double)lensum) : 100.0;
        return (score >= score_cutoff) ? score : 0;
    }

    static size_t ts_cutoff_distance(double score_cutoff, size_t lensum) {
        return (size_t)ceil((double)lensum * (1.0 - score_cutoff / 100));
    }

    /* `align`'s pairs (for each token, the index of its equal on the other
       side, or -1) and the two differences joined, as code points. */
    static TsBuffer ts_pairs_space = {NULL, 0};
    static TsBuffer ts_text_space = {NULL, 0};
    """
    ctypedef struct TsBuffer:
        void* data
        size_t size
    void* ts_reserve(TsBuffer* buffer, size_t size)
    long long ts_lcs(const Py_UCS4* p, size_t m, const Py_UCS4* t, size_t n)
    double ts_norm_distance(size_t dist, size_t lensum, double score_cutoff)
    size_t ts_cutoff_distance(double score_cutoff, size_t lensum)
    TsBuffer ts_pairs_space
    TsBuffer ts_text_space
    Py_ssize_t PyUnicode_GET_LENGTH(PyObject* text)
    int PyUnicode_KIND(PyObject* text)
    void* PyUnicode_DATA(PyObject* text)
    Py_UCS4 PyUnicode_READ(int kind, void* data, Py_ssize_t index)


def token_set_ratio(
    tuple a, bytes a_marks, tuple b, bytes b_marks, int mark, double score_cutoff=0.0
):
    """`fuzz.token_set_ratio` of the tokens of `a` marked `mark` and those of `b` marked so.

    The Python face of `align` and `ratio`, for tests.
    """
    cdef Aligned aligned
    align(a, a_marks, b, b_marks, &aligned)
    return ratio(&aligned, mark, score_cutoff)


cdef int align(tuple a, bytes a_marks, tuple b, bytes b_marks, Aligned* out) except -1:
    """Merge two sorted token tuples: `out` says which token of one side equals which of the other.

    `a` and `b` hold distinct tokens in Python's order, none empty and none
    with whitespace; `a_marks[i]` are the bits of `a[i]` (which texts it is
    in). `out` points into scratch space shared by every call: it is valid
    until the next `align`, and `a`, `b` and the marks must outlive its use.
    No other thread can align in between as long as the caller runs no
    Python code and makes no object between `align` and its `ratio`s (a new
    object could start a garbage collection, a finalizer, and a switch of
    threads): `cluster_pairs._fuzzy` only reads attributes until it is done.
    """
    cdef Py_ssize_t na = PyTuple_GET_SIZE(a), nb = PyTuple_GET_SIZE(b), i = 0, j = 0
    if PyBytes_GET_SIZE(a_marks) != na or PyBytes_GET_SIZE(b_marks) != nb:
        raise ValueError("a mark for each token")
    cdef Py_ssize_t* pairs = <Py_ssize_t*>ts_reserve(
        &ts_pairs_space, <size_t>(na + nb + 1) * sizeof(Py_ssize_t)
    )
    if pairs == NULL:
        raise MemoryError()
    out.a, out.b = <PyObject*>a, <PyObject*>b
    out.a_marks = <const unsigned char*>PyBytes_AS_STRING(a_marks)
    out.b_marks = <const unsigned char*>PyBytes_AS_STRING(b_marks)
    out.na, out.nb = na, nb
    out.a_other, out.b_other = pairs, pairs + na
    cdef int order
    while i < na and j < nb:
        order = PyUnicode_Compare(<object>PyTuple_GET_ITEM(a, i), <object>PyTuple_GET_ITEM(b, j))
        if order < 0:
            out.a_other[i] = -1
            i += 1
        elif order > 0:
            out.b_other[j] = -1
            j += 1
        else:
            out.a_other[i], out.b_other[j] = j, i
            i += 1
            j += 1
    for i in range(i, na):
        out.a_other[i] = -1
    for j in range(j, nb):
        out.b_other[j] = -1
    return 0


cdef bint has_mark(const Aligned* aligned, bint of_b, int mark) noexcept:
    """Whether side a (or b) has a token marked `mark`."""
    cdef const unsigned char* marks = aligned.b_marks if of_b else aligned.a_marks
    cdef Py_ssize_t i
    for i in range(aligned.nb if of_b else aligned.na):
        if marks[i] & mark:
            return True
    return False


cdef inline bint _shared(const Aligned* aligned, bint of_b, Py_ssize_t i, int mark) noexcept:
    """Whether token i of side a (or b) has its equal on the other side, marked `mark` there too."""
    cdef Py_ssize_t other = (aligned.b_other if of_b else aligned.a_other)[i]
    return other >= 0 and (aligned.a_marks if of_b else aligned.b_marks)[other] & mark


cdef double ratio(const Aligned* aligned, int mark, double score_cutoff) except -1.0:
    """rapidfuzz's `fuzz_detail::token_set_ratio` on the tokens marked `mark` on each side."""
    if score_cutoff > 100:
        return 0
    # The shared tokens, and those of one side only: counts and summed lengths.
    cdef size_t sect_len = 0, ab_len = 0, ba_len = 0
    cdef Py_ssize_t sect = 0, ab = 0, ba = 0, i, length
    for i in range(aligned.na):
        if aligned.a_marks[i] & mark:
            length = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(<tuple>aligned.a, i))
            if _shared(aligned, False, i, mark):
                sect += 1
                sect_len += length
            else:
                ab += 1
                ab_len += length
    for i in range(aligned.nb):
        if aligned.b_marks[i] & mark and not _shared(aligned, True, i, mark):
            ba += 1
            ba_len += PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(<tuple>aligned.b, i))
    if sect + ab == 0 or sect + ba == 0:  # rapidfuzz: 0 when either text has no word
        return 0
    if sect and (ab == 0 or ba == 0):  # one set holds the other
        return 100
    # Joined by single spaces.
    if sect:
        sect_len += sect - 1
    if ab:
        ab_len += ab - 1
    if ba:
        ba_len += ba - 1
    cdef size_t sect_ab_len = sect_len + (sect_len != 0) + ab_len
    cdef size_t sect_ba_len = sect_len + (sect_len != 0) + ba_len
    cdef size_t lensum = sect_ab_len + sect_ba_len
    cdef double result = 0
    cdef size_t cutoff_distance = ts_cutoff_distance(score_cutoff, lensum)
    # The indel distance is at least the difference of the lengths: beyond
    # the cutoff, rapidfuzz's result is 0 whatever the LCS.
    cdef size_t least = ab_len - ba_len if ab_len > ba_len else ba_len - ab_len
    cdef size_t dist
    if least <= cutoff_distance:
        dist = ab_len + ba_len - 2 * _lcs(aligned, mark, ab_len, ba_len)
        if dist <= cutoff_distance:
            result = ts_norm_distance(dist, lensum, score_cutoff)
    if not sect_len:
        return result
    cdef double sect_ab_ratio = ts_norm_distance(
        (sect_len != 0) + ab_len, sect_len + sect_ab_len, score_cutoff
    )
    cdef double sect_ba_ratio = ts_norm_distance(
        (sect_len != 0) + ba_len, sect_len + sect_ba_len, score_cutoff
    )
    # std::max({result, sect_ab_ratio, sect_ba_ratio})
    if sect_ab_ratio > result:
        result = sect_ab_ratio
    if sect_ba_ratio > result:
        result = sect_ba_ratio
    return result


cdef size_t _lcs(const Aligned* aligned, int mark, size_t ab_len, size_t ba_len) except? 0:
    """LCS of the two sides' unshared tokens joined, `ab_len` and `ba_len` code points."""
    cdef Py_UCS4* texts = <Py_UCS4*>ts_reserve(&ts_text_space, (ab_len + ba_len) * sizeof(Py_UCS4))
    if texts == NULL:
        raise MemoryError()
    cdef Py_UCS4* ab_text = texts
    cdef Py_UCS4* ba_text = texts + ab_len
    _join(aligned, False, mark, ab_text)
    _join(aligned, True, mark, ba_text)
    cdef long long lcs
    if ab_len <= ba_len:  # the shorter one as the pattern: fewer words
        lcs = ts_lcs(ab_text, ab_len, ba_text, ba_len)
    else:
        lcs = ts_lcs(ba_text, ba_len, ab_text, ab_len)
    if lcs < 0:
        raise MemoryError()
    return <size_t>lcs


cdef void _join(const Aligned* aligned, bint of_b, int mark, Py_UCS4* out) noexcept:
    """One side's tokens marked `mark` that the other lacks so, joined by spaces, into `out`."""
    cdef PyObject* tokens = aligned.b if of_b else aligned.a
    cdef const unsigned char* marks = aligned.b_marks if of_b else aligned.a_marks
    cdef Py_ssize_t n = aligned.nb if of_b else aligned.na, i, k, length, at = 0
    cdef PyObject* token
    cdef int kind
    cdef void* data
    for i in range(n):
        if not marks[i] & mark or _shared(aligned, of_b, i, mark):
            continue
        if at:
            out[at] = 0x20
            at += 1
        token = PyTuple_GET_ITEM(<tuple>tokens, i)
        kind, data = PyUnicode_KIND(token), PyUnicode_DATA(token)
        length = PyUnicode_GET_LENGTH(token)
        if kind == 1:  # most tokens: Latin-1, a byte a character
            for k in range(length):
                out[at + k] = (<const unsigned char*>data)[k]
        else:
            for k in range(length):
                out[at + k] = PyUnicode_READ(kind, data, k)
        at += length


def marks(tuple tokens, title, lead):
    """The marks of `tokens` (sorted, distinct): `TITLE` if in `title`, `LEAD` if in `lead`."""
    cdef set in_title = set(title), in_lead = set(lead)
    return bytes([
        (TITLE if token in in_title else 0) | (LEAD if token in in_lead else 0)
        for token in tokens
    ])
