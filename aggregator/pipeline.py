"""One run of the stages, wired: fetch -> parse -> store -> cluster -> digest -> deliver.

Each step reads what the previous one committed, so any step can be killed
and re-run: a fetched feed's state and entries are stored in one transaction
(with other feeds' results, and reported only once committed), clustering commits
in batches of whole decisions, and a digest period is recorded only after
its files were written (re-writing them is harmless: same names, atomic).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator import deliver
from aggregator.cluster import Clusterer, Item, resolve_merges
from aggregator.config import DigestSettings, Settings
from aggregator.digest import build_digest
from aggregator.digest.render import render
from aggregator.fetch import apply_result, fetch_many
from aggregator.mail.service import SendSummary, send_due, send_retries
from aggregator.models import Entry, Feed, FetchResult, FetchStatus, Match, Outlet, ParsedFeed
from aggregator.parse.normalize import describe
from aggregator.parse_pool import Parsers
from aggregator.store import Fetched, SaveResult, Store
from aggregator.store.dashboard import DashboardStore, apply_corrections
from aggregator.store.match_writer import MatchWriter
from aggregator.store.writer import BatchWriter

log = logging.getLogger(__name__)

# Entries read, clustered and committed together. Assignments are scattered
# over the entries table, so a commit rewrites about a database page per entry:
# fewer, larger transactions rewrite each page fewer times (storing 100,000
# assignments on SQLite took 5.6 s in pages of 2,000, 3.9 s in pages of 10,000).
CLUSTER_BATCH = 10_000
# Edited entries read by id at a time (bind parameters of one IN list).
REREAD_CHUNK = 500
# While a batch fills, how many decisions are made between two looks at `stop`.
STOP_CHECK = 1000
# Allocations between two young garbage collections while clustering (see
# `_collections_skip_survivors`); Python's default is 700.
YOUNG_COLLECTION = 20_000
# Seconds a process waits for another to finish syncing the configuration.
CONFIG_WAIT = 120.0
# Below this many feeds, starting parser processes costs more than it saves.
PARSE_POOL_MIN_FEEDS = 16
# Parsed entries waiting for the store at most (about 13 MB). When the writer
# is the bottleneck they wait and then go into a few large transactions: each
# transaction writes every index page it touches, so fewer of them cost less
# (the writer of a 100,000-entry fetch was busy 6.3-6.8 s with 64 feeds of 50
# entries waiting at most, 5.2-5.4 s with 12,800 entries).
STORE_AHEAD = 12_800

Progress = Callable[[Feed, FetchResult], None]


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


@dataclass
class _Warm:
    """A matcher kept between runs, and which version of each entry's text it read.

    The version is the entry's content hash: a fetch that changes an entry's
    text stores a new one and keeps the entry's cluster (`Store.save_fetches`).
    It is kept as Python's hash of it, an int (about 10 MB less than the hex
    strings on a 100,000-entry window): only this process compares them.
    """

    clusterer: Clusterer
    read: dict[int, int] = field(default_factory=dict)

    def item(self, item: Item, content_hash: str) -> Item:
        """`item`, a stored entry as the matcher sees it, noting which version of its text it is."""
        self.read[item.id] = hash(content_hash)
        return item

    def entry(self, entry: Entry) -> Item:
        """`item` for an entry read whole."""
        return self.item(Item.from_entry(entry), entry.content_hash)


# What the writer reports back for a result: the feed, what the fetch gave,
# and how much of the run's `backlog` it holds (0 for a result without a document).
_Token = tuple[Feed, FetchResult, int]


class _Backlog:
    """Parsed entries handed to the writer and not committed yet, kept within `limit`.

    Counted in entries, not documents, so that a run of 5,000-item feeds
    waits as early as one of 50-item feeds. A document waits for room
    unless nothing is waiting at all: one bigger than `limit` goes alone.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._room = asyncio.Event()

    async def take(self, size: int) -> None:
        while self.held and self.held + size > self.limit:
            self._room.clear()
            await self._room.wait()
        self.held += size

    def give_back(self, size: int) -> None:
        self.held -= size
        self._room.set()


def _decided(matches: Iterator[Match], stop: Callable[[], bool] | None) -> list[Match]:
    """The next `CLUSTER_BATCH` matches, or fewer once `stop()` turned true.

    A batch of slow decisions can take seconds; asked to stop (SIGTERM in
    `serve`), a run commits what it decided within `STOP_CHECK` decisions.
    """
    batch: list[Match] = []
    while len(batch) < CLUSTER_BATCH:
        decided = list(itertools.islice(matches, min(STOP_CHECK, CLUSTER_BATCH - len(batch))))
        batch += decided
        if not decided or (stop is not None and stop()):
            break
    return batch


@contextlib.contextmanager
def _collections_skip_survivors() -> Iterator[Callable[[], None]]:
    """A function that hides every object alive from the garbage collector, until the block ends.

    The matcher's window is hundreds of thousands of objects that live for
    the whole run, and every full collection walked all of them again: 2 of
    the 39 s that clustering 100,000 entries took. Frozen after each
    committed batch (`gc.freeze`), they are left to reference counting, which
    frees evicted entries as before; collections look at what is new. Cycles
    among frozen objects wait for the end of the block, when all is unfrozen.

    Young collections run every `YOUNG_COLLECTION` allocations instead of
    Python's 700: the matcher allocates a dozen long-lived objects for every
    entry, so a collection every 700 walked each new entry's objects again
    and again before they were frozen. 100,000 entries: 1.8-2.0 s of
    collections -> 0.9-1.2 s, the same objects freed.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION, *thresholds[1:])
    try:
        yield gc.freeze
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class _FetchRun:
    """One `Pipeline.fetch`: parses and stores results as they arrive, and counts them."""

    def __init__(self, pipeline: Pipeline, progress: Progress | None, *, many: bool) -> None:
        self.settings = pipeline.settings.fetch
        self.clock = pipeline.clock
        self.progress = progress
        self.summary = FetchSummary()
        self.languages = pipeline.store.outlet_languages()
        workers = self.settings.parse_workers or os.cpu_count() or 1
        self.parsers = Parsers(workers, pool=many)
        # Downloaded documents not parsed yet (each up to max_bytes): enough to
        # keep every parser busy, few enough to bound memory.
        self.to_parse = asyncio.Semaphore(2 * workers)
        self.backlog = _Backlog(STORE_AHEAD)
        self.parsing: set[asyncio.Task[None]] = set()
        self.unstored = 0
        self.all_stored = asyncio.Event()
        self.all_stored.set()
        self.failure: BaseException | None = None
        self.store = pipeline.store
        loop = asyncio.get_running_loop()
        self.writer: BatchWriter[_Token] = BatchWriter(
            pipeline.store, lambda done: loop.call_soon_threadsafe(self._stored, done)
        )

    async def take(self, feed: Feed, result: FetchResult) -> None:
        """Store one result, after parsing it if it brought a document."""
        if result.status is FetchStatus.OK and result.content is not None:
            await self.to_parse.acquire()
            task = asyncio.create_task(self._parse_and_store(feed, result))
            self.parsing.add(task)
            task.add_done_callback(self._parsed)
        else:
            self._store(feed, result, None, self.clock(), held=0)

    async def finish(self) -> None:
        """Wait until every result taken is parsed and stored, then raise the first error.

        Raised only now, so a feed whose results cannot be stored (a bug, a
        constraint) does not keep the others from being stored run after run.
        """
        await asyncio.gather(*self.parsing, return_exceptions=True)
        await asyncio.to_thread(self.writer.close)
        await self.all_stored.wait()
        if self.failure is not None:
            raise self.failure

    def close(self) -> None:
        """Stop parsing and store what is waiting (after `finish`, or when the run is cut short)."""
        for task in self.parsing:
            task.cancel()
        self.writer.close()
        self.parsers.close()

    async def _parse_and_store(self, feed: Feed, result: FetchResult) -> None:
        now = self.clock()
        assert result.content is not None
        try:
            outcome = await self.parsers.parse(
                result.content,
                url=feed.url,
                content_type=result.content_type,
                outlet=feed.outlet,
                outlet_language=self.languages.get(feed.outlet),
                now=now,
            )
            size = 1 if isinstance(outcome, str) else max(1, len(outcome.entries))
            await self.backlog.take(size)
        finally:
            self.to_parse.release()
        try:
            if isinstance(outcome, str):
                failed = replace(result, status=FetchStatus.FAILED, error=outcome)
                self._store(feed, failed, None, now, held=size)
            else:
                self._store(feed, result, outcome, now, held=size)
        except BaseException:
            # Not handed to the writer, so never given back by `_stored`: a run
            # whose results fail this way must end with the error, not stall
            # once the backlog is full of what was lost.
            self.backlog.give_back(size)
            raise

    def _parsed(self, task: asyncio.Task[None]) -> None:
        self.parsing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failure = self.failure or task.exception()

    def _store(
        self,
        feed: Feed,
        result: FetchResult,
        parsed: ParsedFeed | None,
        now: datetime,
        *,
        held: int,
    ) -> None:
        """Hand the feed's new state and entries to the writer, with `held` of the backlog."""
        state = apply_result(feed, result, now, self.settings, parsed=parsed)
        if parsed is not None:
            state = replace(
                state, title=parsed.title or state.title, language=parsed.language or state.language
            )
        self.unstored += 1
        self.all_stored.clear()
        fetched = Fetched(state, parsed.entries if parsed else [], now)
        if result.content is not None:
            result = replace(result, content=None)  # parsed: the document is not needed any more
        # Documents wait for company (fewer, larger transactions) until half of
        # the backlog is taken: from then on parsing may soon wait for the writer.
        urgent = held > 0 and self.backlog.held >= self.backlog.limit // 2
        self.writer.submit(fetched, (feed, result, held), urgent=urgent)

    def _stored(self, done: list[tuple[_Token, SaveResult | Exception]]) -> None:
        """A batch committed (on the event loop): count, log and report each feed in it."""
        for (feed, result, held), saved in done:
            self.unstored -= 1
            if held:
                self.backlog.give_back(held)
            if isinstance(saved, Exception):
                self._unstorable(feed, result, saved)
            else:
                self._count(feed, result, saved)
        if not self.unstored:
            self.all_stored.set()

    def _unstorable(self, feed: Feed, result: FetchResult, error: Exception) -> None:
        """Record a feed whose entries the database refused as its failure; the run goes on.

        One feed's data (a guid beyond an index's size limit, a constraint
        nobody foresaw) must not keep the other feeds, or clustering and
        digests, from running run after run. The feed's state is saved here
        directly: the writer may already be closing. Only if even that fails
        (the database is gone) does the run end with the error.
        """
        reason = f"cannot store its entries: {describe(error)}"
        log.error("%s %s", feed.url, reason, exc_info=error)
        failed = replace(result, status=FetchStatus.FAILED, error=reason, content=None)
        now = self.clock()
        try:
            [saved] = self.store.save_fetches(
                [Fetched(apply_result(feed, failed, now, self.settings), [], now)]
            )
        except Exception as again:
            self.failure = self.failure or again
            return
        self._count(feed, failed, saved)

    def _count(self, feed: Feed, result: FetchResult, saved: SaveResult) -> None:
        summary = self.summary
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
        if self.progress is not None:
            self.progress(feed, result)


class Pipeline:
    """The stages for one configuration and database."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        # The matcher state of the last clustering run, and how often one was primed.
        self._warm: _Warm | None = None
        self.primed = 0

    def sync_config(self) -> None:
        """Make sure every feed of the configuration is in the database.

        Under a lock of its own: every command syncs on start (`serve` beside a
        cron run, `status` beside `digest`), and two inserting the same new
        outlet at once would fail on its unique name.
        """
        with self.store.exclusive("config", wait=CONFIG_WAIT):
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
        self,
        *,
        all_feeds: bool = False,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
    ) -> FetchSummary:
        """Fetch due (or all) feeds; each is parsed and stored as soon as it arrives.

        Once `stop` is set no further feed is started; those in flight are
        stored, and the rest stay due for the next run.

        The event loop only downloads: documents are parsed in a process pool
        when many feeds are due (`parse_pool`), and one writer thread stores
        the results several feeds per transaction (`store.writer`). A feed is
        counted, logged and shown as progress once its transaction committed.
        """
        now = self.clock()
        feeds = self.store.feeds(include_disabled=False) if all_feeds else self.store.due_feeds(now)
        run = _FetchRun(self, progress, many=len(feeds) >= PARSE_POOL_MIN_FEEDS)
        try:
            fetching = fetch_many(feeds, self.settings.fetch, stop=stop)
            async with contextlib.aclosing(fetching) as results:
                async for feed, result in results:
                    await run.take(feed, result)
            await run.finish()
        finally:
            run.close()
        return run.summary

    # -- cluster --------------------------------------------------------------

    def cluster(self, stop: Callable[[], bool] | None = None) -> int:
        """Assign every unclustered entry; return how many were assigned.

        Entries are read and committed a page at a time, so memory holds a
        few pages plus the matcher's window, however many entries are waiting.
        Pages are read ahead of the matcher's decisions (a long batch is
        normalized in a second process meanwhile, see `Clusterer.add_many`).
        When `stop()` turns true the run commits what it decided (looked at
        every `STOP_CHECK` decisions) and ends: the entries not reached wait
        for the next run.
        """
        page = self.store.unclustered_items(CLUSTER_BATCH)
        if not page:
            apply_corrections(self.store)
            return 0
        # Until this run has committed, the database alone says what is clustered.
        kept, self._warm = self._warm, None
        warm = self._clusterer_from(kept, page[0][0].published)
        clusterer = warm.clusterer
        # How many wait decides whether a second process pays; counted only if one may run.
        waiting = self.store.count_unclustered() if self.settings.cluster.parallel else None
        items = itertools.starmap(warm.item, self._pages_from(page))
        del page  # the reader holds it only as long as it needs it
        assigned = 0
        matches = clusterer.add_many(items, waiting)
        with (
            contextlib.closing(matches),
            _collections_skip_survivors() as skip_survivors,
            MatchWriter(self.store) as writer,
        ):
            while batch := _decided(matches, stop):
                merges = clusterer.take_merges()
                writer.save(resolve_merges(batch, merges), merges)
                assigned += len(batch)
                if stop is not None and stop():
                    break
                skip_survivors()
        # Editors' splits and merges overrule the matcher, also after a recluster.
        apply_corrections(self.store)
        self._warm = warm
        return assigned

    def _pages_from(self, page: list[tuple[Item, str]]) -> Iterator[tuple[Item, str]]:
        """The unclustered entries from `page` on, in the matcher's order, a page read at a time.

        Read by position (after the last entry read), as pages are read ahead of
        the matches being stored: an entry stored meanwhile with an earlier
        publication time waits for the next run (runs hold the "run" lock, so
        only another process's fetch could store one).
        """
        while page:
            last = page[-1][0]
            yield from page
            # Let go of a page before reading the next: each is 10,000 entries with their texts.
            del page
            page = self.store.unclustered_items(CLUSTER_BATCH, (last.published, last.id))

    def _clusterer_from(self, warm: _Warm | None, first: datetime) -> _Warm:
        """A matcher holding the window before `first`: the last run's (`warm`), or one primed anew.

        Priming reads and normalizes every entry of the window, which for a
        big installation is 72 hours of entries and seconds of CPU on every
        pass of the service. So the last run's clusterer is kept and used
        again while the database, from where priming would start, shows
        exactly the assignments it holds: nobody clustered, split or merged
        anything in its window since, and no entry it evicted is needed again.
        It has seen the entries in the order one batch run would. An entry
        whose text a fetch changed since (this process's or another's: the
        database says which) it reads again, keeping its cluster, so that
        later entries are compared with what the entry says now.
        """
        since = first - self.settings.cluster.window_delta
        if warm is not None:
            oldest, held = warm.clusterer.assignments()
            if oldest is not None:
                stored = self.store.cluster_assignments(min(oldest, since))
                if len(stored) == len(held) and all(
                    held.get(entry_id) == cluster_id for entry_id, (cluster_id, _) in stored.items()
                ):
                    self._reread_edited(warm, stored)
                    return warm
        warm = _Warm(Clusterer(self.settings.cluster))
        warm.clusterer.prime_many(
            [(warm.entry(entry), match) for entry, match in self.store.clustered_since(since)]
        )
        self.primed += 1
        return warm

    def _reread_edited(self, warm: _Warm, stored: dict[int, tuple[int, str]]) -> None:
        """Refresh the kept matcher's entries whose stored text is not the version it read.

        `stored` is the window's entries with their versions; what left it is
        forgotten. Edits are a few entries a pass, read by id: priming the
        whole window again for them would cost seconds of CPU on most passes.
        """
        read = {i: hash(version) for i, (_, version) in stored.items()}
        edited = [i for i, version in read.items() if warm.read.get(i) != version]
        warm.read = read
        if not edited:
            return
        data = DashboardStore(self.store)
        entries = itertools.chain.from_iterable(
            data.entries_by_id(edited[start : start + REREAD_CHUNK]).values()
            for start in range(0, len(edited), REREAD_CHUNK)
        )
        warm.clusterer.refresh(map(warm.entry, entries))

    def recluster(self, since: datetime) -> tuple[int, int]:
        """Rebuild the clusters touching [since, now) (after a threshold change).

        Returns (entries freed, entries assigned). If killed in between, the
        next `fetch` or `recluster` clusters whatever is still unassigned.
        """
        self._warm = None
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

        Asking for the latest written period, not only the ones this run wrote,
        and for any earlier one written but never mailed (for as long as a retry
        would still be sent), is what makes a crash between writing the files
        and mailing harmless, also when the next run falls in the next period:
        the delivery rows decide who still gets a period, so nobody gets it twice.
        """
        now = self.clock()
        summaries = []
        look_back = now - self.settings.smtp.retry_max_age_delta
        for digest in self.settings.digests:
            if names is not None and digest.name not in names:
                continue
            latest = scheduled_period(digest, now)
            periods = self.store.unmailed_periods(digest.name, look_back)
            if latest not in periods and self.store.digest_written(digest.name, *latest):
                periods.append(latest)
            for start, end in periods:
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
