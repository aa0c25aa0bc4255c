# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# distutils: language = c++
"""The matcher's inverted index: which clusters of the window have which token.

Every entry the matcher decides on asks which few clusters share the most of
its IDF weight, and every entry joining or leaving the window updates the
index. In Python these were dict and set operations of a few hundred
nanoseconds each, several hundred of them per entry on a busy window (a
quarter to a third of the matcher's time). Here clusters and tokens are
numbered densely, a token's posting is a plain array of cluster numbers, a
cluster keeps its tokens sorted with a count and its position in each
posting (so leaving a posting is a swap with its last element), and the
candidate search sums weights into an array indexed by cluster: the full sum
over every posting, which is exact and cheaper here than any pruning.

The answer does not depend on the order of postings: weights are summed as
whole numbers (their levels, as `cluster_tokens.weigh` makes them) and ties
go to the smaller cluster id.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cython.operator cimport dereference as deref
from libc.stdint cimport int32_t, int64_t, uint16_t
from libcpp.algorithm cimport sort
from libcpp.unordered_map cimport unordered_map
from libcpp.vector cimport vector


cdef struct Held:
    # One token of a cluster: how many of its members have it, and where the
    # cluster sits in the token's posting.
    int32_t token
    int32_t count
    int32_t at


cdef struct Ranked:
    int64_t total
    int64_t cluster


cdef inline bint _before(Ranked a, Ranked b) noexcept:
    """Higher total first, then the smaller cluster id."""
    return a.total > b.total or (a.total == b.total and a.cluster < b.cluster)


cdef class ClusterIndex:
    """Token -> clusters having it, with per-cluster token counts, and the candidate search.

    A cluster is in the index while any of its members in the window has a
    token; a token while any cluster has it. Memory follows the window.
    """

    cdef dict _token_ids  # token -> its number
    cdef list _tokens  # number -> token (None while free)
    cdef vector[int32_t] _free_tokens
    cdef vector[vector[int32_t]] _postings  # token number -> cluster numbers
    cdef vector[vector[Held]] _held  # cluster number -> its tokens, sorted by number
    cdef vector[int64_t] _cluster_ids  # cluster number -> cluster id
    cdef unordered_map[int64_t, int32_t] _numbers  # cluster id -> cluster number
    cdef vector[int32_t] _free_clusters
    cdef vector[int64_t] _sums  # candidate search: weight shared, by cluster number
    cdef vector[int32_t] _met  # candidate search: cluster numbers with a sum
    cdef vector[char] _seen  # candidate search: whether a cluster number is in `_met`

    def __init__(self):
        self._token_ids = {}
        self._tokens = []

    def __len__(self):
        """How many clusters are indexed."""
        return self._numbers.size()

    def add(self, int64_t cluster_id, tuple tokens not None):
        """A member with `tokens` (distinct) joins `cluster_id` (new or not)."""
        if not tokens:  # a cluster is indexed only while it has a token
            return
        cdef int32_t number = self._cluster_number(cluster_id)
        cdef vector[int32_t] arriving
        for token in tokens:
            arriving.push_back(self._token_number(token))
        sort(arriving.begin(), arriving.end())
        cdef vector[Held]* held = &self._held[number]
        cdef vector[Held] merged
        cdef Held joined
        cdef size_t i = 0, j = 0
        merged.reserve(held.size() + arriving.size())
        while i < held.size() or j < arriving.size():
            if j == arriving.size() or (i < held.size() and held[0][i].token < arriving[j]):
                merged.push_back(held[0][i])
                i += 1
            elif i < held.size() and held[0][i].token == arriving[j]:
                joined = held[0][i]
                joined.count += 1
                merged.push_back(joined)
                i += 1
                j += 1
            else:
                merged.push_back(Held(arriving[j], 1, self._post(arriving[j], number)))
                j += 1
        held.swap(merged)

    def remove(self, int64_t cluster_id, tuple tokens not None):
        """A member with `tokens` leaves `cluster_id`; tokens no member has any more leave.

        All or nothing: a token the cluster does not have raises KeyError before
        anything changes.
        """
        cdef unordered_map[int64_t, int32_t].iterator found = self._numbers.find(cluster_id)
        if found == self._numbers.end():
            return
        cdef int32_t number = deref(found).second
        cdef vector[int32_t] leaving
        for name in tokens:  # every Python call happens here
            leaving.push_back(self._known_number(name))
        cdef vector[Held*] entries
        cdef int32_t token
        for token in leaving:  # no Python code from here: the pointers stay valid
            entries.push_back(self._find(number, token))
        cdef Held* entry
        cdef bint emptied = False
        for entry in entries:
            entry.count -= 1
            if entry.count == 0:
                self._unpost(entry.token, entry.at, True)
                emptied = True
        if emptied:
            self._compact(number)
        if self._held[number].empty():
            self._release(number)

    def merge(self, int64_t absorbed, int64_t into):
        """Every token count of cluster `absorbed` moves to cluster `into`."""
        if absorbed == into:
            raise ValueError(f"cluster {absorbed} cannot be merged into itself")
        cdef unordered_map[int64_t, int32_t].iterator found = self._numbers.find(absorbed)
        if found == self._numbers.end():
            return
        cdef int32_t gone = deref(found).second
        cdef int32_t target = self._cluster_number(into)
        cdef vector[Held] moving
        moving.swap(self._held[gone])
        cdef vector[Held] arriving  # sorted by token, as `moving` is
        cdef Held* have
        for entry in moving:
            have = self._find_or_null(target, entry.token)
            if have != NULL:
                have.count += entry.count
                self._unpost(entry.token, entry.at, False)
            else:  # `into` takes the place of `absorbed` in the posting
                self._postings[entry.token][entry.at] = target
                arriving.push_back(entry)
        cdef vector[Held]* held = &self._held[target]
        cdef vector[Held] merged
        cdef size_t i = 0, j = 0
        merged.reserve(held.size() + arriving.size())
        while i < held.size() or j < arriving.size():
            if j == arriving.size() or (i < held.size() and held[0][i].token < arriving[j].token):
                merged.push_back(held[0][i])
                i += 1
            else:
                merged.push_back(arriving[j])
                j += 1
        held.swap(merged)
        self._release(gone)

    def candidates(
        self, tuple tokens not None, bytes weights not None, double floor, Py_ssize_t wanted,
        Py_ssize_t max_postings,
    ):
        """The `wanted` clusters sharing the most weight with `tokens`, at least `floor` of it.

        `weights` starts with the tokens' levels, native unsigned 16-bit
        numbers (as `cluster_tokens.weigh` makes them). Highest first, ties by
        cluster id. A token in more than `max_postings` clusters is too common
        to say anything and is not counted. `floor` is in levels too.
        """
        if wanted <= 0:
            return []
        cdef Py_ssize_t n = len(tokens), i
        if PyBytes_GET_SIZE(weights) < 2 * n:
            raise ValueError(f"{PyBytes_GET_SIZE(weights)} bytes of levels for {n} tokens")
        cdef const uint16_t* given = <const uint16_t*>PyBytes_AS_STRING(weights)
        cdef PyObject* number
        cdef vector[int32_t] terms  # the entry's indexed tokens, by number
        cdef vector[int64_t] levels  # their weights in whole units
        for i in range(n):  # every Python call happens here
            number = PyDict_GetItem(self._token_ids, tokens[i])
            if number == NULL:
                continue
            terms.push_back(<int32_t><object>number)
            levels.push_back(given[i])
        cdef vector[int32_t]* posting
        cdef int32_t cluster
        cdef int64_t* sums
        cdef char* seen
        cdef size_t t
        if self._sums.size() < self._held.size():
            self._sums.resize(self._held.size(), 0)
            self._seen.resize(self._held.size(), 0)
        sums, seen = self._sums.data(), self._seen.data()
        self._met.clear()
        for t in range(terms.size()):
            posting = &self._postings[terms[t]]
            if <Py_ssize_t>posting.size() > max_postings:
                continue
            for cluster in posting[0]:
                if not seen[cluster]:
                    seen[cluster] = 1
                    self._met.push_back(cluster)
                sums[cluster] += levels[t]
        cdef vector[Ranked] best
        cdef Ranked ranked
        cdef size_t at
        for cluster in self._met:
            ranked = Ranked(sums[cluster], self._cluster_ids[cluster])
            sums[cluster] = 0
            seen[cluster] = 0
            if ranked.total < floor:
                continue
            if <Py_ssize_t>best.size() == wanted and not _before(ranked, best.back()):
                continue
            if <Py_ssize_t>best.size() == wanted:
                best.pop_back()
            best.push_back(ranked)
            at = best.size() - 1
            while at > 0 and _before(best[at], best[at - 1]):
                best[at], best[at - 1] = best[at - 1], best[at]
                at -= 1
        return [entry.cluster for entry in best]

    def tokens_of(self, int64_t cluster_id):
        """{token: members having it} of one cluster (empty if not indexed), for checks."""
        cdef unordered_map[int64_t, int32_t].iterator found = self._numbers.find(cluster_id)
        if found == self._numbers.end():
            return {}
        return {self._tokens[entry.token]: entry.count for entry in self._held[deref(found).second]}

    def postings(self):
        """{token: set of cluster ids having it}, for checks."""
        return {
            token: {self._cluster_ids[cluster] for cluster in self._postings[number]}
            for number, token in enumerate(self._tokens)
            if token is not None
        }

    cdef int32_t _cluster_number(self, int64_t cluster_id):
        cdef unordered_map[int64_t, int32_t].iterator found = self._numbers.find(cluster_id)
        if found != self._numbers.end():
            return deref(found).second
        cdef int32_t number
        if not self._free_clusters.empty():
            number = self._free_clusters.back()
            self._free_clusters.pop_back()
            self._cluster_ids[number] = cluster_id
        else:
            number = <int32_t>self._held.size()
            self._held.push_back(vector[Held]())
            self._cluster_ids.push_back(cluster_id)
        self._numbers[cluster_id] = number
        return number

    cdef void _release(self, int32_t number):
        self._numbers.erase(self._cluster_ids[number])
        vector[Held]().swap(self._held[number])
        self._free_clusters.push_back(number)

    cdef int32_t _token_number(self, object token) except -1:
        cdef PyObject* found = PyDict_GetItem(self._token_ids, token)
        if found != NULL:
            return <int32_t><object>found
        cdef int32_t number
        if not self._free_tokens.empty():
            number = self._free_tokens.back()
            self._free_tokens.pop_back()
            self._tokens[number] = token
        else:
            number = <int32_t>self._postings.size()
            self._postings.push_back(vector[int32_t]())
            self._tokens.append(token)
        self._token_ids[token] = number
        return number

    cdef int32_t _known_number(self, object token) except -1:
        cdef PyObject* found = PyDict_GetItem(self._token_ids, token)
        if found == NULL:
            raise KeyError(f"token {token!r} is not in the matcher's index")
        return <int32_t><object>found

    cdef int32_t _post(self, int32_t token, int32_t cluster):
        """Append `cluster` to the token's posting; its position there."""
        cdef vector[int32_t]* posting = &self._postings[token]
        posting.push_back(cluster)
        return <int32_t>posting.size() - 1

    cdef int _unpost(self, int32_t token, int32_t at, bint forget) except -1:
        """Take the cluster at `at` out of the token's posting (the last one takes its place)."""
        cdef vector[int32_t]* posting = &self._postings[token]
        cdef int32_t moved = posting.back()
        posting.pop_back()
        if <size_t>at < posting.size():
            posting[0][at] = moved
            self._find(moved, token).at = at
        elif posting.empty() and forget:
            del self._token_ids[self._tokens[token]]
            self._tokens[token] = None
            vector[int32_t]().swap(posting[0])
            self._free_tokens.push_back(token)
        return 0

    cdef Held* _find(self, int32_t cluster, int32_t token) except NULL:
        cdef Held* entry = self._find_or_null(cluster, token)
        if entry == NULL:
            raise KeyError(f"token {self._tokens[token]!r} is not in cluster "
                           f"{self._cluster_ids[cluster]} of the matcher's index")
        return entry

    cdef Held* _find_or_null(self, int32_t cluster, int32_t token) noexcept:
        cdef vector[Held]* held = &self._held[cluster]
        cdef size_t low = 0, high = held.size(), middle
        while low < high:
            middle = (low + high) // 2
            if held[0][middle].token < token:
                low = middle + 1
            else:
                high = middle
        if low < held.size() and held[0][low].token == token:
            return &held[0][low]
        return NULL

    cdef void _compact(self, int32_t cluster):
        """Drop the tokens whose count fell to 0 (already out of their postings)."""
        cdef vector[Held]* held = &self._held[cluster]
        cdef size_t keep = 0, i
        for i in range(held.size()):
            if held[0][i].count:
                held[0][keep] = held[0][i]
                keep += 1
        held.resize(keep)
