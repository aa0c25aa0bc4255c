"""Every document of two public feed corpora through fetch -> parse -> store, over loopback.

Run from the project root (the corpora live outside the repo):

    python bench/hostile_corpus.py [--data ../shared/data/feeds] [--bound 10]

Serves every file of feedparser-tests/ (feedparser's own test suite: well-formed,
ill-formed, odd encodings, entities, sanitizer, HTTP and compression cases) and
realworld/ (feeds saved from real sites) from a loopback HTTP server, fetches each
with `aggregator.fetch`, parses it with `aggregator.parse` and stores the result
in a temporary SQLite database, the way a run does. A file's HTTP behaviour
follows its `Header:` comment lines where feedparser's suite defines one
(status, Location, Content-Type, ETag, ...); otherwise the content type follows
the extension, and .gz/.z files are sent as gzip/deflate Content-Encoding.

Reports how many documents were stored (and how many of those the lxml fast
path of `aggregator.parse.fast` read, the rest going to feedparser), refused
(with reason counts), answered 304, crashed (an exception that is not a
per-feed failure: must be 0) and hung (fetch + parse + store over the
per-document bound: must be 0), and the time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from aggregator.config import FetchSettings
from aggregator.fetch import apply_result, fetch_feed
from aggregator.fetch.client import make_client
from aggregator.models import FetchStatus, Outlet
from aggregator.parse import ParseError, parse_feed
from aggregator.parse.feeds import parse_xml
from aggregator.parse.normalize import FeedContext
from aggregator.store import Store

CORPORA = ("feedparser-tests", "realworld")
SKIP = {"MANIFEST.tsv", "LICENSE-feedparser"}
TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
    ".json": "application/json",
}
ENCODINGS = {".gz": "gzip", ".z": "deflate"}
# feedparser's suite points redirects at its own test server.
SUITE_BASE = "http://localhost:8097/tests"
_HEADER = re.compile(rb"^Header:\s*([\w-]+):[ \t]*(.*?)\s*$", re.MULTILINE)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Tally:
    stored: int = 0
    fast_path: int = 0
    entries: int = 0
    not_modified: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")


def response_for(path: Path, base: str) -> Response:
    """How the suite's server would answer for `path`: its Header: lines, else by extension."""
    body = path.read_bytes()
    headers = {"Content-Type": TYPES.get(path.suffix.lower(), "application/octet-stream")}
    if path.suffix.lower() in ENCODINGS:
        headers = {"Content-Type": "application/xml", "Content-Encoding": ENCODINGS[path.suffix]}
    status = 200
    for name, value in _HEADER.findall(body[:2048]):
        key, text = name.decode().title(), value.decode("latin-1")
        if key == "Status":
            status = int(text)
        else:
            headers[key] = text.replace(SUITE_BASE, base).replace(
                "http://localhost:8097/-/return-304.xml", f"{base}/-/return-304.xml"
            )
    if status in (301, 302, 303, 304, 307, 308):
        body = b""
    return Response(status, headers, body)


def serve(routes: dict[str, Response]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle's algorithm each
        # keep-alive response would wait ~40 ms for a delayed ACK.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            route = routes.get(self.path, Response(404, {}, b"not found"))
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.status != 304:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = _QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The fetcher hanging up early (size cap, bad encoding) is expected here."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Hang(Exception):
    pass


def _alarm(_signum: int, _frame: FrameType | None) -> None:
    raise Hang


def reason_class(error: str) -> str:
    """Group similar reasons: numbers and quoted details removed."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", error)
    text = re.sub(r"line \d+: ", "", text)
    return re.sub(r"\d+", "N", text)[:90]


async def run(files: list[tuple[str, Path]], bound: float, store: Store, tally: Tally) -> None:
    settings = FetchSettings(allow_private_addresses=True, total_timeout=bound)
    routes: dict[str, Response] = {}
    server = serve(routes)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    routes["/-/return-304.xml"] = Response(304, {}, b"")
    for name, path in files:
        routes["/" + name] = response_for(path, base)
    signal.signal(signal.SIGALRM, _alarm)
    async with make_client(settings) as client:
        for name, _path in files:
            url = f"{base}/{name}"
            started = time.monotonic()
            try:
                await one(client, url, settings, store, tally, bound)
            except Hang:
                tally.hangs.append(name)
            except Exception:
                tally.crashes.append(f"{name}: {traceback.format_exc(limit=3)}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            took = time.monotonic() - started
            if took > tally.slowest[0]:
                tally.slowest = (took, name)
            if took > bound and name not in tally.hangs:
                tally.hangs.append(name)
    server.shutdown()


async def one(
    client: Any, url: str, settings: FetchSettings, store: Store, tally: Tally, bound: float
) -> None:
    now = datetime.now(UTC)
    feed, _ = store.add_feed(url, Outlet("corpus"), source="cli", interval_seconds=1800, now=now)
    result = await asyncio.wait_for(fetch_feed(client, feed, settings), bound)
    if result.error and result.error.startswith("unexpected"):
        raise RuntimeError(result.error)
    # The parse and store steps are synchronous: a timer signal interrupts a runaway one.
    signal.setitimer(signal.ITIMER_REAL, bound)
    parsed = None
    if result.status is FetchStatus.OK and result.content is not None:
        try:
            parsed = parse_feed(
                result.content,
                url=result.url,
                content_type=result.content_type,
                outlet="corpus",
                outlet_language=None,
                now=now,
            )
        except ParseError as exc:
            result.status, result.error = FetchStatus.FAILED, str(exc)
    state = apply_result(feed, result, now, settings, parsed=parsed)
    saved = store.save_fetch(state, parsed.entries if parsed else [], now)
    if result.status is FetchStatus.NOT_MODIFIED:
        tally.not_modified += 1
    elif parsed is not None:
        tally.stored += 1
        tally.entries += saved.new
        tally.fast_path += takes_fast_path(result.content or b"", result.content_type, url, now)
    else:
        tally.refused[reason_class(result.error or result.status.value)] += 1


def takes_fast_path(content: bytes, content_type: str | None, url: str, now: datetime) -> bool:
    """Whether the fast path reads this document (parse_feed used it if so)."""
    ctx = FeedContext(url=url, outlet="corpus", outlet_language=None, now=now)
    try:
        parse_xml(content, content_type, ctx, reader="fast")
    except ParseError:  # FastPathDeclined, or JSON
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/feeds"))
    parser.add_argument("--bound", type=float, default=10.0, help="seconds per document")
    parser.add_argument("--top", type=int, default=15, help="refusal reasons to list")
    args = parser.parse_args()
    files = [
        (str(path.relative_to(args.data)), path)
        for corpus in CORPORA
        for path in sorted((args.data / corpus).rglob("*"))
        if path.is_file() and path.name not in SKIP
    ]
    if not files:
        print(f"no corpus files under {args.data}", file=sys.stderr)
        return 2
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/corpus.db")
        started = time.monotonic()
        asyncio.run(run(files, args.bound, store, tally))
        elapsed = time.monotonic() - started
        integrity = store.engine.connect().exec_driver_sql("PRAGMA integrity_check").scalar()
        store.close()
    refused = sum(tally.refused.values())
    print(f"documents: {len(files)} ({', '.join(CORPORA)})")
    print(f"stored:    {tally.stored} ({tally.entries} entries)")
    print(f"  fast path: {tally.fast_path}, feedparser: {tally.stored - tally.fast_path}")
    print(f"304:       {tally.not_modified}")
    print(f"refused:   {refused}")
    for reason, count in tally.refused.most_common(args.top):
        print(f"  {count:5d}  {reason}")
    print(f"crashes:   {len(tally.crashes)}")
    for crash in tally.crashes:
        print("  " + crash.replace("\n", "\n  "))
    print(f"hangs:     {len(tally.hangs)} (bound {args.bound:g} s per document) {tally.hangs}")
    print(f"slowest:   {tally.slowest[0]:.2f} s ({tally.slowest[1]})")
    print(f"total:     {elapsed:.1f} s; SQLite integrity: {integrity}")
    return 1 if tally.crashes or tally.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
