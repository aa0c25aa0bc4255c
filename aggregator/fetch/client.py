"""Downloading feeds: conditional GET, limits, redirects and size caps.

Every per-feed problem (a timeout, a 404, a refused redirect, an oversized or
endless response) comes back as a FAILED `FetchResult` with a short reason and
is never raised: one broken feed must not stop the others. What a result means
for the feed's schedule is decided in `policy`, not here.

Redirects are followed by hand rather than by httpx so that every hop passes
the SSRF guard, only http(s) targets are accepted, and a chain made only of
permanent redirects can move the stored feed URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import logging
import mimetypes
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stat import S_ISREG
from urllib.parse import urlsplit
from urllib.request import url2pathname

import brotli
import httpx

from aggregator.config import FetchSettings
from aggregator.fetch.guard import UnsafeURLError, check_url, host_to_vet, vet_host
from aggregator.fetch.transport import Connections, Response
from aggregator.models import Feed, FetchResult, FetchStatus

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
ACCEPT_ENCODING = "gzip, deflate, br"
_ACCEPT = ACCEPT.encode("ascii")
_ACCEPT_ENCODING = ACCEPT_ENCODING.encode("ascii")
_WEB_SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT_REDIRECTS = frozenset({301, 308})
_RETRY_STATUSES = frozenset({429, 503})
# Longer Retry-After values are clamped (policy caps them further); this only
# keeps absurd numbers from overflowing datetime arithmetic.
_MAX_RETRY_AFTER = timedelta(days=366)
# A response slower than this (seconds) marks its host as struggling.
SLOW_RESPONSE = 5.0
# Idle connections a run keeps for reuse, over all hosts: one per host for a
# few hundred hosts taken in turn, well inside the usual limit of 1,024 open
# files. A run with more hosts reconnects to those used least recently.
IDLE_CONNECTIONS = 256
# How long a host that answered 429/503 without a Retry-After is left alone.
HOST_PAUSE = timedelta(minutes=5)
# Unneeded bodies up to this size are read, in at most this many seconds, to keep
# their connection alive (see _drain).
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 1.0


class RequestSlots:
    """Limits on requests in flight: `total` at once, and `per_host` to any one host.

    A request first waits for its host's slot and only then for a global one,
    so feeds queued behind one busy host never hold global slots that other
    hosts could use. Slots are held for one hop at a time and never nested, so
    redirect chains crossing hosts cannot deadlock each other.

    Hosts that struggle get fewer, later requests for the rest of the run: after
    a response slower than `slow_after` seconds, or a 429/503, requests to that
    host go one at a time; after a 429/503 none is sent to it until its
    Retry-After (else HOST_PAUSE) has passed: they fail at once with that time
    as their own retry_after, so policy schedules those feeds later too.

    It also remembers for the run whether each host passed the SSRF guard (`vet`).
    """

    def __init__(self, total: int, per_host: int, *, slow_after: float = SLOW_RESPONSE) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_host = per_host
        self._slow_after = slow_after
        self._hosts: dict[str, _Host] = {}
        self._verdicts: dict[str, asyncio.Future[list[str]]] = {}

    @classmethod
    def from_settings(cls, settings: FetchSettings) -> RequestSlots:
        slow_after = min(SLOW_RESPONSE, settings.read_timeout / 2)
        return cls(settings.max_concurrency, settings.per_host_concurrency, slow_after=slow_after)

    @contextlib.asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        state = self._host(host)
        async with state.slot:
            if state.struggling:
                async with state.one_at_a_time, self._total:
                    yield
            else:
                async with self._total:
                    yield

    def paused(self, host: str) -> FetchResult | None:
        """A FAILED result for a request `host` asked not to receive yet, else None."""
        state = self._host(host)
        if state.paused_until is None or state.paused_until <= datetime.now(UTC):
            return None
        until = f"{state.paused_until:%Y-%m-%d %H:%M:%S} UTC"
        return FetchResult(
            url="",
            status=FetchStatus.FAILED,
            error=f"not sent: {host} answered {state.pause_reason}, asked to wait until {until}",
            retry_after=state.paused_until,
        )

    def report(self, host: str, outcome: FetchResult | _Redirect, elapsed: float) -> None:
        """Learn from one exchange with `host` how hard it may be asked."""
        state = self._host(host)
        if elapsed > self._slow_after:
            state.struggling = True
        if isinstance(outcome, FetchResult) and outcome.http_status in _RETRY_STATUSES:
            state.struggling = True
            now = datetime.now(UTC)
            state.paused_until = max(outcome.retry_after or now + HOST_PAUSE, now)
            state.pause_reason = f"HTTP {outcome.http_status}"

    async def vet(self, host: str) -> list[str]:
        """The SSRF guard's DNS check of `host`, done once per run and shared: its vetted addresses.

        getaddrinfo blocks, so it runs in a worker thread; asking once per run
        rather than per request saves a thread hop and a lookup per feed.
        Connections to `host` go to these addresses only (see `guard`). The
        verdict (refusal included) holds for this run only, so a host that
        moves is followed, and checked again, at the next run.
        """
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._verdicts[host] = asyncio.ensure_future(
                asyncio.to_thread(vet_host, host)
            )
            # Retrieved here too, so a refusal nobody awaits any more is not logged as lost.
            verdict.add_done_callback(lambda done: done.cancelled() or done.exception())
        return await asyncio.shield(verdict)

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(asyncio.Semaphore(self._per_host))
        return state


@dataclass
class _Host:
    """What one run knows about a host: its slots and whether it is struggling."""

    slot: asyncio.Semaphore
    one_at_a_time: asyncio.Lock = field(default_factory=asyncio.Lock)
    struggling: bool = False
    paused_until: datetime | None = None
    pause_reason: str = ""


def make_client(settings: FetchSettings) -> Connections:
    """The connections for `fetch_feed`: kept alive, `per_host_concurrency` per host at most.

    Headers and timeouts are set per request by `fetch_feed`, so any client
    works there. No proxy, .netrc or cookies (see `transport`): the SSRF guard
    vets the address this process connects to, which a proxy would change.
    """
    return Connections(
        per_origin=settings.per_host_concurrency,
        max_idle=max(IDLE_CONNECTIONS, settings.max_concurrency),
    )


async def fetch_feed(
    client: Connections,
    feed: Feed,
    settings: FetchSettings,
    *,
    slots: RequestSlots | None = None,
) -> FetchResult:
    """Fetch one feed (http(s) or file URL); problems come back as FAILED, never raised.

    `slots` shares concurrency limits between calls; without it the limits
    apply to this call's requests alone.
    """
    started = time.monotonic()
    try:
        if urlsplit(feed.url).scheme.lower() == "file":
            return await _fetch_file(feed, settings)
        return await _fetch_http(
            client, feed, settings, slots or RequestSlots.from_settings(settings)
        )
    except _FAILURES as exc:
        error = _describe(exc, settings)
    except Exception as exc:
        # A bug here must cost one feed, not the whole run; logged with its traceback.
        log.exception("unexpected error fetching %s", feed.url)
        error = f"unexpected {type(exc).__name__}: {exc}"
    return _failed(feed.url, error, time.monotonic() - started)


async def fetch_many(
    feeds: Iterable[Feed], settings: FetchSettings, *, stop: asyncio.Event | None = None
) -> AsyncGenerator[tuple[Feed, FetchResult], None]:
    """Fetch all `feeds` concurrently within the limits; yield each result as it completes.

    Yielding as results arrive lets the caller parse and store each feed
    while the others are still downloading. At most twice `max_concurrency`
    fetches are started ahead of the caller: the next feed starts only when
    the caller takes a result, so a caller slower than the network pauses the
    downloads instead of letting documents pile up in memory (and no task
    waits around for each of thousands of feeds). A result handed out is no
    longer referenced here. Closing the generator early cancels the fetches
    still running; once `stop` is set, no further feed is started and the
    generator ends with the results of those already started (a service
    shutting down finishes what is in flight). Feeds are taken host by host
    in turn (`in_host_turns`).
    """
    slots = RequestSlots.from_settings(settings)
    finished: asyncio.Queue[tuple[Feed, FetchResult]] = asyncio.Queue()
    running: set[asyncio.Task[None]] = set()
    waiting = in_host_turns(feeds)
    async with make_client(settings) as client:

        async def one(feed: Feed) -> None:
            # fetch_feed turns every problem into a result, so each task puts one here.
            finished.put_nowait((feed, await fetch_feed(client, feed, settings, slots=slots)))

        def start(feed: Feed | None) -> int:
            """Start fetching `feed`; how many fetches that started (none for None)."""
            if feed is None:
                return 0
            task = asyncio.create_task(one(feed))
            running.add(task)
            task.add_done_callback(running.discard)
            return 1

        # Results not yet handed out, counted rather than read off `running`:
        # a finished task leaves it only a step after its result was queued.
        owed = sum(start(feed) for feed in itertools.islice(waiting, 2 * settings.max_concurrency))
        try:
            while owed:
                done = await finished.get()
                stopping = stop is not None and stop.is_set()
                owed += start(None if stopping else next(waiting, None)) - 1
                yield done
        finally:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)


def in_host_turns(feeds: Iterable[Feed]) -> Iterator[Feed]:
    """The feeds one host at a time in turn: the first of each host, then the second, ...

    Only a window of feeds is started ahead, and a configuration or an OPML
    file lists an outlet's feeds together: taken in that order, the window
    would fill with one host's feeds, waiting for its few per-host slots while
    the other hosts' slots stay idle. Each host's feeds keep their order.
    """
    by_host: dict[str, deque[Feed]] = {}
    for feed in feeds:
        try:
            host = (urlsplit(feed.url).hostname or "").lower()
        except ValueError:  # fetch_feed reports the broken URL as this feed's failure
            host = ""
        by_host.setdefault(host, deque()).append(feed)
    turns = deque(by_host.values())
    while turns:
        feeds_of_host = turns.popleft()
        yield feeds_of_host.popleft()
        if feeds_of_host:
            turns.append(feeds_of_host)


class _Refused(Exception):
    """A per-feed failure whose message is already the one-line reason."""


# What a per-feed problem can raise; each becomes a FAILED result via _describe.
_FAILURES = (
    _Refused,
    UnsafeURLError,
    httpx.HTTPError,
    httpx.InvalidURL,
    OSError,
    zlib.error,
    brotli.error,
)


@dataclass(frozen=True)
class _Redirect:
    status: int
    target: str


def _failed(url: str, error: str, elapsed: float = 0.0) -> FetchResult:
    return FetchResult(url=url, status=FetchStatus.FAILED, error=error, elapsed_seconds=elapsed)


async def _fetch_http(
    client: Connections, feed: Feed, settings: FetchSettings, slots: RequestSlots
) -> FetchResult:
    """Follow the redirect chain by hand; `elapsed_seconds` excludes time queued for slots."""
    url = feed.url
    all_permanent = True
    elapsed = 0.0
    for _ in range(settings.max_redirects + 1):
        target = httpx.URL(url)
        host = target.host
        async with slots.hold(host):
            paused = slots.paused(host)
            if paused is not None:
                paused.url = url
                return paused
            started = time.monotonic()
            outcome = await _attempt(client, target, url, feed, settings, slots)
            took = time.monotonic() - started
        slots.report(host, outcome, took)
        elapsed += took
        if isinstance(outcome, _Redirect):
            all_permanent = all_permanent and outcome.status in _PERMANENT_REDIRECTS
            url = outcome.target
            continue
        outcome.elapsed_seconds = elapsed
        moved = all_permanent and url != feed.url
        if moved and outcome.status in (FetchStatus.OK, FetchStatus.NOT_MODIFIED):
            # Only a location proven to serve the feed replaces the stored URL.
            outcome.permanent_url = url
        return outcome
    return _failed(url, f"too many redirects (more than {settings.max_redirects})", elapsed)


async def _attempt(
    client: Connections,
    target: httpx.URL,
    url: str,
    feed: Feed,
    settings: FetchSettings,
    slots: RequestSlots,
) -> FetchResult | _Redirect:
    """One hop (`url`, parsed as `target`) within the wall-clock limit, failures as results."""
    try:
        async with asyncio.timeout(settings.total_timeout):
            return await _exchange(client, target, url, feed, settings, slots)
    except TimeoutError:
        return _failed(url, f"response took longer than {settings.total_timeout:g} s")
    except _FAILURES as exc:
        return _failed(url, _describe(exc, settings))


async def _exchange(
    client: Connections,
    target: httpx.URL,
    url: str,
    feed: Feed,
    settings: FetchSettings,
    slots: RequestSlots,
) -> FetchResult | _Redirect:
    """One request: a final result, or where a redirect points."""
    host = host_to_vet(url, allow_private=settings.allow_private_addresses)
    response = await client.send(
        target,
        _request_headers(feed, settings),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        addresses=None if host is None else await slots.vet(host),
        max_bytes=settings.max_bytes,
    )
    try:
        return await _outcome(response, url, settings)
    finally:
        await response.aclose()


async def _outcome(
    response: Response, url: str, settings: FetchSettings
) -> FetchResult | _Redirect:
    """What a response means: a final result (its body read if needed), or a redirect."""
    code = response.status_code
    if code in _REDIRECTS:
        target = _redirect(response)
        await _drain(response)
        return target
    headers = response.headers
    result = FetchResult(
        url=url,
        status=FetchStatus.FAILED,
        http_status=code,
        content_type=headers.get("content-type"),
    )
    if code == 410:
        result.status = FetchStatus.GONE
        result.error = "HTTP 410 Gone"
    elif code != 304 and not 200 <= code < 300:
        result.error = f"HTTP {code} {response.reason_phrase}".rstrip()
        if code in _RETRY_STATUSES:
            now = datetime.now(UTC)
            result.retry_after = parse_retry_after(headers.get("retry-after"), now)
    else:
        # Validators describe content, so only a 2xx or 304 carries meaningful ones.
        result.etag = headers.get("etag")
        result.last_modified = headers.get("last-modified")
        result.retry_after = fresh_until(headers, datetime.now(UTC))
        if code == 304:
            result.status = FetchStatus.NOT_MODIFIED
        else:
            result.content = await _read_capped(response, settings.max_bytes)
            result.bytes_read = len(result.content)
            result.status = FetchStatus.OK
    if result.content is None:
        await _drain(response)
    return result


async def _drain(response: Response) -> None:
    """Read to its end a body nobody needs (304, error page, redirect) if it is small.

    A connection is kept for the next request only once the whole response
    was received; leaving even an empty 304 body unread closes the connection,
    so every feed of a host would pay a new TCP (and TLS) handshake. Bodies that
    are not declared small, or do not arrive at once, are left: the connection closes.
    A 304 has no body by definition (its end is known without reading), so it
    needs no time limit of its own.
    """
    with contextlib.suppress(httpx.HTTPError, TimeoutError):
        if response.status_code == 304:
            async for _ in response.aiter_raw():
                pass
            return
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) <= _DRAIN_LIMIT:
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for _ in response.aiter_raw():
                    pass


def _redirect(response: Response) -> _Redirect:
    location = response.headers.get("location")
    if not location:
        raise _Refused(f"HTTP {response.status_code} redirect without a Location header")
    # The scheme is checked before httpx parses the target: it cannot parse
    # "javascript:alert(1)" or "data:..." and would only say so obscurely.
    scheme = urlsplit(location.strip()).scheme.lower() or response.url.scheme
    if scheme not in _WEB_SCHEMES:
        raise _Refused(f"redirect to a {scheme!r} URL refused (only http and https)")
    try:
        target = response.url.join(location)
    except httpx.InvalidURL as exc:
        raise _Refused(f"redirect to an invalid URL {location[:200]!r}: {exc}") from None
    return _Redirect(response.status_code, str(target))


async def _read_capped(response: Response, limit: int) -> bytes:
    """The decoded body, refused as soon as it grows past `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    decoder = _BoundedDecoder(response.headers.get("content-encoding", ""), limit)
    return b"".join([decoder.decode(chunk) async for chunk in response.aiter_raw()])


class _BoundedDecoder:
    """Undoes a Content-Encoding chunk by chunk without ever exceeding `limit` bytes.

    httpx would decode each network read in one go, and a few hundred bytes of
    brotli (or 64 KiB of gzip) expand to gigabytes before any size check could
    run. Here every decompression step gets an output budget of what is left
    under the cap, so a compression bomb stops at the cap. The raw bytes are
    capped too: data after the end of a compressed stream decodes to nothing
    but would otherwise pile up inside the decompressor.
    """

    def __init__(self, content_encoding: str, limit: int) -> None:
        self._limit = limit
        self._raw = 0
        self._total = 0
        coding = content_encoding.strip().lower()
        self._step: Callable[[bytes, int], bytes]
        if coding in ("", "identity"):
            self._step = lambda data, _budget: data
        elif coding in ("gzip", "x-gzip"):
            self._step = _Inflate(raw_fallback=False)
        elif coding == "deflate":
            self._step = _Inflate(raw_fallback=True)
        elif coding == "br":
            self._step = _Unbrotli()
        else:
            raise _Refused(f"unsupported Content-Encoding {content_encoding!r}")

    def decode(self, data: bytes) -> bytes:
        self._raw += len(data)
        # One byte over the remaining room is enough to know the cap is exceeded.
        output = self._step(data, self._limit - self._total + 1)
        self._total += len(output)
        if self._total > self._limit or self._raw > self._limit:
            raise _too_large(self._limit)
        return output


class _Inflate:
    """gzip or zlib-wrapped deflate; with `raw_fallback` also the bare deflate some servers send.

    Whether the body is bare deflate shows in its first two bytes (a zlib
    header, or not), which may come in separate pieces: until zlib has seen
    them, the bytes are kept to be decoded again as bare deflate.
    """

    def __init__(self, *, raw_fallback: bool) -> None:
        self._raw_fallback = raw_fallback
        self._head = b""
        # 32 + MAX_WBITS: detect a gzip or a zlib header automatically.
        self._inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)

    def __call__(self, data: bytes, budget: int) -> bytes:
        if not self._raw_fallback:
            return self._inflater.decompress(data, budget)
        self._head += data
        try:
            output = self._inflater.decompress(data, budget)
        except zlib.error:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            output = self._inflater.decompress(self._head, budget)
            self._raw_fallback = False
        if len(self._head) >= 2:  # the header was read: an error later is a broken body
            self._raw_fallback = False
            self._head = b""
        return output


class _Unbrotli:
    """brotli, with the output limit that brotli 1.2 added for exactly this purpose."""

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def __call__(self, data: bytes, budget: int) -> bytes:
        output = self._decompressor.process(data, output_buffer_limit=budget)
        # Output held back by the limit must be drained before more input is accepted.
        while len(output) < budget and not self._decompressor.can_accept_more_data():
            output += self._decompressor.process(b"", output_buffer_limit=budget - len(output))
        return bytes(output)


def _too_large(limit: int) -> _Refused:
    return _Refused(f"response larger than {_size(limit)}")


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """When a Retry-After header (seconds or an HTTP date) allows the next request."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + min(timedelta(seconds=int(value[:12])), _MAX_RETRY_AFTER)
    return _http_date(value)


def fresh_until(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Until when the response may be reused, by Cache-Control max-age or Expires.

    A polite poller does not ask again before then. None when the server gave
    no lifetime or forbade reuse (no-cache, no-store); an Expires date is read
    relative to the server's Date header, so a server clock that is off does
    not matter. Policy caps what comes back at max_interval.
    """
    directives = _cache_directives(headers.get("cache-control", ""))
    if "no-store" in directives or "no-cache" in directives:
        return None
    lifetime: timedelta | None = None
    max_age = directives.get("max-age", "")
    if max_age.isdigit():
        lifetime = timedelta(seconds=int(max_age[:12]))
    elif "expires" in headers:
        expires = _http_date(headers["expires"])
        if expires is None:
            return None  # RFC 9111: an invalid Expires, such as "0", means already expired
        lifetime = expires - (_http_date(headers.get("date", "")) or now)
    if lifetime is None:
        return None
    age = headers.get("age", "")
    if age.isdigit():
        lifetime -= timedelta(seconds=int(age[:12]))
    if lifetime <= timedelta(0):
        return None
    return now + min(lifetime, _MAX_RETRY_AFTER)


def _cache_directives(value: str) -> dict[str, str]:
    """Cache-Control as {directive: argument}: "max-age=60, no-cache" -> {...}."""
    directives = {}
    for part in value.split(","):
        name, _, argument = part.partition("=")
        if name.strip():
            directives[name.strip().lower()] = argument.strip().strip('"')
    return directives


def _http_date(value: str) -> datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _request_headers(feed: Feed, settings: FetchSettings) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"User-Agent", _header_value(settings.user_agent)),
        (b"Accept", _ACCEPT),
        # Exactly what _BoundedDecoder undoes: nothing else decodes the body.
        (b"Accept-Encoding", _ACCEPT_ENCODING),
        (b"Connection", b"keep-alive"),
    ]
    if feed.etag:
        headers.append((b"If-None-Match", _header_value(feed.etag)))
    if feed.last_modified:
        headers.append((b"If-Modified-Since", _header_value(feed.last_modified)))
    return headers


def _header_value(text: str) -> bytes:
    """ASCII as it is; anything else as UTF-8, the way such a value was most likely received."""
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        return text.encode("utf-8")


async def _fetch_file(feed: Feed, settings: FetchSettings) -> FetchResult:
    """A local file, as the bundled sample configuration lists them."""
    check_url(feed.url, allow_private=settings.allow_private_addresses)
    parts = urlsplit(feed.url)
    if parts.netloc not in ("", "localhost"):
        raise _Refused(f"file URL names a remote host {parts.netloc!r}")
    path = Path(url2pathname(parts.path))
    started = time.monotonic()
    result = await asyncio.to_thread(_read_file, feed, path, settings.max_bytes)
    result.elapsed_seconds = time.monotonic() - started
    return result


def _read_file(feed: Feed, path: Path, limit: int) -> FetchResult:
    """Read `path` unless it is unchanged since the last fetch.

    Its ETag is built from the mtime in nanoseconds and the size, so a rewrite
    within the same second as the last fetch is still noticed; Last-Modified
    (the mtime as an HTTP date) decides only when no ETag was stored.
    """
    stat = path.stat()
    if not S_ISREG(stat.st_mode):
        raise _Refused(f"{path} is not a regular file")
    result = FetchResult(
        url=feed.url,
        status=FetchStatus.OK,
        content_type=mimetypes.guess_type(path.name)[0],
        etag=f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"',
        last_modified=email.utils.formatdate(stat.st_mtime, usegmt=True),
    )
    if feed.etag == result.etag or (not feed.etag and feed.last_modified == result.last_modified):
        result.status = FetchStatus.NOT_MODIFIED
        return result
    with path.open("rb") as handle:
        content = handle.read(limit + 1)
    if len(content) > limit:
        raise _Refused(f"file larger than {_size(limit)}")
    result.content = content
    result.bytes_read = len(content)
    return result


def _describe(exc: BaseException, settings: FetchSettings) -> str:
    """A short, human reason for a failed fetch."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection timed out after {settings.connect_timeout:g} s"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {settings.read_timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return _connect_reason(exc)
    if isinstance(exc, zlib.error | brotli.error):
        return f"cannot decode the response: {exc}"
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read {exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _connect_reason(exc: httpx.ConnectError) -> str:
    """Dig the OS-level cause out of httpx's wrapping ("connection refused", ...)."""
    cause: BaseException | None = exc
    for _ in range(8):  # a bounded walk: cause chains can, rarely, loop
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, OSError) and cause.errno is not None and cause.strerror:
            return f"connection failed: {cause.strerror.lower()}"
        cause = cause.__cause__ or cause.__context__
    return f"connection failed: {exc}"


def _size(limit: int) -> str:
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= factor and limit % factor == 0:
            return f"{limit // factor} {unit}"
    return f"{limit} bytes"
