"""Parsing fetched documents off the event loop: in worker processes when many are due.

feedparser is pure Python and holds the GIL, so a run with many documents
parses them in a process pool; a few are parsed in a thread instead, as
starting processes would cost more than it saves.

Kept apart from `pipeline` on purpose: a worker imports the module of the
function it runs, and `pipeline` pulls in the database, HTTP, clustering and
mail libraries, about 45 MB per worker that parsing never uses.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from aggregator.models import ParsedFeed
from aggregator.parent_watch import exit_with
from aggregator.parse import ParseError, parse_feed

BROKEN = "the parser process died on this document"


def parse_or_reason(content: bytes, **kwargs: Any) -> ParsedFeed | str:
    """`parse_feed`, with a refusal returned as its reason: picklable for a process pool."""
    try:
        return parse_feed(content, **kwargs)
    except ParseError as exc:
        return str(exc)


class Parsers:
    """Where one run parses: a process pool of `workers`, or (`pool=False`) a worker thread.

    The pool is started with the first document, so a run that gets only 304s
    and errors never starts a process.

    A worker that dies (killed, out of memory, a crash in a C extension) breaks
    the whole pool: every document in it fails, and so would every later one.
    The broken pool is dropped, so the next document starts a new one, and each
    document that was in it is parsed once more before it is blamed.
    """

    def __init__(self, workers: int, *, pool: bool) -> None:
        self.workers = workers
        self._use_pool = pool and workers > 1
        self._pool: ProcessPoolExecutor | None = None
        # One worker, started only after a pool broke, where the documents that
        # were in it are parsed again one at a time: a death there names its
        # document, where in a shared pool it would fail its neighbours too.
        self._retry_pool: ProcessPoolExecutor | None = None
        self._retrying = asyncio.Lock()

    async def parse(self, content: bytes, **kwargs: Any) -> ParsedFeed | str:
        """The parsed document, or why it was refused.

        `BROKEN` only if the document's worker died twice: in the shared pool,
        where any document in flight could have killed it, and again alone.
        """
        job = partial(parse_or_reason, content, **kwargs)
        if not self._use_pool:
            return await asyncio.get_running_loop().run_in_executor(None, job)
        try:
            return await self._run(job, alone=False)
        except BrokenProcessPool:
            pass
        async with self._retrying:
            try:
                return await self._run(job, alone=True)
            except BrokenProcessPool:
                return BROKEN

    async def _run(self, job: Callable[[], ParsedFeed | str], *, alone: bool) -> ParsedFeed | str:
        """`job` in the shared pool, or (`alone`) in the one-worker retry pool.

        A pool found broken when the job is submitted is replaced and the job
        goes to the new one: it never ran, so it is not blamed. A pool that
        breaks with the job in it is dropped and BrokenProcessPool raised.
        """
        pool = self._started(alone=alone)
        loop = asyncio.get_running_loop()
        try:
            running = loop.run_in_executor(pool, job)
        except BrokenProcessPool:  # a worker died while the pool was idle
            self._drop(pool)
            pool = self._started(alone=alone)
            running = loop.run_in_executor(pool, job)
        try:
            return await running
        except BrokenProcessPool:
            self._drop(pool)
            raise

    def _started(self, *, alone: bool) -> ProcessPoolExecutor:
        """The shared pool or the retry pool, started if there is none."""
        if alone:
            if self._retry_pool is None:
                self._retry_pool = self._start(1)
            return self._retry_pool
        if self._pool is None:
            self._pool = self._start(self.workers)
        return self._pool

    def _start(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=exit_with,
            initargs=(os.getpid(),),
        )

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        """Shut broken `pool` down and forget it, so that the next job starts a new one.

        Only while it is still current: every call that had a document in it
        fails, and the later ones must not drop the pool the first started since.
        Not waited for: the executor has already ended the workers it had left.
        """
        if pool is self._pool:
            self._pool = None
        elif pool is self._retry_pool:
            self._retry_pool = None
        else:
            return
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        for pool in (self._pool, self._retry_pool):
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        self._pool = self._retry_pool = None
