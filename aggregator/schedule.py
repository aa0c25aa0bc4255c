"""The long-running service: APScheduler wiring of which job runs when, nothing else.

One recurring job asks the database for the feeds that are due and fetches
them with bounded concurrency (100,000 feeds are not 100,000 jobs); each
digest has a cron job in its own time zone. Jobs coalesce missed runs and
never overlap themselves, and every pass takes the same run lock as
`run --once`, so cron and the service never process the same work at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC
from typing import Any, TypeVar

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.pipeline import Pipeline, utcnow
from aggregator.store import Busy

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside the service: the service, not uvicorn, owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Service:
    """Runs the pipeline on a schedule until SIGTERM or SIGINT."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        poll_seconds: float,
        grace_seconds: float,
        web: EmbeddedServer | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.web = web
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def _locked(self, what: str, work: Callable[[], Awaitable[None]]) -> None:
        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            with self.pipeline.store.exclusive("run"):
                await work()
        except Busy:
            log.info("%s skipped: another run holds the lock", what)
        except Exception:
            # A job that fails is logged and retried at its next turn; the service stays up.
            log.exception("%s failed", what)
        finally:
            self._running.discard(task)

    async def fetch_due(self) -> None:
        async def work() -> None:
            stopping = self._stopping
            summary = await self.pipeline.fetch(stop=stopping)
            clustered = await _in_thread(self.pipeline.cluster, stopping.is_set)
            if summary.ok or summary.failed or summary.not_modified:
                log.info("%s; %d clustered", summary.line(), clustered)
            if stopping.is_set():
                return
            # A digest job that found this pass holding the lock skipped its period;
            # writing it here makes it at most one pass late (cheap when none is due).
            written = await self._digests(None, only_written=True)
            if not written:
                for sent in await _in_thread(self.pipeline.retry_mail):
                    log.info("%s", sent.line())

        await self._locked("fetch", work)

    async def write_digests(self, names: list[str] | None = None) -> None:
        async def work() -> None:
            await self._digests(names)

        await self._locked("digest", work)

    async def _digests(self, names: list[str] | None, *, only_written: bool = False) -> bool:
        """Write the digests whose latest period is not written yet, and mail them.

        With `only_written`, mail is sent only if this call wrote a digest (the
        fetch pass's check); otherwise the latest periods are mailed whatever
        wrote them, which the delivery rows make safe to repeat. Returns
        whether a digest was written.
        """
        runs = await _in_thread(self.pipeline.write_due_digests, names)
        for run in runs:
            log.info(
                "digest %s %s – %s: %d stories, %s",
                run.name,
                run.start.isoformat(),
                run.end.isoformat(),
                run.clusters,
                ", ".join(str(p) for p in run.files),
            )
        if runs or not only_written:
            mailed = [run.name for run in runs] if only_written else names
            for sent in await _in_thread(self.pipeline.send_mail, mailed):
                log.info("%s", sent.line())
        return bool(runs)

    def _scheduler(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        scheduler.add_job(
            self.fetch_due,
            IntervalTrigger(seconds=self.poll_seconds, timezone=UTC),
            id="fetch",
            next_run_time=utcnow(),
        )
        for digest in self.pipeline.settings.digests:
            scheduler.add_job(
                self.write_digests, digest.trigger, args=[[digest.name]], id=f"digest:{digest.name}"
            )
        return scheduler

    async def run(self) -> None:
        """Serve until a signal; then stop claiming work and let running jobs finish."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        # A period that fell due while the service was down is written at start.
        await self.write_digests()
        scheduler = self._scheduler()
        scheduler.start()
        web = asyncio.create_task(self.web.serve()) if self.web else None
        log.info("serving: polling due feeds every %s s", self.poll_seconds)
        await self._stopping.wait()
        log.info("stopping: finishing %d running job(s)", len(self._running))
        # Paused, the scheduler starts nothing new; shut down, it would cancel
        # the running jobs at once (APScheduler's asyncio executor does).
        scheduler.pause()
        if self.web is not None and web is not None:
            self.web.should_exit = True
            await asyncio.wait({web}, timeout=self.grace_seconds)
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=self.grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                # What was committed stays and the writer stores what it was handed;
                # the feeds cancelled here are still due and are fetched again later.
                await asyncio.wait(pending, timeout=5)
        scheduler.shutdown(wait=False)
        log.info("stopped")


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """`function(*args)` in a worker thread; a cancelled caller still waits for it to return.

    A thread cannot be stopped, and the caller holds the run lock: leaving
    before the thread returned would let another run in while it still writes.
    """
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({work})
        raise
