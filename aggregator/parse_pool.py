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
    """

    def __init__(self, workers: int, *, pool: bool) -> None:
        self.workers = workers
        self._use_pool = pool and workers > 1
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, content: bytes, **kwargs: Any) -> ParsedFeed | str:
        """The parsed document, or why it was refused."""
        if self._use_pool and self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=exit_with,
                initargs=(os.getpid(),),
            )
        job = partial(parse_or_reason, content, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, job)
        except BrokenProcessPool:
            return BROKEN

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
