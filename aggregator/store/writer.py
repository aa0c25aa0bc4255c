"""One thread that stores a fetch run's results, several feeds per transaction.

A cycle in which most feeds answer 304 is little else than small writes, and
on SQLite every transaction costs a commit and a round on the write lock, more
than its rows. Entries cost per transaction too: their indexes (publication
time, URL) put each new row on a page of its own, and every page a
transaction touches is written out at its commit: 100,000 entries took 4.9 s
of CPU stored 32 feeds per transaction, 6.1 s at 8. So the writer gathers
what arrives while it works, and lets a batch wait up to `linger` seconds
for company; only results that someone waits for (`urgent`, e.g. a parsed
document when the run is short of room for more) are written as soon as the
thread is free. While a batch lingers, the thread sleeps until the time is
up or something that may not wait (or a full batch) arrives, rather than
waking for every result: in a 304
cycle results come every half millisecond, and each wake-up would take the
interpreter lock from the event loop.

What a crash can lose: the results not yet committed, which are only fetch
state (a feed's validators and next fetch time) and entries nobody was told
about yet, since results are reported only after their commit. The next run
fetches those feeds again and stores their entries once (entries are unique
per feed and guid), so a re-run is always safe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aggregator.store import Fetched, SaveResult, Store

Token = TypeVar("Token")
Outcome = SaveResult | Exception

# A batch is written once it holds this many feeds or entries, whatever else is waiting.
MAX_FEEDS = 500
MAX_ENTRIES = 5000
# How long a batch waits for more (seconds).
LINGER = 0.1


@dataclass(frozen=True)
class _Item(Generic[Token]):
    fetched: Fetched
    token: Token
    urgent: bool


class _Close:
    """Queue marker: write what is queued, then stop."""


class BatchWriter(Generic[Token]):
    """Writes submitted fetch results on its own thread; reports each batch once committed.

    `stored` is called on the writer thread with (token, SaveResult) pairs, a
    storing error in place of the SaveResult for an item that failed on its
    own: a failed batch is retried item by item, so one bad feed does not
    cost the others their results.
    """

    def __init__(
        self,
        store: Store,
        stored: Callable[[list[tuple[Token, Outcome]]], object],
        *,
        linger: float = LINGER,
    ) -> None:
        self._store = store
        self._stored = stored
        self._linger = linger
        self._queue: queue.SimpleQueue[_Item[Token] | _Close] = queue.SimpleQueue()
        # Set when a lingering batch should be written now: urgent, full, or closing.
        self._hurry = threading.Event()
        self._closed = False
        # A daemon: a run that dies without close() must not hang on exit; what it
        # had not committed is lost as in any crash.
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, fetched: Fetched, token: Token, *, urgent: bool = False) -> None:
        self._queue.put(_Item(fetched, token, urgent))
        if urgent or self._queue.qsize() >= MAX_FEEDS:
            self._hurry.set()

    def close(self) -> None:
        """Write everything submitted so far, then stop the thread (blocks until done)."""
        if not self._closed:
            self._closed = True
            self._queue.put(_Close())
            self._hurry.set()
        self._thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            batch, closing = self._gather()
            if batch:
                self._stored(self._write(batch))

    def _gather(self) -> tuple[list[_Item[Token]], bool]:
        """The next batch, and whether close() was asked for."""
        first = self._queue.get()
        if isinstance(first, _Close):
            return [], True
        if not first.urgent:
            self._hurry.wait(self._linger)
        # Cleared before taking what is queued: whatever sets it from now on is
        # either taken below or makes the next batch's wait return at once.
        self._hurry.clear()
        batch = [first]
        entries = len(first.fetched.entries)
        while len(batch) < MAX_FEEDS and entries < MAX_ENTRIES:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
            if isinstance(item, _Close):
                return batch, True
            batch.append(item)
            entries += len(item.fetched.entries)
        # Full: what is still queued (maybe urgent) is written next, without lingering.
        self._hurry.set()
        return batch, False

    def _write(self, batch: list[_Item[Token]]) -> list[tuple[Token, Outcome]]:
        try:
            results: list[Outcome] = list(self._store.save_fetches([i.fetched for i in batch]))
        except Exception as exc:
            if len(batch) == 1:
                return [(batch[0].token, exc)]
            return [outcome for item in batch for outcome in self._write([item])]
        return [(item.token, result) for item, result in zip(batch, results, strict=True)]
