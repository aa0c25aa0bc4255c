"""Normalizing a long batch of entries in a second process, ahead of the clusterer's decisions.

Normalization (outlet boilerplate, tokens, stems, IDF weights) is about half
of the matcher's cost per entry, and it depends only on the entries before it,
never on a clustering decision. So while this process decides where entry n
goes, a worker process can already normalize entries n+1, n+2, ...: a batch
run uses two cores. The worker starts from the clusterer's own boilerplate
model and document frequencies, sees the entries in the same order, and hands
its boilerplate model back at the end, so the features, the decisions and the
state left behind are exactly those of normalizing in this process (the tests
compare both).

The worker is started with "forkserver", never "fork": the caller may run
threads (the service's scheduler, a database writer) that a forked child
would inherit in whatever state they were.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import sys
from array import array
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aggregator import text
from aggregator.cluster_score import (
    WEIGHT_LEVELS,
    DocumentFrequencies,
    Features,
    Item,
    Tuning,
    featurize,
)
from aggregator.parent_watch import exit_with

# Below this many entries, starting a worker process (about 0.3 s with its
# imports) costs more than normalizing in this process.
MIN_ENTRIES = 10_000
# Entries per message to and from the worker, and messages on their way: big
# enough that pickling is cheap per entry, small enough to keep memory flat.
CHUNK = 1_000
IN_FLIGHT = 4

_ItemRow = tuple[int, str, str, str, datetime, str | None, str | None]
# A chunk of features as the worker sends it: the tokens it had not sent
# before, then one tuple per entry (see `_encode`).
_Chunk = tuple[list[str], list[tuple[Any, ...]]]
_LEVEL_OF = {weight: level for level, weight in enumerate(WEIGHT_LEVELS)}

log = logging.getLogger(__name__)


def _numbering() -> defaultdict[str, int]:
    """A table that numbers each new key as it is first looked up: 0, 1, 2, ..."""
    return defaultdict(itertools.count().__next__)


@dataclass
class _Worker:
    """The worker process's state: set by `_start`, advanced by every `_normalize`."""

    boilerplate: text.BoilerplateModel
    frequencies: DocumentFrequencies
    tuning: Tuning
    # Token -> its number in this batch, numbered as first sent.
    vocabulary: defaultdict[str, int] = field(default_factory=_numbering)


_worker: _Worker | None = None


def _start(
    parent: int,
    boilerplate: text.BoilerplateModel,
    frequencies: DocumentFrequencies,
    tuning: Tuning,
) -> None:
    """Worker initializer: the clusterer's statistics as they were when the batch began."""
    global _worker
    exit_with(parent)  # a SIGKILLed run leaves no worker behind
    _worker = _Worker(boilerplate, frequencies, tuning)


def _normalize(rows: list[_ItemRow]) -> _Chunk:
    """Worker task: the next entries' features, in order, encoded by `_encode`."""
    assert _worker is not None, "worker not started"
    known = len(_worker.vocabulary)
    number = _worker.vocabulary.__getitem__
    encoded = [
        _encode(
            featurize(Item(*row), _worker.boilerplate, _worker.frequencies, _worker.tuning), number
        )
        for row in rows
    ]
    return list(itertools.islice(_worker.vocabulary, known, None)), encoded


def _encode(features: Features, number: Callable[[str], int]) -> tuple[Any, ...]:
    """Features as plain values, every token as its number and every weight as its level.

    Tokens travel once per batch, then as numbers, and weights as their index
    in `WEIGHT_LEVELS`: the receiving side then shares one string per token
    and one float per level across all entries, as `featurize` does, instead
    of unpickling its own copies entry by entry (about 1 KB an entry).
    """
    weights = features.weights
    return (
        features.id,
        features.published,
        features.canonical_url,
        features.language,
        features.title,
        features.lead,
        array("I", map(number, features.title_numbers)).tobytes(),
        array("I", map(number, features.title_tokens)).tobytes(),
        array("I", map(number, weights)).tobytes(),
        array("H", map(_LEVEL_OF.__getitem__, weights.values())).tobytes(),
        features.title_mass,
        features.index_mass,
        features.title_norm,
        features.weighed_at,
        features.hours,
        features.text_key,
        features.title_is_weak,
    )


def _boilerplate() -> text.BoilerplateModel:
    """Worker task, the last one: the boilerplate model after every entry of the batch."""
    assert _worker is not None, "worker not started"
    return _worker.boilerplate


def _row(item: Item) -> _ItemRow:
    return (
        item.id,
        item.outlet,
        item.title,
        item.summary,
        item.published,
        item.canonical_url,
        item.language,
    )


def _decode(row: tuple[Any, ...], vocabulary: list[str]) -> Features:
    """The features `_encode` sent, tokens looked up in the batch's `vocabulary`."""
    (id_, published, url, language, title, lead, numbers, tokens, keys, levels, *rest) = row
    token = vocabulary.__getitem__
    weights = dict(
        zip(
            map(token, array("I", keys)),
            map(WEIGHT_LEVELS.__getitem__, array("H", levels)),
            strict=True,
        )
    )
    return Features(
        id_, published, url, language, title, lead, tuple(map(token, array("I", numbers))),
        tuple(map(token, array("I", tokens))), weights, *rest,
    )  # fmt: skip


class AheadNormalizer:
    """`featurize` over a stream of items, done by a worker process running ahead.

    Iterating yields each item's features in order, as `featurize` with the
    given model and frequencies would have: `frequencies` (the caller's) has
    observed each entry once it is yielded. Items are taken from `items`
    only a few chunks ahead of what was yielded, so a stream read page by
    page from a database stays a few pages in memory. The boilerplate model
    the stream ends with is `boilerplate` once the iteration is over, however
    it ended (early stop, an error, a dead worker): it has then observed
    exactly the entries yielded.
    """

    def __init__(
        self,
        items: Iterable[Item],
        boilerplate: text.BoilerplateModel,
        frequencies: DocumentFrequencies,
        tuning: Tuning,
    ) -> None:
        self.boilerplate = boilerplate
        self._items = iter(items)
        self._frequencies = frequencies
        self._tuning = tuning
        # Items sent to the worker and not yielded yet, and the (outlet, title)
        # of those yielded: what it takes to go on here if the worker cannot.
        self._sent: deque[Item] = deque()
        self._yielded: list[tuple[str, str]] = []
        # The worker's tokens by number, each one string shared by all entries.
        self._vocabulary: list[str] = []

    def __iter__(self) -> Iterator[Features]:
        pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_start,
            initargs=(os.getpid(), self.boilerplate, self._frequencies, self._tuning),
        )
        handed_over = False
        try:
            pending: deque[Future[_Chunk]] = deque()
            while chunk := list(itertools.islice(self._items, CHUNK)):
                self._sent.extend(chunk)
                pending.append(pool.submit(_normalize, [_row(item) for item in chunk]))
                if len(pending) >= IN_FLIGHT:
                    yield from self._receive(pending.popleft())
            while pending:
                yield from self._receive(pending.popleft())
            self.boilerplate = pool.submit(_boilerplate).result()
            handed_over = True
        except BrokenProcessPool:
            log.warning("the normalizer process died; normalizing the rest in this process")
            self._catch_up()
            handed_over = True
            for item in itertools.chain(self._sent, self._items):
                yield featurize(item, self.boilerplate, self._frequencies, self._tuning)
        finally:
            if not handed_over:  # stopped early or failed
                self._catch_up()
            pool.shutdown(wait=False, cancel_futures=True)

    def _receive(self, future: Future[_Chunk]) -> Iterator[Features]:
        new_tokens, rows = future.result()
        vocabulary = self._vocabulary
        vocabulary.extend(map(sys.intern, new_tokens))
        observe, sent, yielded = self._frequencies.observe, self._sent, self._yielded
        for row in rows:
            features = _decode(row, vocabulary)
            observe(features.weights.keys())  # as `featurize` did in the worker
            item = sent.popleft()
            yielded.append((item.outlet, item.title))
            yield features

    def _catch_up(self) -> None:
        """The starting model (unchanged here) observes the titles of the entries yielded."""
        for outlet, title in self._yielded:
            self.boilerplate.observe(outlet, title)
        self._yielded.clear()
