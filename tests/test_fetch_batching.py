"""Fetching many feeds cheaply, and storing them in batches without losing any.

Against real loopback servers and SQLite files: connections are kept alive
after 304s, each host gets its own small pool, a host passes the SSRF guard's
DNS check once per run, downloads pause while results wait, and results are
stored several feeds per transaction; a kill between two commits loses no
entry that was reported stored, and the next run stores nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from configfile import write_config
from feedserver import FeedServer
from sqlalchemy import event
from test_fetch import fetch_all, make_settings

from aggregator import pipeline as pipeline_module
from aggregator.config import Settings
from aggregator.fetch import fetch_feed, fetch_many
from aggregator.fetch.client import make_client
from aggregator.fetch.transport import Connections
from aggregator.models import Entry, Feed, FetchResult, FetchStatus, Outlet
from aggregator.pipeline import Pipeline
from aggregator.store import Fetched, SaveResult, Store
from aggregator.store.writer import BatchWriter

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]

# -- connections -----------------------------------------------------------------------


class PortServer(ThreadingHTTPServer):
    """Answers /missing* with a small 404 page and anything else with 304; records client ports.

    The client's port tells which requests shared one TCP connection.
    """

    daemon_threads = True

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.ports: list[int] = []
        super().__init__((address, 0), _PortHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}{path}"


class _PortHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PortServer

    def do_GET(self) -> None:
        self.server.ports.append(self.client_address[1])
        if self.path.startswith("/missing"):
            body = b"<h1>Not here</h1>"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def port_servers() -> Iterator[list[PortServer]]:
    servers = [PortServer(), PortServer()]
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def test_304s_and_small_error_pages_keep_the_connection_alive(
    port_servers: list[PortServer],
) -> None:
    server = port_servers[0]
    feeds = [Feed(url=server.url(f"/f{i}.xml"), outlet="o", etag='"v1"') for i in range(4)]
    feeds += [Feed(url=server.url(f"/missing{i}.xml"), outlet="o") for i in range(3)]
    results = fetch_all(feeds, make_settings(per_host_concurrency=1))
    statuses = sorted(r.status.value for _, r in results)
    assert statuses == ["failed"] * 3 + ["not_modified"] * 4
    assert len(server.ports) == 7
    assert len(set(server.ports)) == 1, "every request needed a new connection"


@pytest.mark.parametrize(("max_idle", "reused"), [(1, False), (2, True)])
def test_idle_connections_beyond_the_bound_are_closed_least_recently_used_first(
    port_servers: list[PortServer], max_idle: int, reused: bool
) -> None:
    first, second = port_servers
    settings = make_settings()
    order = [first, second, first]

    async def run() -> None:
        async with Connections(per_origin=1, max_idle=max_idle) as client:
            for server in order:
                feed = Feed(url=server.url("/f.xml"), outlet="o", etag='"v1"')
                result = await fetch_feed(client, feed, settings)
                assert result.status is FetchStatus.NOT_MODIFIED

    asyncio.run(run())
    assert len(first.ports) == 2
    assert (first.ports[0] == first.ports[1]) is reused


def test_a_run_over_more_hosts_than_it_fetches_at_once_reuses_each_hosts_connection() -> None:
    """Feeds are taken host by host in turn: a connection must outlast a turn over the others."""
    servers = [PortServer(f"127.0.0.{number}") for number in range(2, 10)]
    try:
        feeds = [
            Feed(url=server.url(f"/f{i}.xml"), outlet="o", etag='"v1"')
            for server in servers
            for i in range(4)
        ]
        results = fetch_all(feeds, make_settings(max_concurrency=3, per_host_concurrency=1))
        assert {r.status for _, r in results} == {FetchStatus.NOT_MODIFIED}
        assert [len(set(server.ports)) for server in servers] == [1] * len(servers)
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def read_request(connection: socket.socket) -> bytes:
    """One request's head from a raw socket; b"" if the client closed first."""
    request = b""
    while b"\r\n\r\n" not in request:
        data = connection.recv(4096)
        if not data:
            return b""
        request += data
    return request


NOT_MODIFIED = b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n'


def fetch_from_raw_server(
    serve: Callable[[socket.socket], None], times: int, **settings_overrides: Any
) -> list[FetchResult]:
    """`times` conditional GETs of one feed through one client, from a hand-driven server.

    Every connection the server accepts is handed to `serve` (and closed after).
    """
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return  # listener closed: the test is over
            with connection:
                serve(connection)

    threading.Thread(target=accept, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/f.xml"
    settings = make_settings(**settings_overrides)

    async def run() -> list[FetchResult]:
        async with make_client(settings) as client:
            feed = Feed(url=url, outlet="o", etag='"v1"')
            return [await fetch_feed(client, feed, settings) for _ in range(times)]

    try:
        return asyncio.run(run())
    finally:
        listener.close()


def test_a_connection_the_server_closed_after_its_response_is_not_reused() -> None:
    """A server that hangs up after each response without saying so (no "Connection: close").

    The next request must go out on a new connection, not on the closed one,
    even when the event loop has not yet noticed the close.
    """

    def answer_once(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(NOT_MODIFIED)

    results = fetch_from_raw_server(answer_once, 5)
    assert [r.status for r in results] == [FetchStatus.NOT_MODIFIED] * 5, [r.error for r in results]


def test_a_kept_alive_connection_closed_as_the_request_goes_out_is_retried_once() -> None:
    """The server's idle timeout runs out just as the next request arrives: it hangs up unanswered.

    The socket looked open when the connection was taken from the pool (the
    server answered and kept it), so only sending again on a new connection helps.
    """
    connections = []

    def answer_then_hang_up(connection: socket.socket) -> None:
        connections.append(connection)
        if read_request(connection):
            connection.sendall(NOT_MODIFIED)  # kept alive: no "Connection: close"
        read_request(connection)  # the next request: hang up without an answer

    results = fetch_from_raw_server(answer_then_hang_up, 3)
    assert [r.status for r in results] == [FetchStatus.NOT_MODIFIED] * 3, [r.error for r in results]
    assert len(connections) == 3  # each retry on a new connection, which then served it


def test_a_408_on_a_kept_alive_connection_is_retried_once_on_a_new_one() -> None:
    """The server says its idle timeout ran out (408) as the next request arrives."""
    timed_out = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    connections = []

    def answer_then_time_out(connection: socket.socket) -> None:
        connections.append(connection)
        if read_request(connection):
            connection.sendall(NOT_MODIFIED)
        if read_request(connection):
            connection.sendall(timed_out)

    results = fetch_from_raw_server(answer_then_time_out, 3)
    assert [r.status for r in results] == [FetchStatus.NOT_MODIFIED] * 3, [r.error for r in results]
    assert len(connections) == 3


def test_bytes_after_a_response_are_never_taken_for_the_next_feeds_answer() -> None:
    """A 304 followed by a stray response (a server bug, or a hostile one) in one segment.

    Reusing the connection would hand the stray bytes to the next feed as its
    answer, and every later answer would arrive one feed late.
    """
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED"

    def answer_with_a_stray(connection: socket.socket) -> None:
        while read_request(connection):
            connection.sendall(NOT_MODIFIED + stray)

    results = fetch_from_raw_server(answer_with_a_stray, 3)
    assert [r.status for r in results] == [FetchStatus.NOT_MODIFIED] * 3, [r.error for r in results]


def test_endless_chunk_framing_stops_at_the_size_cap_not_the_time_limit() -> None:
    """Chunk extensions carry no body bytes, so the decoded cap alone never trips on them."""

    def flood(connection: socket.socket) -> None:
        read_request(connection)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
        chunk = b"1;" + b"x" * 4000 + b"\r\n<\r\n"
        with contextlib.suppress(OSError):
            connection.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            for _ in range(10_000):
                connection.sendall(chunk)

    started = time.monotonic()
    result = fetch_from_raw_server(flood, 1, max_bytes=64 * 1024)[0]
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and "framing included" in result.error, result.error
    assert time.monotonic() - started < 1.5  # the time limit is 2 s


def test_endless_informational_responses_fail_the_feed() -> None:
    def flood(connection: socket.socket) -> None:
        read_request(connection)
        with contextlib.suppress(OSError):
            connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 50)

    result = fetch_from_raw_server(flood, 1)[0]
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and "more than 10 1xx responses" in result.error


def test_a_host_is_looked_up_once_per_run_and_refused_for_every_feed(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    urls = [f"http://localhost:{feed_server.port}/f{i}.xml" for i in range(5)]
    results = fetch_all(
        [Feed(url=url, outlet="o") for url in urls], make_settings(allow_private_addresses=False)
    )
    assert [r.error for _, r in results] == [
        "localhost resolves to 127.0.0.1, which is a loopback address; "
        "set fetch.allow_private_addresses = true to allow it"
    ] * 5
    assert lookups.count("localhost") == 1
    assert feed_server.requests == []


def test_downloads_pause_while_results_wait_for_the_caller(feed_server: FeedServer) -> None:
    feeds = [Feed(url=feed_server.add(f"/f{i}.xml", "<rss/>"), outlet="o") for i in range(10)]
    settings = make_settings(max_concurrency=1, per_host_concurrency=1)

    async def take_one_then_wait() -> int:
        stream = fetch_many(feeds, settings)
        async for _ in stream:
            await asyncio.sleep(0.5)
            await stream.aclose()
        return len(feed_server.requests)

    # The one taken, and at most twice max_concurrency fetched ahead of the caller.
    assert asyncio.run(take_one_then_wait()) <= 3


# -- the batch writer -------------------------------------------------------------------------


def entry(guid: str, **fields: Any) -> Entry:
    values: dict[str, Any] = {
        "url": f"https://example.de/{guid}",
        "canonical_url": f"https://example.de/{guid}",
        "title": f"Meldung {guid}",
        "summary": "Text",
        "published": NOW - timedelta(hours=1),
        "content_hash": guid,
    }
    return Entry(guid=guid, **(values | fields))


class Collected:
    """What a BatchWriter reports, batch by batch, and a way to wait for it."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, SaveResult | Exception]]] = []
        self.arrived = threading.Condition()

    def __call__(self, batch: list[tuple[str, SaveResult | Exception]]) -> None:
        with self.arrived:
            self.batches.append(batch)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> dict[str, SaveResult | Exception]:
        with self.arrived:
            self.arrived.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout)
            return {token: outcome for batch in self.batches for token, outcome in batch}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'batch.db'}")


def add(store: Store, n: int) -> Feed:
    feed, _ = store.add_feed(
        f"https://example{n}.de/rss", Outlet(f"o{n}"), source="cli", interval_seconds=60, now=NOW
    )
    return feed


def lingering_writer(store: Store) -> tuple[BatchWriter[str], Collected, list[object]]:
    """A writer whose batches wait 0.6 s for company, what it reports, and the store's commits."""
    commits: list[object] = []
    event.listen(store.engine, "commit", commits.append)
    collected = Collected()
    return BatchWriter(store, collected, linger=0.6), collected, commits


def test_state_only_results_share_a_transaction_and_documents_do_not_wait(store: Store) -> None:
    feeds = [add(store, n) for n in range(5)]
    writer, collected, commits = lingering_writer(store)
    try:
        for feed in feeds[:4]:
            writer.submit(Fetched(replace(feed, last_status="not_modified"), [], NOW), feed.url)
        assert len(collected.wait_for(4, timeout=5)) == 4
        assert len(commits) == 1 and len(collected.batches) == 1
        started = datetime.now(UTC)
        writer.submit(Fetched(feeds[4], [entry("a")], NOW), feeds[4].url, urgent=True)
        assert collected.wait_for(5, timeout=5)[feeds[4].url] == SaveResult(1, 0)
        assert datetime.now(UTC) - started < timedelta(seconds=0.4)
    finally:
        writer.close()
    assert {f.last_status for f in store.feeds()[:4]} == {"not_modified"}


def test_documents_nobody_waits_for_share_a_transaction(store: Store) -> None:
    """Each commit writes every index page its entries touched: fewer, larger ones cost less."""
    feeds = [add(store, n) for n in range(3)]
    writer, collected, commits = lingering_writer(store)
    try:
        for n, feed in enumerate(feeds):
            writer.submit(Fetched(feed, [entry(f"e{n}")], NOW), feed.url)
            time.sleep(0.05)  # the writer is free meanwhile
        outcomes = collected.wait_for(3, timeout=5)
    finally:
        writer.close()
    assert list(outcomes.values()) == [SaveResult(1, 0)] * 3
    assert len(commits) == 1


def test_a_result_that_cannot_be_stored_costs_only_itself(store: Store) -> None:
    good, bad, other = (add(store, n) for n in range(3))
    naive = entry("late", published=datetime(2026, 11, 25, 5, 0))
    collected = Collected()
    writer = BatchWriter(store, collected, linger=0.5)
    writer.submit(Fetched(good, [entry("g")], NOW), "good")
    writer.submit(Fetched(replace(bad, etag='"v2"'), [entry("b"), naive], NOW), "bad")
    writer.submit(Fetched(other, [entry("o")], NOW), "other")
    writer.close()
    outcomes = collected.wait_for(3, timeout=0)
    assert outcomes["good"] == outcomes["other"] == SaveResult(1, 0)
    assert "naive datetime" in str(outcomes["bad"])
    assert sorted(e.guid for e in store.unclustered()) == ["g", "o"]
    assert {f.url: f.etag for f in store.feeds()}[bad.url] is None


class FailingStore(Store):
    """A database that refuses one feed's results, as a full disk or a bug would."""

    refused = ""

    def save_fetches(self, batch: Any) -> list[SaveResult]:
        if any(item.feed.url == self.refused for item in batch):
            raise RuntimeError("disk full")
        return super().save_fetches(batch)


def test_fetch_raises_when_a_result_cannot_be_stored(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    store = FailingStore(f"sqlite:///{tmp_path / 'failing.db'}")
    urls = [feed_server.add(f"/f{i}.xml", rss(i, 0, items=2)) for i in range(4)]
    for url in urls:
        store.add_feed(url, Outlet("o"), source="cli", interval_seconds=60, now=NOW)
    FailingStore.refused = urls[2]
    pipeline = Pipeline(Settings(fetch=make_settings()), store)
    with pytest.raises(RuntimeError, match="disk full"):
        asyncio.run(pipeline.fetch(all_feeds=True))
    stored = {e.guid for e in store.unclustered()}
    assert "q2-0" not in stored and {"q0-0", "q1-1", "q3-0"} <= stored


def test_results_that_fail_before_the_writer_end_the_run_with_the_error(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More such failures than a run has room for parsed documents: it raises, never stalls."""
    monkeypatch.setattr(pipeline_module, "STORE_AHEAD", 2)

    def broken(*args: object, **kwargs: object) -> Feed:
        raise RuntimeError("fetch policy bug")

    monkeypatch.setattr(pipeline_module, "apply_result", broken)
    store = Store(f"sqlite:///{tmp_path / 'broken.db'}")
    for i in range(5):
        url = feed_server.add(f"/b{i}.xml", rss(i, 0, items=1))
        store.add_feed(url, Outlet("o"), source="cli", interval_seconds=60, now=NOW)
    pipeline = Pipeline(Settings(fetch=make_settings()), store)

    async def run() -> None:
        await asyncio.wait_for(pipeline.fetch(all_feeds=True), timeout=30)

    with pytest.raises(RuntimeError, match="fetch policy bug"):
        asyncio.run(run())


class SlowStore(Store):
    """A database that takes its time over every transaction, as a busy disk would."""

    def save_fetches(self, batch: Any) -> list[SaveResult]:
        time.sleep(0.05)
        return super().save_fetches(batch)


def test_parsed_entries_wait_for_a_slow_writer_within_the_backlog_and_a_big_feed_alone(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing waits while `STORE_AHEAD` entries (not feeds) wait; a bigger feed goes alone."""
    monkeypatch.setattr(pipeline_module, "STORE_AHEAD", 12)
    held: list[tuple[int, int]] = []  # (entries waiting, the feed's share) after each take
    take = pipeline_module._Backlog.take

    async def recorded(backlog: Any, size: int) -> None:
        await take(backlog, size)
        held.append((backlog.held, size))

    monkeypatch.setattr(pipeline_module._Backlog, "take", recorded)
    store = SlowStore(f"sqlite:///{tmp_path / 'slow.db'}")
    urls = [feed_server.add(f"/s{i}.xml", rss(i, 0, items=5)) for i in range(10)]
    urls.append(feed_server.add("/big.xml", rss(99, 0, items=30)))
    for url in urls:
        store.add_feed(url, Outlet("o"), source="cli", interval_seconds=60, now=NOW)
    pipeline = Pipeline(Settings(fetch=make_settings(parse_workers=2)), store)

    async def run() -> None:
        await asyncio.wait_for(pipeline.fetch(all_feeds=True), timeout=30)

    asyncio.run(run())
    assert len(store.unclustered()) == 10 * 5 + 30
    assert sorted(size for _, size in held) == [5] * 10 + [30]
    assert all(waiting <= 12 or waiting == size for waiting, size in held)


def test_a_feed_whose_entries_the_database_refuses_fails_alone_and_the_run_goes_on(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """One feed's data must not stop the others, nor clustering and digests, run after run."""
    store = Store(f"sqlite:///{tmp_path / 'refusing.db'}")
    with store.engine.begin() as conn:  # the database itself refuses one entry
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.guid LIKE '%q2-0' "
            "BEGIN SELECT RAISE(ABORT, 'index row size exceeds maximum'); END"
        )
    urls = [feed_server.add(f"/f{i}.xml", rss(i, 0, items=2)) for i in range(4)]
    for url in urls:
        store.add_feed(url, Outlet("o"), source="cli", interval_seconds=60, now=NOW)
    pipeline = Pipeline(Settings(fetch=make_settings()), store)
    summary = asyncio.run(pipeline.fetch(all_feeds=True))
    assert (summary.ok, summary.failed) == (3, 1)
    state = {feed.url: feed for feed in store.feeds()}[urls[2]]
    assert state.last_status == "failed"
    assert state.last_error is not None
    assert state.last_error.startswith("cannot store its entries: ")
    assert state.last_error.endswith("index row size exceeds maximum")
    stored = {e.guid.rsplit("/", 1)[-1] for e in store.unclustered()}
    assert not {"q2-0", "q2-1"} & stored and {"q0-0", "q1-1", "q3-0"} <= stored
    assert pipeline.cluster() == len(stored)


# -- a kill between two commits ------------------------------------------------------------------

# Runs the fetch stage and kills itself (SIGKILL) right after the Nth feed was
# reported stored; prints each reported feed first.
KILLED_RUN = """
import asyncio, os, signal, sys
from aggregator import config
from aggregator.pipeline import Pipeline
from aggregator.store import Store

settings = config.load(sys.argv[1])
pipeline = Pipeline(settings, Store(settings.database_url))
pipeline.sync_config()
kill_after = int(sys.argv[2])
reported = []

def progress(feed, result):
    reported.append(feed.url)
    print(feed.url, flush=True)
    if len(reported) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)

summary = asyncio.run(pipeline.fetch(all_feeds=True, progress=progress))
print(summary.line(), flush=True)
"""
FEEDS, ITEMS = 12, 5


def rss(number: int, version: int, items: int = ITEMS) -> str:
    """Feed `number` at `version`: each version adds `items` new items."""
    base = datetime(2026, 11, 20, tzinfo=UTC)
    body = "".join(
        f"<item><title>Meldung {i} von Quelle {number}</title>"
        f"<link>https://quelle{number}.example/{i}</link>"
        f'<guid isPermaLink="false">q{number}-{i}</guid>'
        f"<pubDate>{format_datetime(base + timedelta(hours=i))}</pubDate></item>"
        for i in range((version + 1) * items)
    )
    return f'<rss version="2.0"><channel><title>Quelle {number}</title>{body}</channel></rss>'


def run_fetch(config: Path, kill_after: int = 0) -> tuple[int, list[str]]:
    process = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(config), str(kill_after)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    return process.returncode, process.stdout.splitlines()


def test_a_kill_between_commits_loses_no_reported_entry_and_a_rerun_stores_nothing_twice(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    paths = [f"/q{n}.xml" for n in range(FEEDS)]
    urls = [feed_server.add(path, rss(n, 0), etag='"v0"') for n, path in enumerate(paths)]
    database = tmp_path / "kill.db"
    config = write_config(
        tmp_path / "kill.toml",
        {
            "database": {"url": f"sqlite:///{database}"},
            "fetch": {"allow_private_addresses": True},
            "outlets": [{"name": f"quelle{n}", "feeds": [url]} for n, url in enumerate(urls)],
        },
    )
    assert run_fetch(config)[0] == 0
    # Half the feeds publish more (full answers); the others answer 304.
    changed = set(range(0, FEEDS, 2))
    for n in changed:
        feed_server.add(paths[n], rss(n, 1), etag='"v1"')

    code, reported = run_fetch(config, kill_after=1)
    assert code == -signal.SIGKILL and reported

    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        guids = {row[0] for row in db.execute("SELECT guid FROM entries")}
        etags = dict(db.execute("SELECT url, etag FROM feeds").fetchall())
    for url in reported:
        n = urls.index(url)
        if n in changed:
            assert etags[url] == '"v1"'
            assert {f"q{n}-{i}" for i in range(2 * ITEMS)} <= guids

    code, lines = run_fetch(config)
    assert code == 0, lines
    with sqlite3.connect(database) as db:
        rows = [row[0] for row in db.execute("SELECT guid FROM entries")]
        etags = dict(db.execute("SELECT url, etag FROM feeds").fetchall())
    versions = {n: 2 if n in changed else 1 for n in range(FEEDS)}
    expected = [f"q{n}-{i}" for n, count in versions.items() for i in range(count * ITEMS)]
    assert sorted(rows) == sorted(expected)
    assert all(etags[urls[n]] == ('"v1"' if n in changed else '"v0"') for n in range(FEEDS))


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_whose_first_chunk_is_one_byte_is_decoded(wbits: int) -> None:
    """Whether a deflate body has a zlib header shows in two bytes that may come apart."""
    body = b"<rss version='2.0'><channel><title>T</title></channel></rss>" * 5
    compressor = zlib.compressobj(wbits=wbits)
    encoded = compressor.compress(body) + compressor.flush()

    def answer(connection: socket.socket) -> None:
        read_request(connection)
        head, rest = encoded[:1], encoded[1:]
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"1\r\n"
            + head
            + b"\r\n"
            + b"%x\r\n" % len(rest)
            + rest
            + b"\r\n0\r\n\r\n"
        )

    [result] = fetch_from_raw_server(answer, 1)
    assert (result.status, result.error, result.content) == (FetchStatus.OK, None, body)


def test_once_stopped_no_further_feed_is_started_and_those_started_are_handed_out(
    port_servers: list[PortServer],
) -> None:
    server = port_servers[0]
    feeds = [Feed(url=server.url(f"/f{i}.xml"), outlet="o", etag='"v1"') for i in range(10)]
    settings = make_settings(max_concurrency=1, per_host_concurrency=1)

    async def run() -> list[FetchResult]:
        stop = asyncio.Event()
        results = []
        async for _, result in fetch_many(feeds, settings, stop=stop):
            results.append(result)
            stop.set()
        return results

    results = asyncio.run(run())
    # Two start ahead (twice max_concurrency) and a third as the first result is handed
    # out, before the caller could stop; none after that.
    assert [r.status for r in results] == [FetchStatus.NOT_MODIFIED] * 3
    assert len(server.ports) == 3
