"""A real HTTP server on 127.0.0.1 serving scripted routes, for tests of every stage.

Tests talk to it over a real socket, so the fetcher's timeouts, redirects,
compression and conditional GETs are exercised exactly as against a remote
site. It records every request and how many were in flight at once.

    server = FeedServer().start()
    url = server.add("/feed.xml", "<rss/>", etag='"v1"')
    server.redirect("/old", "/feed.xml", status=301)
    ...
    server.stop()
"""

from __future__ import annotations

import gzip as gzip_module
import sys
import threading
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

RSS = "application/rss+xml; charset=utf-8"


class Request(NamedTuple):
    method: str
    path: str
    # Case-insensitive: headers["user-agent"] and headers["User-Agent"] both work.
    headers: Message


@dataclass
class Route:
    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0
    trickle: float | None = None
    chunked: bool = False
    endless: bool = False

    def not_modified(self, request: Message) -> bool:
        """RFC 9110: If-None-Match decides when present, else If-Modified-Since."""
        if_none_match = request.get("If-None-Match")
        if if_none_match is not None:
            tags = {tag.strip() for tag in if_none_match.split(",")}
            return self.etag is not None and ("*" in tags or self.etag in tags)
        since = request.get("If-Modified-Since")
        if since is None or self.last_modified is None:
            return False
        try:
            return parsedate_to_datetime(self.last_modified) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False


class FeedServer:
    """Threaded loopback HTTP/1.1 server; routes are added while it runs."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        # A short poll interval keeps stop() (once per test) from costing half a second.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        content_type: str = RSS,
        headers: dict[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        delay: float = 0.0,
        trickle: float | None = None,
        gzip: bool = False,
        chunked: bool = False,
        endless: bool = False,
    ) -> str:
        """Serve `body` at `path` (exact path, query included if given); return its URL.

        `etag`/`last_modified` are sent and honoured with a 304; `delay` waits
        before the status line; `trickle` sends the body one byte per that many
        seconds; `gzip` compresses the body (Content-Encoding: gzip); `chunked`
        sends it with Transfer-Encoding: chunked and no Content-Length, as
        streaming servers do; `endless` repeats the body (chunked) until the client
        hangs up. `headers` are sent last and override the others.
        """
        data = body.encode("utf-8") if isinstance(body, str) else body
        sent = {"Content-Type": content_type}
        if gzip:
            data = gzip_module.compress(data, compresslevel=9)
            sent["Content-Encoding"] = "gzip"
        if etag is not None:
            sent["ETag"] = etag
        if last_modified is not None:
            sent["Last-Modified"] = last_modified
        sent.update(headers or {})
        route = Route(
            data, status, sent, etag, last_modified, delay, trickle, chunked or endless, endless
        )
        with self._lock:
            self._routes[path] = route
        return self.url(path)

    def redirect(self, path: str, target: str, status: int = 301) -> str:
        """Answer `path` with a redirect to `target` (sent as given, may be relative)."""
        return self.add(
            path, b"", status=status, content_type="text/plain", headers={"Location": target}
        )

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for request in self.requests if request.path == path)

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _route(self, path: str) -> Route | None:
        with self._lock:
            return self._routes.get(path) or self._routes.get(urlsplit(path).path)

    def _enter(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        route = self._route(handler.path)
        if route is None:
            handler.send_error(404)
            return
        if route.delay and self._closing.wait(route.delay):
            return
        if route.not_modified(handler.headers):
            handler.send_response(304)
            for name in ("ETag", "Last-Modified", "Cache-Control", "Expires"):
                if name in route.headers:
                    handler.send_header(name, route.headers[name])
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(route.status)
        for name, value in route.headers.items():
            handler.send_header(name, value)
        if route.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Content-Length", str(len(route.body)))
        handler.end_headers()
        size = 1 if route.trickle is not None else 16 * 1024
        while True:
            for start in range(0, len(route.body), size):
                if route.trickle is not None and self._closing.wait(route.trickle):
                    return
                piece = route.body[start : start + size]
                if route.chunked:
                    piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                handler.wfile.write(piece)
                handler.wfile.flush()
            if not route.endless or self._closing.is_set():
                break
        if route.chunked:
            handler.wfile.write(b"0\r\n\r\n")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, size caps) are expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server._enter(Request(self.command, self.path, self.headers))
            try:
                server._serve(self)
            except ConnectionError:
                # The client gave up (timeout, size cap): exactly what some tests provoke.
                self.close_connection = True
            finally:
                server._leave()

        def log_message(self, format: str, *args: object) -> None:
            """Silence the per-request log on stderr."""

    return Handler
