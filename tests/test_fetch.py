"""The fetcher against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import os
import socket
import time
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
from feedserver import FeedServer

from aggregator.config import USER_AGENT, FetchSettings
from aggregator.fetch import apply_result, fetch_feed, fetch_many
from aggregator.fetch.client import in_host_turns, make_client
from aggregator.models import Feed, FetchResult, FetchStatus

RSS = (
    '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Nachrichten</title>'
    "<item><title>Bundestag beschließt Haushalt</title><guid>1</guid></item></channel></rss>"
)
LAST_MODIFIED = "Tue, 25 Nov 2025 06:00:00 GMT"


def make_settings(**overrides: Any) -> FetchSettings:
    """Loopback allowed and short timeouts, so slow cases finish in about a second."""
    values: dict[str, Any] = {
        "allow_private_addresses": True,
        "connect_timeout": 1,
        "read_timeout": 1,
        "total_timeout": 2,
    }
    return FetchSettings(**{**values, **overrides})


def fetch(url_or_feed: str | Feed, settings: FetchSettings | None = None) -> FetchResult:
    feed = url_or_feed if isinstance(url_or_feed, Feed) else Feed(url=url_or_feed, outlet="test")
    settings = settings or make_settings()

    async def run() -> FetchResult:
        async with make_client(settings) as client:
            return await fetch_feed(client, feed, settings)

    return asyncio.run(run())


def fetch_all(feeds: list[Feed], settings: FetchSettings) -> list[tuple[Feed, FetchResult]]:
    async def run() -> list[tuple[Feed, FetchResult]]:
        return [pair async for pair in fetch_many(feeds, settings)]

    return asyncio.run(run())


# -- plain and conditional GET --------------------------------------------------


def test_ok_fills_content_and_metadata(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, etag='"v1"', last_modified=LAST_MODIFIED)
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")
    assert result.http_status == 200
    assert result.content_type == "application/rss+xml; charset=utf-8"
    assert (result.etag, result.last_modified) == ('"v1"', LAST_MODIFIED)
    assert result.bytes_read == len(RSS.encode("utf-8"))
    assert 0 < result.elapsed_seconds < 1
    assert result.url == url
    assert result.error is None and result.permanent_url is None


def test_sends_user_agent_and_accept(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS)
    fetch(url)
    headers = feed_server.requests[0].headers
    assert headers["User-Agent"] == USER_AGENT
    assert "aggregator" in headers["User-Agent"]
    assert "application/rss+xml" in headers["Accept"]
    assert "If-None-Match" not in headers and "If-Modified-Since" not in headers


def test_custom_user_agent(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS)
    fetch(url, make_settings(user_agent="aggregator-test/9"))
    assert feed_server.requests[0].headers["User-Agent"] == "aggregator-test/9"


def test_credentials_in_the_url_are_sent_as_basic_auth(feed_server: FeedServer) -> None:
    url = feed_server.add("/private.xml", RSS).replace("http://", "http://leser:geh%40eim@")
    assert fetch(url).status is FetchStatus.OK
    assert feed_server.requests[0].headers["Authorization"] == "Basic bGVzZXI6Z2VoQGVpbQ=="
    assert feed_server.requests[0].headers["Host"] == url.split("@")[1].split("/")[0]


def test_a_non_ascii_etag_is_sent_back(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, etag='"v1"')
    fetch(Feed(url=url, outlet="test", etag='"grüße"'))
    assert feed_server.requests[0].headers["If-None-Match"] == '"grüße"'.encode().decode("latin-1")


def test_etag_gives_not_modified_without_content(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, etag='"v1"')
    first = fetch(url)
    feed = apply_result(Feed(url=url, outlet="test"), first, datetime.now(UTC), make_settings())
    assert feed.etag == '"v1"'

    second = fetch(feed)
    assert second.status is FetchStatus.NOT_MODIFIED
    assert second.http_status == 304
    assert second.content is None and second.bytes_read == 0
    assert feed_server.requests[1].headers["If-None-Match"] == '"v1"'


def test_last_modified_gives_not_modified(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, last_modified=LAST_MODIFIED)
    result = fetch(Feed(url=url, outlet="test", last_modified=LAST_MODIFIED))
    assert result.status is FetchStatus.NOT_MODIFIED
    assert feed_server.requests[0].headers["If-Modified-Since"] == LAST_MODIFIED


def test_changed_etag_gives_full_content(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, etag='"v2"')
    result = fetch(Feed(url=url, outlet="test", etag='"v1"'))
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")
    assert result.etag == '"v2"'


# -- compression ----------------------------------------------------------------


def test_gzip_is_decoded(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, gzip=True)
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")
    assert "gzip" in feed_server.requests[0].headers["Accept-Encoding"]


def test_brotli_is_decoded(feed_server: FeedServer) -> None:
    body = brotli.compress(RSS.encode("utf-8"))
    url = feed_server.add("/feed.xml", body, headers={"Content-Encoding": "br"})
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")
    assert "br" in feed_server.requests[0].headers["Accept-Encoding"]


def test_oversized_body_fails(feed_server: FeedServer) -> None:
    url = feed_server.add("/big.xml", "x" * 5000)
    result = fetch(url, make_settings(max_bytes=1024))
    assert result.status is FetchStatus.FAILED
    assert result.error == "response larger than 1 KiB"
    assert result.content is None


def test_oversized_chunked_body_fails_while_streaming(feed_server: FeedServer) -> None:
    url = feed_server.add("/big.xml", "x" * 100_000, chunked=True)
    result = fetch(url, make_settings(max_bytes=64 * 1024))
    assert result.status is FetchStatus.FAILED
    assert result.error == "response larger than 64 KiB"


def test_chunked_body_is_read(feed_server: FeedServer) -> None:
    body = RSS * 100
    url = feed_server.add("/feed.xml", body, chunked=True, gzip=True)
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.content == body.encode("utf-8")


def test_gzip_bomb_stops_at_the_cap(feed_server: FeedServer) -> None:
    decoded_size = 20 * 1024 * 1024
    url = feed_server.add("/bomb.xml", b"\0" * decoded_size, gzip=True)
    assert len(gzip.compress(b"\0" * decoded_size)) < 64 * 1024  # a few KB on the wire
    started = time.monotonic()
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error == "response larger than 10 MiB"
    assert time.monotonic() - started < 5


def test_brotli_bomb_stops_at_the_cap(feed_server: FeedServer) -> None:
    body = brotli.compress(b"\0" * (64 * 1024 * 1024), quality=5)
    assert len(body) < 4096  # a few hundred bytes decode to 64 MiB
    url = feed_server.add("/bomb.xml", body, headers={"Content-Encoding": "br"})
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error == "response larger than 10 MiB"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
def test_deflate_is_decoded_with_or_without_zlib_wrapper(
    feed_server: FeedServer, wbits: int
) -> None:
    compressor = zlib.compressobj(wbits=wbits)
    body = compressor.compress(RSS.encode("utf-8")) + compressor.flush()
    url = feed_server.add("/feed.xml", body, headers={"Content-Encoding": "deflate"})
    result = fetch(url)
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")


def test_endless_data_after_a_gzip_stream_is_capped(feed_server: FeedServer) -> None:
    # Decodes to a few bytes; the junk behind the gzip trailer must still count.
    body = gzip.compress(RSS.encode("utf-8")) + b"junk" * 1024
    headers = {"Content-Encoding": "gzip"}
    url = feed_server.add("/feed.xml", body, headers=headers, chunked=True)
    result = fetch(url, make_settings(max_bytes=2048))
    assert result.status is FetchStatus.FAILED
    assert result.error == "response larger than 2 KiB"


def test_corrupt_gzip_fails(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, headers={"Content-Encoding": "gzip"})
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and result.error.startswith("cannot decode the response")


def test_unknown_content_encoding_fails(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS, headers={"Content-Encoding": "zstd"})
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error == "unsupported Content-Encoding 'zstd'"


# -- redirects -----------------------------------------------------------------


def test_permanent_redirect_moves_the_feed(feed_server: FeedServer) -> None:
    final = feed_server.add("/new.xml", RSS)
    feed_server.redirect("/old.xml", feed_server.url("/mid.xml"), status=301)
    feed_server.redirect("/mid.xml", "/new.xml", status=308)  # relative Location
    old = feed_server.url("/old.xml")
    result = fetch(old)
    assert result.status is FetchStatus.OK
    assert result.content == RSS.encode("utf-8")
    assert result.url == final
    assert result.permanent_url == final
    moved = apply_result(Feed(url=old, outlet="test"), result, datetime.now(UTC), make_settings())
    assert moved.url == final


@pytest.mark.parametrize("statuses", [(302,), (307,), (301, 302), (302, 301)])
def test_temporary_redirect_keeps_the_url(
    feed_server: FeedServer, statuses: tuple[int, ...]
) -> None:
    final = feed_server.add("/target.xml", RSS)
    hops = [f"/hop{index}" for index in range(len(statuses))] + ["/target.xml"]
    for (path, target), status in zip(itertools.pairwise(hops), statuses, strict=True):
        feed_server.redirect(path, target, status=status)
    result = fetch(feed_server.url("/hop0"))
    assert result.status is FetchStatus.OK
    assert result.url == final
    assert result.permanent_url is None


def test_permanent_redirect_to_a_failing_target_does_not_move(feed_server: FeedServer) -> None:
    feed_server.add("/broken.xml", "oops", status=500)
    feed_server.redirect("/old.xml", "/broken.xml", status=301)
    result = fetch(feed_server.url("/old.xml"))
    assert result.status is FetchStatus.FAILED
    assert result.permanent_url is None


def test_redirect_loop_fails(feed_server: FeedServer) -> None:
    feed_server.redirect("/a", "/b", status=302)
    feed_server.redirect("/b", "/a", status=302)
    result = fetch(feed_server.url("/a"), make_settings(max_redirects=3))
    assert result.status is FetchStatus.FAILED
    assert result.error == "too many redirects (more than 3)"
    assert feed_server.hits("/a") + feed_server.hits("/b") == 4


@pytest.mark.parametrize(
    ("target", "scheme"), [("ftp://example.org/feed", "ftp"), ("file:///etc/passwd", "file")]
)
def test_redirect_to_other_schemes_is_refused(
    feed_server: FeedServer, target: str, scheme: str
) -> None:
    url = feed_server.redirect("/feed.xml", target, status=301)
    result = fetch(url)  # file: is refused even with private addresses allowed
    assert result.status is FetchStatus.FAILED
    assert result.error == f"redirect to a '{scheme}' URL refused (only http and https)"


def test_redirect_without_location_fails(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", "", status=302)
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error == "HTTP 302 redirect without a Location header"


# -- error statuses ---------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [(404, "HTTP 404 Not Found"), (500, "HTTP 500")])
def test_error_status_fails(feed_server: FeedServer, status: int, error: str) -> None:
    url = feed_server.add("/feed.xml", "nope", status=status, content_type="text/html")
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and result.error.startswith(error)
    assert result.http_status == status
    assert result.content_type == "text/html"
    assert result.content is None and result.retry_after is None


def test_gone(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", "", status=410)
    result = fetch(url)
    assert result.status is FetchStatus.GONE
    assert result.http_status == 410


def test_429_retry_after_seconds(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", "", status=429, headers={"Retry-After": "120"})
    before = datetime.now(UTC)
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and result.error.startswith("HTTP 429")
    assert result.retry_after is not None
    expected = before + timedelta(seconds=120)
    assert expected <= result.retry_after <= expected + timedelta(seconds=5)


def test_503_retry_after_http_date(feed_server: FeedServer) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers = {"Retry-After": format_datetime(when, usegmt=True)}
    url = feed_server.add("/feed.xml", "", status=503, headers=headers)
    result = fetch(url)
    assert result.status is FetchStatus.FAILED
    assert result.retry_after == when


def test_unparseable_retry_after_is_ignored(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", "", status=429, headers={"Retry-After": "soon"})
    assert fetch(url).retry_after is None


# -- timeouts, connection errors, SSRF -------------------------------------------


def test_slow_server_hits_read_timeout(feed_server: FeedServer) -> None:
    url = feed_server.add("/slow.xml", RSS, delay=5)
    started = time.monotonic()
    result = fetch(url, make_settings(read_timeout=0.5))
    assert result.status is FetchStatus.FAILED
    assert result.error == "timed out after 0.5 s"
    assert time.monotonic() - started < 2


def test_trickling_server_hits_total_timeout(feed_server: FeedServer) -> None:
    # Each byte arrives well within the read timeout; only the wall-clock limit stops it.
    url = feed_server.add("/trickle.xml", RSS, trickle=0.05)
    started = time.monotonic()
    result = fetch(url, make_settings(read_timeout=1, total_timeout=0.8))
    assert result.status is FetchStatus.FAILED
    assert result.error == "response took longer than 0.8 s"
    assert time.monotonic() - started < 2


def test_unreachable_port_is_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = fetch(f"http://127.0.0.1:{port}/feed.xml")
    assert result.status is FetchStatus.FAILED
    assert result.error == "connection refused"


def test_ssrf_guard_refuses_loopback(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS)
    result = fetch(url, make_settings(allow_private_addresses=False))
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and "127.0.0.1 is a loopback address" in result.error
    assert feed_server.hits("/feed.xml") == 0


def test_connection_goes_to_the_vetted_addresses_not_a_new_lookup(
    feed_server: FeedServer,
) -> None:
    """The guard's addresses are the ones used: this name resolves nowhere, yet it is served."""
    feed_server.add("/feed.xml", RSS)

    async def run() -> tuple[int, bytes]:
        async with make_client(make_settings()) as client:
            url = httpx.URL(f"http://feeds.invalid:{feed_server.port}/feed.xml")
            response = await client.send(
                url, [], connect_timeout=1, read_timeout=1, addresses=["127.0.0.1"]
            )
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            return response.status_code, body

    status, body = asyncio.run(run())
    assert (status, body) == (200, RSS.encode())
    assert feed_server.requests[-1].headers["Host"] == f"feeds.invalid:{feed_server.port}"


def test_dns_rebinding_to_loopback_after_the_check_is_not_followed(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that is public when vetted and loopback a moment later (DNS cannot run here)."""
    feed_server.add("/feed.xml", RSS)
    answers = iter(["93.184.215.14"])  # public when the guard asks; 127.0.0.1 afterwards
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "feeds.rebind.example":
            host = next(answers, "127.0.0.1")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://feeds.rebind.example:{feed_server.port}/feed.xml"
    result = fetch(url, make_settings(allow_private_addresses=False))
    assert result.status is FetchStatus.FAILED  # 93.184.215.14 is out of reach here
    assert feed_server.hits("/feed.xml") == 0


def test_non_http_scheme_fails_without_request() -> None:
    result = fetch("ftp://example.org/feed.xml")
    assert result.status is FetchStatus.FAILED
    assert result.error == "scheme 'ftp' is not allowed (only http and https)"


# -- file URLs ---------------------------------------------------------------------


def test_file_url_and_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(RSS, encoding="utf-8")
    settings = make_settings()
    feed = Feed(url=path.as_uri(), outlet="local")
    first = fetch(feed, settings)
    assert first.status is FetchStatus.OK
    assert first.content == RSS.encode("utf-8")
    assert first.content_type == "application/xml"
    assert first.last_modified is not None and first.last_modified.endswith("GMT")

    feed = apply_result(feed, first, datetime.now(UTC), settings)
    assert fetch(feed, settings).status is FetchStatus.NOT_MODIFIED

    path.write_text(RSS.replace("Haushalt", "Etat"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = fetch(feed, settings)
    assert changed.status is FetchStatus.OK
    assert changed.content is not None and b"Etat" in changed.content


def test_file_url_needs_private_addresses(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(RSS, encoding="utf-8")
    result = fetch(path.as_uri(), make_settings(allow_private_addresses=False))
    assert result.status is FetchStatus.FAILED
    assert result.error is not None and "file URLs read local files" in result.error


def test_missing_file(tmp_path: Path) -> None:
    result = fetch((tmp_path / "nope.xml").as_uri())
    assert result.status is FetchStatus.FAILED
    assert result.error == f"no such file: {tmp_path / 'nope.xml'}"


def test_file_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"x" * 2048)
    result = fetch(path.as_uri(), make_settings(max_bytes=1024))
    assert result.status is FetchStatus.FAILED
    assert result.error == "file larger than 1 KiB"


# -- many feeds ----------------------------------------------------------------------


def test_per_host_concurrency_is_bounded(feed_server: FeedServer) -> None:
    feeds = [Feed(url=feed_server.add(f"/f{i}.xml", RSS, delay=0.2), outlet="o") for i in range(6)]
    results = fetch_all(feeds, make_settings(per_host_concurrency=2, max_concurrency=20))
    assert [r.status for _, r in results] == [FetchStatus.OK] * 6
    assert feed_server.max_in_flight == 2


def test_global_concurrency_is_bounded(feed_server: FeedServer) -> None:
    feeds = [Feed(url=feed_server.add(f"/f{i}.xml", RSS, delay=0.2), outlet="o") for i in range(7)]
    results = fetch_all(feeds, make_settings(per_host_concurrency=10, max_concurrency=3))
    assert len(results) == 7
    assert feed_server.max_in_flight == 3


def test_fetch_many_yields_as_completed_and_survives_broken_feeds(
    feed_server: FeedServer,
) -> None:
    slow = Feed(url=feed_server.add("/slow.xml", RSS, delay=0.5), outlet="a")
    fast = Feed(url=feed_server.add("/fast.xml", RSS), outlet="b")
    missing = Feed(url=feed_server.url("/missing.xml"), outlet="c")
    bad = Feed(url="gopher://example.org/", outlet="d")
    results = fetch_all([slow, missing, bad, fast], make_settings())
    assert results[-1][0] is slow
    by_url = {feed.url: result for feed, result in results}
    assert by_url[fast.url].status is FetchStatus.OK
    assert by_url[slow.url].status is FetchStatus.OK
    assert by_url[missing.url].error == "HTTP 404 Not Found"
    assert by_url[bad.url].status is FetchStatus.FAILED


def test_closing_fetch_many_early_cancels_the_rest(feed_server: FeedServer) -> None:
    fast = Feed(url=feed_server.add("/fast.xml", RSS), outlet="a")
    slow = [Feed(url=feed_server.add(f"/s{i}.xml", RSS, delay=3), outlet="b") for i in range(3)]

    settings = make_settings(read_timeout=5, total_timeout=5, per_host_concurrency=10)

    async def first_only() -> Feed:
        stream = fetch_many([*slow, fast], settings)
        async for feed, _ in stream:
            await stream.aclose()
            return feed
        raise AssertionError("nothing yielded")

    started = time.monotonic()
    assert asyncio.run(first_only()) is fast
    assert time.monotonic() - started < 2


def test_fetch_many_does_not_change_the_feeds(feed_server: FeedServer) -> None:
    feed = Feed(url=feed_server.add("/feed.xml", RSS, etag='"v1"'), outlet="o")
    snapshot = replace(feed)
    [(returned, result)] = fetch_all([feed], make_settings())
    assert returned is feed and feed == snapshot
    assert result.etag == '"v1"'


def test_feeds_are_fetched_host_by_host_in_turn() -> None:
    """A config lists an outlet's feeds together; the fetch window must not fill with one host."""
    urls = [
        "https://a.example/1",
        "https://a.example/2",
        "https://A.example/3",
        "https://b.example/1",
        "https://b.example/2",
        "http://c.example:8080/1",
    ]
    order = [feed.url for feed in in_host_turns(Feed(url=url, outlet="o") for url in urls)]
    assert order == [
        "https://a.example/1",
        "https://b.example/1",
        "http://c.example:8080/1",
        "https://a.example/2",
        "https://b.example/2",
        "https://A.example/3",
    ]


def test_a_feed_url_without_a_valid_host_fails_alone(feed_server: FeedServer) -> None:
    url = feed_server.add("/feed.xml", RSS)
    feeds = [Feed(url="http://[::1/feed.xml", outlet="o"), Feed(url=url, outlet="o")]
    results = dict((feed.url, result) for feed, result in fetch_all(feeds, make_settings()))
    assert results[url].status is FetchStatus.OK
    assert results["http://[::1/feed.xml"].status is FetchStatus.FAILED


def test_a_host_listed_first_does_not_hold_the_others_back(feed_server: FeedServer) -> None:
    """Slow 127.0.0.1 feeds listed first, then a feed of "localhost" (another host name)."""
    for number in range(4):
        feed_server.add(f"/slow{number}.xml", RSS, delay=0.3)
    feed_server.add("/quick.xml", RSS)
    feeds = [Feed(url=feed_server.url(f"/slow{number}.xml"), outlet="o") for number in range(4)]
    feeds.append(Feed(url=f"http://localhost:{feed_server.port}/quick.xml", outlet="o"))
    settings = make_settings(max_concurrency=1, per_host_concurrency=1, total_timeout=10)
    results = fetch_all(feeds, settings)
    first_done = results[0][0].url
    assert first_done.endswith("/quick.xml") or results[1][0].url.endswith("/quick.xml")


def test_an_unreachable_first_address_costs_a_quarter_second_not_the_timeout(
    feed_server: FeedServer,
) -> None:
    """Vetted addresses are raced 250 ms apart (RFC 8305), as asyncio races a name's.

    127.0.0.2 is a listener whose accept queue is full, so it drops our SYN
    and never answers (Linux), like a broken IPv6 route.
    """
    feed_server.add("/feed.xml", RSS)
    port = feed_server.port
    full = socket.socket()
    full.bind(("127.0.0.2", port))
    full.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.2", port))
    time.sleep(0.2)

    async def fetch_through(addresses: list[str], connect_timeout: float) -> int:
        async with make_client(make_settings()) as client:
            url = httpx.URL(f"http://feeds.invalid:{port}/feed.xml")
            response = await client.send(
                url, [], connect_timeout=connect_timeout, read_timeout=1, addresses=addresses
            )
            await response.aclose()
            return response.status_code

    try:
        started = time.monotonic()
        assert asyncio.run(fetch_through(["127.0.0.2", "127.0.0.1"], 5)) == 200
        took = time.monotonic() - started
        with pytest.raises(httpx.ConnectTimeout):
            asyncio.run(fetch_through(["127.0.0.2"], 0.5))
    finally:
        for sock in (full, *fillers):
            sock.close()
    assert 0.2 <= took < 1.5
