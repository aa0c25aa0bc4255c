"""Normalizing a long batch of entries in a second process, ahead of the clusterer's decisions.

Normalization (outlet boilerplate, tokens, stems, IDF weights) is about half
of the matcher's cost per entry, and it depends only on the entries before it,
never on a clustering decision. So while this process decides where entry n
goes, a worker process can already analyze the text of entries n+1, n+2, ...:
a batch run uses two cores. The worker does `cluster_score.analyze` (outlet
boilerplate, tokens, stems: the text alone); this process does `weigh` (the
document frequencies and IDF weights, cheap), which keeps the two processes'
work about even and leaves the worker without a copy of the frequencies. The
worker starts from the clusterer's own boilerplate model, sees the entries in
the same order, and hands its model back every `EPOCH` chunks and at the end,
so the features, the decisions and the state left behind are exactly those of
normalizing in this process (the tests compare both). Off by default
(`cluster.parallel`): the worker holds its own caches, about 100 MB on a big
batch.

The worker is started with "forkserver", never "fork": the caller may run
threads (the service's scheduler, a database writer) that a forked child
would inherit in whatever state they were.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aggregator import text, token_codec
from aggregator.cluster_score import (
    Analysis,
    DocumentFrequencies,
    Features,
    Tuning,
    analyze,
    featurize,
    limit_analyses,
    weigh,
)
from aggregator.models import Item
from aggregator.parent_watch import exit_with

# Below this many entries, starting a worker process (about 0.3 s with its
# imports) costs more than normalizing in this process.
MIN_ENTRIES = 10_000
# Entries per message to and from the worker, and messages on their way: big
# enough that pickling is cheap per entry, small enough to keep memory flat.
CHUNK = 1_000
IN_FLIGHT = 4
# Every this many chunks the worker sends its boilerplate model and starts
# numbering tokens afresh, so that neither side keeps a table growing with
# the batch (a recluster of weeks) rather than with the matcher's window.
EPOCH = 20
# Texts the worker keeps analyzed for their copies (agency copy, re-fetched
# entries). It runs ahead of the decisions with time to spare, so a miss costs
# CPU the batch does not wait for, where the matcher's default of 50,000 cost
# about 55 MB on a batch of 100,000 distinct texts.
WORKER_ANALYSES = 10_000

_ItemRow = tuple[int, str, str, str, datetime, str | None, str | None]
# A chunk of analyses as the worker sends it: the tokens it had not sent
# before (in this epoch), one tuple per entry (see `_encode`), and at the end
# of an epoch the boilerplate model after the chunk's entries.
_Chunk = tuple[list[str], list[tuple[Any, ...]], text.BoilerplateModel | None]

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def worthwhile(count: int) -> bool:
    """Whether a batch of `count` entries pays for a worker: long, and a second CPU to run on."""
    return count >= MIN_ENTRIES and _usable_cpus() > 1


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's or `taskset`'s share, where known)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Worker:
    """The worker process's state: set by `_start`, advanced by every `_normalize`."""

    boilerplate: text.BoilerplateModel
    tuning: Tuning
    epoch: int  # chunks per epoch: `EPOCH` as the starting process has it
    # Token -> its number in this epoch, numbered as first sent.
    vocabulary: dict[str, int] = field(default_factory=dict)
    chunks: int = 0


_worker: _Worker | None = None


def _start(
    parent: int, boilerplate: text.BoilerplateModel, tuning: Tuning, epoch: int, analyses: int
) -> None:
    """Worker initializer: the clusterer's boilerplate model as it was when the batch began.

    `analyses` is `WORKER_ANALYSES` as the starting process has it.
    """
    global _worker
    exit_with(parent)  # a SIGKILLed run leaves no worker behind
    limit_analyses(analyses)
    _worker = _Worker(boilerplate, tuning, epoch)


def _normalize(rows: list[_ItemRow]) -> _Chunk:
    """Worker task: the next entries' analyses, in order, encoded by `_encode`."""
    worker = _worker
    assert worker is not None, "worker not started"
    if worker.chunks % worker.epoch == 0:
        worker.vocabulary = {}
    worker.chunks += 1
    new: list[str] = []
    boilerplate, vocabulary = worker.boilerplate, worker.vocabulary
    encoded = [
        _encode(analyze(Item(*row), boilerplate, worker.tuning), vocabulary, new) for row in rows
    ]
    snapshot = worker.boilerplate if worker.chunks % worker.epoch == 0 else None
    return new, encoded, snapshot


def _encode(found: Analysis, vocabulary: dict[str, int], new: list[str]) -> tuple[Any, ...]:
    """An analysis as plain values, its tokens as numbers in the epoch's `vocabulary`.

    Tokens travel once per epoch (in `new`), then as numbers: the receiving
    side then shares one string per token across all entries, as `featurize`
    does, instead of unpickling its own copies entry by entry (about 1 KB an
    entry).
    """
    return (
        found.language,
        token_codec.encode(found.title_numbers, vocabulary, new),
        token_codec.encode(found.title_tokens, vocabulary, new),
        token_codec.encode(found.index_tokens, vocabulary, new),
        found.marks,
        found.text_key,
        found.title_is_weak,
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


def _decode(row: tuple[Any, ...], vocabulary: list[str]) -> Analysis:
    """The analysis `_encode` sent, tokens looked up in the epoch's `vocabulary`."""
    language, numbers, title_tokens, index_tokens, marks, text_key, weak = row
    decode = token_codec.decode
    return Analysis(
        language, decode(numbers, vocabulary), decode(title_tokens, vocabulary),
        decode(index_tokens, vocabulary), marks, text_key, weak,
    )  # fmt: skip


class _WorkerLost(Exception):
    """The worker process died (killed, out of memory): the rest is normalized here."""


class AheadNormalizer:
    """`featurize` over a stream of items, done by a worker process running ahead.

    Iterating yields each item's features in order, as `featurize` with the
    given model and frequencies would have: `arrive` was called with the
    item's publication time and then `frequencies` (the caller's) observed
    the item, as in `Clusterer.add`. Items are taken from `items` only a few
    chunks ahead of what was yielded, so a stream read page by page from a
    database stays a few pages in memory. The boilerplate model the stream
    ends with is `boilerplate` once the iteration is over, however it ended
    (early stop, an error, a dead worker): it has then observed exactly the
    entries yielded.
    """

    def __init__(
        self,
        items: Iterable[Item],
        boilerplate: text.BoilerplateModel,
        frequencies: DocumentFrequencies,
        tuning: Tuning,
        arrive: Callable[[datetime], None],
    ) -> None:
        self.boilerplate = boilerplate
        self._items = iter(items)
        self._frequencies = frequencies
        self._tuning = tuning
        self._arrive = arrive
        # Items sent to the worker and not yielded yet, and the (outlet, title)
        # of those yielded since `boilerplate` was last brought up to date:
        # what it takes to go on here if the worker cannot.
        self._sent: deque[Item] = deque()
        self._yielded: list[tuple[str, str]] = []
        # The worker's tokens of this epoch, by number.
        self._vocabulary: list[str] = []
        self._received = 0
        self._epoch = EPOCH

    def __iter__(self) -> Iterator[Features]:
        pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=_start,
            initargs=(os.getpid(), self.boilerplate, self._tuning, self._epoch, WORKER_ANALYSES),
        )
        handed_over = False
        try:
            pending: deque[Future[_Chunk]] = deque()
            while chunk := list(itertools.islice(self._items, CHUNK)):
                self._sent.extend(chunk)
                pending.append(_submit(pool, _normalize, [_row(item) for item in chunk]))
                if len(pending) >= IN_FLIGHT:
                    yield from self._receive(pending.popleft())
            while pending:
                yield from self._receive(pending.popleft())
            self.boilerplate = _result(_submit(pool, _boilerplate))
            self._yielded.clear()
            handed_over = True
        except _WorkerLost:
            log.warning("the normalizer process died; normalizing the rest in this process")
            self._catch_up()
            handed_over = True
            for item in itertools.chain(self._sent, self._items):
                self._arrive(item.published)
                yield featurize(item, self.boilerplate, self._frequencies, self._tuning)
        finally:
            if not handed_over:  # stopped early or failed
                self._catch_up()
            pool.shutdown(wait=False, cancel_futures=True)

    def _receive(self, future: Future[_Chunk]) -> Iterator[Features]:
        new_tokens, rows, snapshot = _result(future)
        if self._received % self._epoch == 0:
            self._vocabulary = []
        self._received += 1
        vocabulary = self._vocabulary
        vocabulary.extend(new_tokens)
        arrive, frequencies = self._arrive, self._frequencies
        sent, yielded = self._sent, self._yielded
        for row in rows:
            item = sent.popleft()
            arrive(item.published)
            yielded.append((item.outlet, item.title))
            yield weigh(item, _decode(row, vocabulary), frequencies)
        if snapshot is not None:  # the model after every entry yielded so far
            self.boilerplate = snapshot
            yielded.clear()

    def _catch_up(self) -> None:
        """`boilerplate` observes the titles yielded since it was last brought up to date."""
        for outlet, title in self._yielded:
            self.boilerplate.observe(outlet, title)
        self._yielded.clear()


def _submit(pool: ProcessPoolExecutor, task: Callable[..., _T], *args: Any) -> Future[_T]:
    try:
        return pool.submit(task, *args)
    except BrokenProcessPool as exc:
        raise _WorkerLost from exc


def _result(future: Future[_T]) -> _T:
    try:
        return future.result()
    except BrokenProcessPool as exc:
        raise _WorkerLost from exc
