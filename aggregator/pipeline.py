"""One run of the stages, wired: fetch -> parse -> store -> cluster -> digest -> deliver.

Each step reads what the previous one committed, so any step can be killed
and re-run: a fetched feed is stored in one transaction, clustering commits
in batches of whole decisions, and a digest period is recorded only after
its files were written (re-writing them is harmless: same names, atomic).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from aggregator import deliver
from aggregator.cluster import Clusterer, Item, resolve_merges
from aggregator.config import DigestSettings, Settings
from aggregator.digest import build_digest
from aggregator.digest.render import render
from aggregator.fetch import apply_result, fetch_many
from aggregator.mail.service import SendSummary, send_due, send_retries
from aggregator.models import Feed, FetchResult, FetchStatus, Outlet, ParsedFeed
from aggregator.parse import ParseError, parse_feed
from aggregator.store import SaveResult, Store
from aggregator.store.dashboard import apply_corrections

log = logging.getLogger(__name__)

# Entries read, clustered and committed together.
CLUSTER_BATCH = 2000
# Below this many feeds, starting parser processes costs more than it saves.
PARSE_POOL_MIN_FEEDS = 16

Progress = Callable[[Feed, FetchResult], None]


def parse_or_reason(content: bytes, **kwargs: Any) -> ParsedFeed | str:
    """`parse_feed`, with a refusal returned as its reason: picklable for a process pool."""
    try:
        return parse_feed(content, **kwargs)
    except ParseError as exc:
        return str(exc)


def _exit_with(parent: int) -> None:
    """Pool initializer: end this parser process when the run that started it is gone.

    A run killed with SIGKILL cannot shut its pool down, and idle workers would
    wait on their queue forever; cron would pile them up.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class FetchSummary:
    ok: int = 0
    not_modified: int = 0
    failed: int = 0
    new: int = 0
    updated: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"feeds: {self.ok} ok, {self.not_modified} not modified, {self.failed} failed; "
            f"entries: {self.new} new, {self.updated} updated"
        )


@dataclass
class DigestRun:
    name: str
    start: datetime
    end: datetime
    files: list[Path]
    clusters: int


def latest_fire(digest: DigestSettings, now: datetime) -> datetime:
    """The most recent time at or before `now` that the digest's cron schedule fired."""
    trigger = digest.trigger
    lookback = timedelta(hours=1)
    while True:
        fire = trigger.get_next_fire_time(None, now - lookback)
        if fire is not None and fire <= now:
            break
        if lookback > timedelta(days=800):
            raise ValueError(f"digest {digest.name!r}: schedule {digest.schedule!r} never fires")
        lookback *= 2
    while True:
        following = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if following is None or following > now:
            return fire.astimezone(UTC)  # type: ignore[no-any-return]
        fire = following


def scheduled_period(digest: DigestSettings, now: datetime) -> tuple[datetime, datetime]:
    """The latest completed period of a digest: `period` long, ending at its last fire time."""
    end = latest_fire(digest, now)
    return end - digest.period_delta, end


class Pipeline:
    """The stages for one configuration and database."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock

    def sync_config(self) -> None:
        """Make sure every feed of the configuration is in the database."""
        self.store.sync_feeds(
            [
                (self.settings.feed_url(url), Outlet(o.name, o.language, o.home_url))
                for o in self.settings.outlets
                for url in o.feeds
            ],
            source="config",
            interval_seconds=int(self.settings.fetch.interval_delta.total_seconds()),
            now=self.clock(),
        )

    # -- fetch, parse, store ------------------------------------------------

    async def fetch(
        self, *, all_feeds: bool = False, progress: Progress | None = None
    ) -> FetchSummary:
        """Fetch due (or all) feeds; each is parsed and stored as soon as it arrives.

        Parsing runs in a process pool when many feeds are due (feedparser is
        pure Python and would hold the GIL), in a worker thread otherwise;
        storing runs in one writer thread. Either way the event loop keeps reading the
        downloads still in flight instead of letting them run into timeouts.
        """
        now = self.clock()
        feeds = self.store.feeds(include_disabled=False) if all_feeds else self.store.due_feeds(now)
        languages = self.store.outlet_languages()
        summary = FetchSummary()
        workers = self.settings.fetch.parse_workers or os.cpu_count() or 1
        pool = (
            ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("forkserver"),
                initializer=_exit_with,
                initargs=(os.getpid(),),
            )
            if workers > 1 and len(feeds) >= PARSE_POOL_MIN_FEEDS
            else None
        )
        # One writer: concurrent transactions would only queue for SQLite's write lock.
        writer = ThreadPoolExecutor(1, thread_name_prefix="store")
        # Bounds the downloaded documents waiting for a parser, and so memory.
        waiting = asyncio.Semaphore(2 * workers)
        running: set[asyncio.Task[None]] = set()

        async def handle(feed: Feed, result: FetchResult) -> None:
            try:
                await self._handle(feed, result, languages.get(feed.outlet), summary, pool, writer)
                if progress is not None:
                    progress(feed, result)
            finally:
                waiting.release()

        try:
            async for feed, result in fetch_many(feeds, self.settings.fetch):
                await waiting.acquire()
                task = asyncio.create_task(handle(feed, result))
                running.add(task)
                task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            writer.shutdown()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        return summary

    async def _handle(
        self,
        feed: Feed,
        result: FetchResult,
        language: str | None,
        summary: FetchSummary,
        pool: ProcessPoolExecutor | None,
        writer: ThreadPoolExecutor,
    ) -> None:
        now = self.clock()
        parsed = None
        if result.status is FetchStatus.OK and result.content is not None:
            job = partial(
                parse_or_reason,
                result.content,
                url=feed.url,
                content_type=result.content_type,
                outlet=feed.outlet,
                outlet_language=language,
                now=now,
            )
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(pool, job)
            except BrokenProcessPool:
                outcome = "the parser process died on this document"
            if isinstance(outcome, str):
                result = replace(result, status=FetchStatus.FAILED, error=outcome)
            else:
                parsed = outcome
        saved = await asyncio.get_running_loop().run_in_executor(
            writer, self._save, feed, result, parsed, now
        )
        summary.new += saved.new
        summary.updated += saved.updated
        if result.status is FetchStatus.OK:
            summary.ok += 1
        elif result.status is FetchStatus.NOT_MODIFIED:
            summary.not_modified += 1
        else:
            summary.failed += 1
            summary.failures.append((feed.url, result.error or result.status.value))
        log.info(
            "fetched %s: %s%s, %d bytes, %.2f s, %d new, %d updated",
            feed.url,
            result.status.value,
            f" ({result.error})" if result.error else "",
            result.bytes_read,
            result.elapsed_seconds,
            saved.new,
            saved.updated,
        )

    def _save(
        self, feed: Feed, result: FetchResult, parsed: ParsedFeed | None, now: datetime
    ) -> SaveResult:
        """The feed's new state and its entries, in one transaction."""
        state = apply_result(feed, result, now, self.settings.fetch, parsed=parsed)
        if parsed is not None:
            state = replace(
                state, title=parsed.title or state.title, language=parsed.language or state.language
            )
        return self.store.save_fetch(state, parsed.entries if parsed else [], now)

    # -- cluster --------------------------------------------------------------

    def cluster(self) -> int:
        """Assign every unclustered entry; return how many were assigned.

        Entries are read and committed a page at a time, so memory holds one
        page plus the matcher's window, however many entries are waiting.
        """
        page = self.store.unclustered(limit=CLUSTER_BATCH)
        if not page:
            apply_corrections(self.store)
            return 0
        clusterer = Clusterer(self.settings.cluster)
        since = page[0].published - self.settings.cluster.window_delta
        for entry, match in self.store.clustered_since(since):
            clusterer.prime(Item.from_entry(entry), match)
        assigned = 0
        while page:
            batch = [clusterer.add(Item.from_entry(entry)) for entry in page]
            merges = clusterer.take_merges()
            self.store.save_matches(resolve_merges(batch, merges), merges)
            assigned += len(page)
            page = self.store.unclustered(limit=CLUSTER_BATCH)
        # Editors' splits and merges overrule the matcher, also after a recluster.
        apply_corrections(self.store)
        return assigned

    def recluster(self, since: datetime) -> tuple[int, int]:
        """Rebuild the clusters touching [since, now) (after a threshold change).

        Returns (entries freed, entries assigned). If killed in between, the
        next `fetch` or `recluster` clusters whatever is still unassigned.
        """
        freed = self.store.clear_clusters_since(since)
        return freed, self.cluster()

    # -- digest and deliver -------------------------------------------------------

    def write_digest(
        self,
        digest: DigestSettings,
        start: datetime,
        end: datetime,
        *,
        formats: list[str] | None = None,
        out: Path | None = None,
    ) -> DigestRun:
        """Render a digest of [start, end) and write its files (to `out` if given)."""
        clusters = self.store.clusters_between(start, end)
        built = build_digest(
            clusters,
            name=digest.name,
            title=digest.title or digest.name,
            period_start=start,
            period_end=end,
            generated_at=self.clock(),
        )
        if out is not None:
            fmt = (formats or digest.formats)[0]
            text = render(
                built,
                fmt,
                max_stories=digest.max_stories,
                min_outlets=digest.min_outlets,
                timezone=digest.timezone,
            )
            deliver.write_file(out, text)
            files = [out]
        else:
            base = self.settings.resolve(digest.output_dir)
            files = deliver.write_digest(built, digest, base, formats)
        return DigestRun(digest.name, start, end, files, len(built.clusters))

    def send_mail(self, names: list[str] | None = None) -> list[SendSummary]:
        """Mail each digest's latest written period to its subscribers, then due retries.

        Asking for every written period, not only the ones this run wrote, is
        what makes a crash between writing the files and mailing harmless: the
        delivery rows decide who still gets the period, so nobody gets it twice.
        """
        now = self.clock()
        summaries = []
        for digest in self.settings.digests:
            if names is not None and digest.name not in names:
                continue
            start, end = scheduled_period(digest, now)
            if self.store.digest_written(digest.name, start, end):
                summaries.append(send_due(self.store, self.settings, digest, start, end, now))
        return [
            s for s in summaries + self.retry_mail() if s.queued or s.sent or s.retry or s.failed
        ]

    def retry_mail(self) -> list[SendSummary]:
        """Send the deliveries whose retry time has come (cheap when there are none)."""
        return send_retries(self.store, self.settings, self.clock())

    def write_due_digests(self, names: list[str] | None = None) -> list[DigestRun]:
        """Write each digest (of `names`, default all) whose latest period is not written yet."""
        runs = []
        now = self.clock()
        for digest in self.settings.digests:
            if names is not None and digest.name not in names:
                continue
            start, end = scheduled_period(digest, now)
            if self.store.digest_written(digest.name, start, end):
                continue
            run = self.write_digest(digest, start, end)
            self.store.record_digest(digest.name, start, end, run.files, run.clusters, now)
            runs.append(run)
        return runs
