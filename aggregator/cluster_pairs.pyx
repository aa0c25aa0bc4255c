# cython: language_level=3, boundscheck=False, wraparound=False
"""Pair scores, compiled: an entry against the sampled members of a candidate cluster.

The matcher's hot path. At event granularity an entry is scored against a few
sampled members of each candidate cluster, about five pairs an entry, and in
Python the arithmetic and bookkeeping around a pair's two rapidfuzz calls
(penalties, cutoffs, the totals, the sampling and the support count) cost
about as much as rapidfuzz itself: a fifth of the matcher's time.

This is the only implementation of a pair's arithmetic: `cluster_score`'s
`scored_pair`, `pair_score` and `explain_pair` call it, so the clusterer's
decisions, the scores of reports and the explanations cannot drift apart.

Results are bit-identical to the Python formulas this replaced, and must stay
so (a changed last bit can flip a decision at a threshold, and every later
one with it): Python floats are C doubles, and each formula is the same IEEE
operations in the same order; `max(0.0, x)` is x only when x > 0.0, as
Python's `max` picks; a division by zero raises ZeroDivisionError as in
Python (no `cdivision`); setup.py compiles with `-ffp-contract=off`, so no
multiply-add is fused into one rounding. tests/test_cluster_pairs.py checks
all of it against the Python formulas.

rapidfuzz is called through its C API (the scorer `rapidfuzz.process` uses),
not `fuzz.token_set_ratio`: its cached scorer splits and sorts the entry's
title and lead once for all the members it is compared with, instead of once
a pair. The scores are those of `fuzz.token_set_ratio` (the same C++ function
on the same tokens); the rapidfuzz calls then take a fifth fewer instructions.
"""

from cpython.pycapsule cimport PyCapsule_GetPointer
from cpython.unicode cimport PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.math cimport fabs
from libc.stdint cimport int64_t, uint32_t
from rapidfuzz.fuzz import token_set_ratio

from aggregator.cluster_tokens cimport pair_overlap


cdef struct Rule:
    # What a pair score reads of `Tuning` (read once a call, not once a pair).
    double title_weight
    double overlap_weight
    double grace_hours
    double hourly_decay
    double number_conflict_penalty
    int steps


cdef Rule _rule(object tuning, int steps) except *:
    cdef Rule rule
    rule.title_weight = tuning.title_weight
    rule.overlap_weight = tuning.overlap_weight
    rule.grace_hours = tuning.grace_hours
    rule.hourly_decay = tuning.hourly_decay
    rule.number_conflict_penalty = tuning.number_conflict_penalty
    rule.steps = steps
    return rule


def scored_pair(a, b, tuning, int steps, double floor=0.0):
    """How likely two entries report the same event (0-100), and its rapidfuzz parts.

    The cheap parts (key-word overlap, time and number penalties) come first,
    so a pair that cannot reach `floor` whatever its wording costs no
    rapidfuzz call (no parts: the score is then 0.0). Below `floor` the score
    is only known to be below it. When the score is above zero and reaches
    `floor`, the parts are exact, so the explanation of a match can reuse
    them instead of comparing the texts again. `steps` as the weights' levels
    are made (`cluster_score.STEPS`).
    """
    cdef Rule rule = _rule(tuning, steps)
    return _scored(_texts(a), a, b, &rule, floor)


def best_member(
    features, list sample, dict window, tuning, int steps, double floor,
    Py_ssize_t allowed_misses, frequencies, reweigh,
):
    """(top score, its member, its parts, members at least `floor`) of `features` against `sample`.

    `sample` holds member ids of one cluster, `window` their features. A
    member whose weights are stale (`frequencies.stale`) is weighed again
    first (`reweigh(features, frequencies)`), and kept so in `window`. None
    when more than `allowed_misses` members score below `floor`: the loop
    stops there, most candidate clusters after one or two pair scores, and
    the members after it are neither scored nor weighed again.
    """
    if not sample:
        return None
    cdef Rule rule = _rule(tuning, steps)
    cdef Py_ssize_t agree = 0, misses = 0
    cdef double top = -1.0, score
    cdef tuple scored
    cdef _Texts texts = _texts(features)
    matched, parts = sample[0], None
    for member in sample:
        other = window[member]
        if frequencies.stale(other):
            other = reweigh(other, frequencies)
            window[member] = other
        scored = _scored(texts, features, other, &rule, floor)
        score = scored[0]
        if score >= floor:
            agree += 1
        else:
            misses += 1
            if misses > allowed_misses:
                return None
        if score > top:
            top, matched, parts = score, member, scored[1]
    return top, matched, parts, agree


def sample_within(features, members, dict window, Py_ssize_t size, double window_hours):
    """The ids of `sample(members, size)` published at most `window_hours` from `features`."""
    cdef double hours = features.hours
    return [m for m in _sample(members, size) if _within(hours, window[m].hours, window_hours)]


def sample(members, Py_ssize_t size):
    """The anchor (the oldest, first of `members`) and the `size - 1` most recent, as a list.

    Bounded, so a big cluster costs what a small one does.
    """
    return _sample(members, size)


def within(a, b, double window_hours):
    """Whether two entries' publication times are at most `window_hours` apart."""
    return _within(a.hours, b.hours, window_hours)


def fuzzy(a, b, tuning, double need=0.0):
    """rapidfuzz similarity (0-100) of title and lead combined, then the title's and the lead's.

    A part is None when it was not compared: the title when one of them is
    too thin to count, the lead when one of them has none. Below `need` the
    combined value is only known to be below it: each rapidfuzz call gets the
    cutoff under which the combination cannot reach `need` and then stops
    early (it returns 0).
    """
    return _fuzzy(_texts(a), a, b, tuning.title_weight, need)


def penalty(a, b, tuning):
    """(points lost, whether the headlines' numbers conflict) of a pair.

    Points are lost for publication times drifting apart beyond the grace
    hours, and for headlines that both have numbers but none in common.
    """
    cdef Rule rule = _rule(tuning, 0)
    cdef bint conflict = False
    cdef double points = _penalty(a, b, &rule, &conflict)
    return points, conflict


def total(double key_words, double fuzzy, double penalty, tuning):
    """The pair score from its parts: key-word overlap, rapidfuzz combined, penalty."""
    cdef Rule rule = _rule(tuning, 0)
    return _total(rule.overlap_weight * key_words, fuzzy, penalty, &rule)


cdef tuple _scored(_Texts texts, a, b, Rule* rule, double floor):
    cdef bint conflict = False
    cdef double penalty = _penalty(a, b, rule, &conflict)
    cdef double fuzzy_share = 1 - rule.overlap_weight
    if floor + penalty > 100.0:  # even identical wording could not make up for the penalty
        return 0.0, None
    cdef double weighted_overlap = rule.overlap_weight * pair_overlap(
        a.title_tokens, a.tokens, a.levels, a.title_mass,
        b.title_tokens, b.tokens, b.levels, b.title_mass, rule.steps,
    )
    cdef double need = (floor + penalty - weighted_overlap) / fuzzy_share
    if need > 100.0:
        return 0.0, None
    cdef tuple parts = _fuzzy(texts, a, b, rule.title_weight, need)
    return _total(weighted_overlap, parts[0], penalty, rule), parts


cdef double _total(double weighted_overlap, double fuzzy, double penalty, Rule* rule):
    return _at_least_zero(weighted_overlap + (1 - rule.overlap_weight) * fuzzy - penalty)


cdef double _penalty(a, b, Rule* rule, bint* conflict) except? -1.0:
    cdef double hours = fabs(<double>a.hours - <double>b.hours) - rule.grace_hours
    cdef double penalty = _at_least_zero(hours) * rule.hourly_decay
    conflict[0] = _numbers_conflict(a.title_numbers, b.title_numbers)
    return penalty + (rule.number_conflict_penalty if conflict[0] else 0.0)


cdef bint _numbers_conflict(a_numbers, b_numbers) except -1:
    """Both headlines have numbers, and none in common."""
    if not a_numbers or not b_numbers:
        return False
    for number in a_numbers:
        if number in b_numbers:
            return False
    return True


cdef tuple _fuzzy(_Texts texts, a, b, double share, double need):
    a_lead, b_lead = a.lead, b.lead
    cdef bint both = bool(a_lead) and bool(b_lead)
    cdef bint weak = both and (a.title_is_weak or b.title_is_weak)
    cdef double cutoff, title = 0.0, lead
    if not weak:
        cutoff = need if not both else (need - (1 - share) * 100) / share
        title = texts.ratio(False, b.title, _at_least_zero(cutoff - 1e-6))
    if not both:
        return title, title, None
    cutoff = need if weak else (need - share * 100) / (1 - share)
    lead = texts.ratio(True, b_lead, _at_least_zero(cutoff - 1e-6))
    if weak:
        return lead, None, lead
    return share * title + (1 - share) * lead, title, lead


cdef list _sample(members, Py_ssize_t size):
    cdef Py_ssize_t n = len(members), i
    if n <= max(size, 1):  # also no anchor to read for no member (unchecked indexing)
        return list(members)
    picked = [members[0]]
    for i in range(n - size + 1, n):  # the last `size - 1`
        picked.append(members[i])
    return picked


cdef inline bint _within(double a, double b, double window_hours):
    return fabs(a - b) <= window_hours


cdef inline double _at_least_zero(double x):
    """Python's `max(0.0, x)`: x only when it is above zero (so 0.0 for -0.0 and NaN)."""
    return x if x > 0.0 else 0.0


# rapidfuzz's token_set_ratio through its C API.

cdef extern from *:
    """
    /* rapidfuzz's C API (its rapidfuzz_capi.h, scorer struct version 3): the part used here. */
    #include <stdbool.h>
    #include <stdint.h>
    typedef struct RF_String {
        void (*dtor)(struct RF_String*);
        int kind;  /* the enum RF_StringType: RF_UINT8, RF_UINT16, RF_UINT32 are 0, 1, 2 */
        void* data;
        int64_t length;
        void* context;
    } RF_String;
    typedef struct RF_Kwargs {
        void (*dtor)(struct RF_Kwargs*);
        void* context;
    } RF_Kwargs;
    typedef struct RF_ScorerFunc {
        void (*dtor)(struct RF_ScorerFunc*);
        union {
            bool (*f64)(const struct RF_ScorerFunc*, const RF_String*, int64_t, double, double,
                        double*);
        } call;
        void* context;
    } RF_ScorerFunc;
    typedef struct {
        uint32_t version;
        bool (*kwargs_init)(RF_Kwargs*, PyObject*);
        void* get_scorer_flags;
        bool (*scorer_func_init)(RF_ScorerFunc*, const RF_Kwargs*, int64_t, const RF_String*);
    } RF_Scorer;
    """
    ctypedef struct RF_String:
        void (*dtor)(RF_String*)
        int kind
        void* data
        int64_t length
        void* context
    ctypedef struct RF_Kwargs:
        void (*dtor)(RF_Kwargs*)
        void* context
    ctypedef struct RF_Call:
        bint (*f64)(const RF_ScorerFunc*, const RF_String*, int64_t, double, double, double*)
    ctypedef struct RF_ScorerFunc:
        void (*dtor)(RF_ScorerFunc*)
        RF_Call call
        void* context
    ctypedef struct RF_Scorer:
        uint32_t version
        bint (*kwargs_init)(RF_Kwargs*, object)
        bint (*scorer_func_init)(RF_ScorerFunc*, const RF_Kwargs*, int64_t, const RF_String*)


# The structs above are version 3's (rapidfuzz 3.9 and later so far). Another
# version may lay them out otherwise, and rapidfuzz's pure-Python build has no
# C API at all: then every comparison goes through `fuzz.token_set_ratio` (the
# same scores, without the cached split).
_capsule = getattr(token_set_ratio, "_RF_Scorer", None)
cdef RF_Scorer* _token_set_ratio = (
    NULL if _capsule is None else <RF_Scorer*>PyCapsule_GetPointer(_capsule, NULL)
)
cdef RF_Kwargs _no_kwargs
_no_kwargs.dtor = NULL
_no_kwargs.context = NULL
cdef bint _c_api_usable = (
    _token_set_ratio != NULL
    and _token_set_ratio.version == 3
    and (_token_set_ratio.kwargs_init == NULL or _token_set_ratio.kwargs_init(&_no_kwargs, {}))
)
cdef bint _c_api = _c_api_usable


def use_c_api(bint wanted):
    """Compare through rapidfuzz's C API (where it is usable) or not; for tests.

    Returns whether the C API is used now.
    """
    global _c_api
    _c_api = wanted and _c_api_usable
    return _c_api


cdef class _Texts:
    """An entry's title and lead, each split and sorted once by rapidfuzz (a cached scorer).

    Made when first compared, then `token_set_ratio(title or lead, other, cutoff)`
    for every member the entry is scored against.
    """

    cdef str title, lead
    cdef RF_ScorerFunc scorers[2]
    cdef bint ready[2]

    def __cinit__(self, str title not None, str lead not None):
        self.title, self.lead = title, lead

    def __dealloc__(self):
        cdef int i
        for i in range(2):
            if self.ready[i] and self.scorers[i].dtor != NULL:
                self.scorers[i].dtor(&self.scorers[i])

    cdef double ratio(self, bint lead, str other, double cutoff) except -1.0:
        """`fuzz.token_set_ratio(self's title or lead, other, score_cutoff=cutoff)`."""
        cdef RF_String text
        cdef double result
        cdef RF_ScorerFunc* scorer = &self.scorers[lead]
        if other is None:  # rapidfuzz's Python API would score it 0: a bug upstream, not a text
            raise TypeError("rapidfuzz compares texts, not None")
        if not _c_api:
            return token_set_ratio(self.lead if lead else self.title, other, score_cutoff=cutoff)
        if not self.ready[lead]:
            text = _view(self.lead if lead else self.title)
            if not _token_set_ratio.scorer_func_init(scorer, &_no_kwargs, 1, &text):
                return -1.0  # rapidfuzz set the exception
            self.ready[lead] = True
        text = _view(other)
        if not scorer.call.f64(scorer, &text, 1, cutoff, 0.0, &result):
            return -1.0
        return result


cdef _Texts _last = None


cdef _Texts _texts(features):
    """The prepared texts of `features`: the last ones made, when they are of the same strings.

    An entry is scored against all its candidate clusters' members in a row,
    so remembering one entry's texts is enough. The strings are compared by
    identity: kept alive here, the same object is the same text.
    """
    global _last
    title, lead = features.title, features.lead
    if _last is None or _last.title is not title or _last.lead is not lead:
        _last = _Texts(title, lead)
    return _last


cdef RF_String _view(str text) except *:
    """rapidfuzz's view of a str: its code points, 1, 2 or 4 bytes each, as CPython holds them."""
    if text is None:
        raise TypeError("rapidfuzz compares texts, not None")
    cdef unsigned int width = PyUnicode_KIND(text)
    if width != 1 and width != 2 and width != 4:  # a legacy string, never made by str's methods
        raise ValueError("rapidfuzz needs a str in CPython's compact form")
    cdef RF_String view
    view.dtor = NULL
    view.kind = 0 if width == 1 else 1 if width == 2 else 2
    view.data = PyUnicode_DATA(text)
    view.length = PyUnicode_GET_LENGTH(text)
    view.context = NULL
    return view
