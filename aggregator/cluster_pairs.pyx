# cython: language_level=3, boundscheck=False, wraparound=False
"""Pair scores, compiled: an entry against the sampled members of a candidate cluster.

The matcher's hot path. At event granularity an entry is scored against a few
sampled members of each candidate cluster, about five pairs an entry, and in
Python the arithmetic and bookkeeping around a pair's two `token_set_ratio`s
(penalties, cutoffs, the totals, the sampling and the support count) cost
about as much as the ratios themselves: a fifth of the matcher's time.

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

The wording similarity of a pair is rapidfuzz's `fuzz.token_set_ratio` of
the headlines and of the leads, computed by `token_set` from the token sets
both entries keep sorted (the same scores to the last bit).
"""

from libc.math cimport fabs

from aggregator.cluster_tokens cimport pair_overlap
from aggregator.token_set cimport LEAD, TITLE, Aligned, align, has_mark, ratio


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
    return _scored(a, b, &rule, floor)


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
    matched, parts = sample[0], None
    for member in sample:
        other = window[member]
        if frequencies.stale(other):
            other = reweigh(other, frequencies)
            window[member] = other
        scored = _scored(features, other, &rule, floor)
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
    return _fuzzy(a, b, tuning.title_weight, need)


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


cdef tuple _scored(a, b, Rule* rule, double floor):
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
    cdef tuple parts = _fuzzy(a, b, rule.title_weight, need)
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


cdef tuple _fuzzy(a, b, double share, double need):
    cdef Aligned aligned
    align(a.tokens, a.marks, b.tokens, b.marks, &aligned)
    cdef bint both = has_mark(&aligned, False, LEAD) and has_mark(&aligned, True, LEAD)
    cdef bint weak = both and (a.title_is_weak or b.title_is_weak)
    cdef double cutoff, title = 0.0, lead
    if not weak:
        cutoff = need if not both else (need - (1 - share) * 100) / share
        title = ratio(&aligned, TITLE, _at_least_zero(cutoff - 1e-6))
    if not both:
        return title, title, None
    cutoff = need if weak else (need - share * 100) / (1 - share)
    lead = ratio(&aligned, LEAD, _at_least_zero(cutoff - 1e-6))
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
