"""HTTPS feeds against a real TLS server on 127.0.0.1 with a self-signed certificate.

The fetcher runs TLS on its own asyncio streams (`fetch.transport`), so these
check what httpx's stack did before: the certificate and host name are
verified, a refusal comes back as a one-line reason, and a kept-alive TLS
connection serves the next request.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aggregator.config import FetchSettings
from aggregator.fetch import fetch_feed, guard, transport
from aggregator.fetch.client import make_client
from aggregator.models import Feed, FetchResult, FetchStatus

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'


class TLSServer(ThreadingHTTPServer):
    """Serves RSS with ETag "v1" (304 when asked with it); records each request's client port."""

    daemon_threads = True

    def __init__(self, cert: Path, key: Path) -> None:
        self.ports: list[int] = []
        super().__init__(("127.0.0.1", 0), _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client refusing the certificate ends its handshake: expected here."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TLSServer

    def do_GET(self) -> None:
        self.server.ports.append(self.client_address[1])
        if self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(RSS)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        self.wfile.write(RSS)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def server(certificate: tuple[Path, Path]) -> Iterator[TLSServer]:
    tls = TLSServer(*certificate)
    yield tls
    tls.shutdown()
    tls.server_close()


def fetch_in_turn(feeds: list[Feed]) -> list[FetchResult]:
    """Fetch `feeds` one after the other with one client, as a run does per host."""
    settings = FetchSettings(allow_private_addresses=True, connect_timeout=2, read_timeout=2)

    async def run() -> list[FetchResult]:
        async with make_client(settings) as client:
            return [await fetch_feed(client, feed, settings) for feed in feeds]

    return asyncio.run(run())


def test_an_untrusted_certificate_is_refused_with_the_reason(server: TLSServer) -> None:
    [result] = fetch_in_turn([Feed(url=server.url("/feed.xml"), outlet="t")])
    assert result.status is FetchStatus.FAILED
    assert result.error == "TLS error: CERTIFICATE_VERIFY_FAILED"
    assert server.ports == []


def test_a_trusted_certificate_serves_the_feed_and_keeps_the_connection(
    server: TLSServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(transport, "tls_context", lambda: trusting)
    first = Feed(url=server.url("/feed.xml"), outlet="t")
    again = Feed(url=server.url("/feed.xml"), outlet="t", etag='"v1"')
    fresh, unchanged = fetch_in_turn([first, again])
    assert (fresh.status, fresh.content, fresh.etag) == (FetchStatus.OK, RSS, '"v1"')
    assert unchanged.status is FetchStatus.NOT_MODIFIED
    assert len(server.ports) == 2 and server.ports[0] == server.ports[1]


def test_a_certificate_for_another_name_is_refused(
    server: TLSServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    monkeypatch.setattr(transport, "tls_context", lambda: trusting)
    other_name = server.url("/feed.xml").replace("127.0.0.1", "localhost")
    [result] = fetch_in_turn([Feed(url=other_name, outlet="t")])
    assert result.status is FetchStatus.FAILED
    assert result.error == "TLS error: CERTIFICATE_VERIFY_FAILED"


@pytest.mark.parametrize("allow_private", [False, True], ids=["vetted", "unvetted"])
def test_an_international_host_is_looked_up_and_verified_as_its_host_header_names_it(
    server: TLSServer,
    certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    allow_private: bool,
) -> None:
    """straße.test is xn--strae-oqa.test (IDNA 2008), never strasse.test, another domain.

    Python's own idna codec (IDNA 2003) would look up, connect to and accept a
    certificate of strasse.test while the Host header names xn--strae-oqa.test.
    """
    looked_up: list[str] = []
    resolve = socket.getaddrinfo

    def dns(host: str | bytes | None, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        looked_up.append(name)
        known = {"xn--strae-oqa.test": "127.0.0.1"}
        return resolve(known.get(name, "nowhere.invalid"), *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    monkeypatch.setattr(guard, "non_public_kind", lambda address: None)  # 127.0.0.1 as public
    names: list[str | None] = []
    server.socket.context.sni_callback = lambda _socket, name, _context: names.append(name)
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    trusting.check_hostname = False  # the certificate names 127.0.0.1; the name sent is checked
    monkeypatch.setattr(transport, "tls_context", lambda: trusting)
    url = f"https://straße.test:{server.server_address[1]}/feed.xml"
    settings = FetchSettings(allow_private_addresses=allow_private, connect_timeout=2)

    async def run() -> FetchResult:
        async with make_client(settings) as client:
            return await fetch_feed(client, Feed(url=url, outlet="t"), settings)

    result = asyncio.run(run())
    assert (result.status, result.error) == (FetchStatus.OK, None)
    assert set(looked_up) == {"xn--strae-oqa.test"}
    assert names == ["xn--strae-oqa.test"]
