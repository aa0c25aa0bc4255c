"""HTTP/1.1 for the fetcher: h11 on plain asyncio, connections kept alive per origin.

A 304 cycle over thousands of feeds is almost nothing but request overhead,
and the event loop is CPU-bound in it. Measured on 2,000 conditional GETs
answered 304 from 10 loopback hosts (40 at a time, 4 per host), CPU per request:

- httpx.AsyncClient over one small httpcore pool per origin: 0.75-0.85 ms;
- httpcore's AsyncConnectionPool per origin, driven directly: 0.52-0.58 ms
  (the pool scans its connections on every request queued or released, and
  asks each idle connection's socket whether it was closed);
- the same on an asyncio network backend like this module's: 0.39-0.44 ms
  (anyio's backend enters a cancel scope for every read and write, and
  answers "is this idle socket readable?" by building a dict of socket
  attributes, several system calls, each time);
- httpcore's AsyncHTTP11Connection on that backend, pooled by hand: 0.23-0.27 ms
  (its anyio locks yield to the event loop twice per request, and every step
  is traced);
- h11 driven here, as below: 0.13-0.15 ms.

h11 is the HTTP/1.1 state machine inside httpcore (and so inside httpx): it
parses and validates the response, decides the body's framing (length,
chunked, until close) and whether the connection may carry another request.
This module only moves bytes between it and the socket, and pools
connections. Pooling is simple here because the fetcher's `RequestSlots`
already bound requests per host and in total, so a pool never queues: a
request takes an idle connection of its origin (scheme, host, port) or opens
one. Idle connections are kept for `KEEPALIVE_SECONDS`, at most `per_origin`
per origin and `max_idle` in all (the least recently used origin's oldest
goes first), so open sockets stay bounded as with httpx's pool limits.

There are no proxies and no .netrc here (httpx's trust_env=False before): the
SSRF guard vets the address this process connects to, which a proxy would
change, and credentials must not go to arbitrary feed hosts. No cookies are
kept between requests either. Errors are httpx's exception types, so callers
see the vocabulary they saw with httpx.AsyncClient.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import select
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

import h11
import httpx

Origin = tuple[bytes, bytes, int]

# How long an idle connection is kept open for the next request (httpx's default).
KEEPALIVE_SECONDS = 5.0
# Largest status line plus headers accepted (httpcore's limit; h11's default is 16 KiB).
MAX_HEAD = 100 * 1024
# Bytes handed to h11 at most per read.
_READ_SIZE = 64 * 1024
# Received bytes waiting to be read, above which the socket is not read further.
_READ_BUFFER = 256 * 1024
# Seconds before the next of a host's addresses is tried in parallel (RFC 8305).
_HAPPY_EYEBALLS = 0.25
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_NO_RESPONSE = "Server disconnected without sending a response."
# 1xx responses skipped before the real one at most (100 Continue, 103 Early Hints):
# an endless stream of them would otherwise keep a core busy until the time limit.
_MAX_INFORMATIONAL = 10


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate store, loaded once per process: loading it costs tens of milliseconds."""
    context = httpx.create_ssl_context(trust_env=False)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Connections:
    """HTTP/1.1 connections to many origins, idle ones kept alive for reuse.

    Concurrency is not limited here (see `RequestSlots` in `client`); what is
    limited is what stays open between requests.
    """

    def __init__(
        self, *, per_origin: int, max_idle: int, keepalive: float = KEEPALIVE_SECONDS
    ) -> None:
        self._per_origin = per_origin
        self._max_idle = max_idle
        self._keepalive = keepalive
        # Idle connections per origin, least recently used origin first, oldest
        # connection first; origins without idle connections are left out.
        self._idle: OrderedDict[Origin, list[_Connection]] = OrderedDict()
        self._idle_count = 0
        self._closed = False

    async def __aenter__(self) -> Connections:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    async def send(
        self,
        url: httpx.URL,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        connect_timeout: float,
        read_timeout: float,
        addresses: Sequence[str] | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """GET `url`; the response's status and headers are read, its body is not.

        `headers` are sent after Host, as given. A new connection goes to
        `addresses` (those the SSRF guard vetted for the host) if given, else
        to whatever the host name resolves to now. The caller must `aclose`
        the response; only a body read to its end lets the connection be reused.
        `max_bytes` caps what the server may send for this response, framing
        included (see `_Connection.request`).
        """
        scheme = url.raw_scheme
        port = url.port or _DEFAULT_PORTS.get(scheme)
        if port is None:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (scheme, url.raw_host, port)
        sent = [(b"Host", url.netloc), *headers]
        if url.userinfo:
            # Credentials in the feed URL, sent as httpx.AsyncClient would send them.
            sent.append(_basic_auth(url))
        put_back = functools.partial(self._put_back, origin)
        request = (url.raw_path, sent, read_timeout, max_bytes)
        connection = self._idle_connection(origin)
        if connection is not None:
            response = await _answer_if_still_open(connection, *request)
            if response is not None:
                return Response(url, response, connection, put_back)
        host = url.raw_host.decode("ascii")  # IDNA 2008, as in the Host header
        connection = await _Connection.open(host, addresses, origin, connect_timeout)
        return Response(url, await _answer(connection, *request), connection, put_back)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        """An idle connection to `origin` that is still fresh and open, if there is one."""
        pool = self._idle.get(origin)
        while pool:
            connection = pool.pop()
            self._idle_count -= 1
            if not pool:
                del self._idle[origin]
            if connection.reusable(time.monotonic() - self._keepalive):
                return connection
            connection.close()
        return None

    def _put_back(self, origin: Origin, connection: _Connection) -> None:
        """Keep a connection whose exchange ended cleanly, within the bounds on idle ones.

        The bound is on connections, not origins: a run takes feeds host by
        host in turn, so a host's connection must outlast one turn over every
        other host to be used again.
        """
        if self._closed:
            connection.close()
            return
        pool = self._idle.get(origin)
        if pool is None:
            pool = self._idle[origin] = []
        else:
            self._idle.move_to_end(origin)
        pool.append(connection)
        self._idle_count += 1
        surplus = pool[: -self._per_origin] if len(pool) > self._per_origin else []
        del pool[: len(surplus)]
        self._idle_count -= len(surplus)
        while self._idle_count > self._max_idle:
            oldest_origin, oldest_pool = next(iter(self._idle.items()))
            surplus.append(oldest_pool.pop(0))
            self._idle_count -= 1
            if not oldest_pool:
                del self._idle[oldest_origin]
        for stale in surplus:
            stale.close()


async def _answer(
    connection: _Connection,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    timeout: float,
    max_bytes: int | None,
) -> h11.Response:
    """The response to a GET on `connection`, which is closed if that fails."""
    try:
        return await connection.request(target, headers, timeout, max_bytes)
    except BaseException:
        connection.close()
        raise


async def _answer_if_still_open(
    connection: _Connection,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    timeout: float,
    max_bytes: int | None,
) -> h11.Response | None:
    """`_answer` on a kept-alive connection; None if the server closed it as the request went out.

    Its idle timeout ran out just then: it hung up without a byte, or answered
    408 Request Timeout. A GET is safe to send again, once, on a new
    connection, as browsers and urllib3 do.
    """
    try:
        response = await connection.request(target, headers, timeout, max_bytes)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
        connection.close()
        if connection.unanswered():
            return None
        raise
    except BaseException:
        connection.close()
        raise
    if response.status_code == 408:
        connection.close()
        return None
    return response


class Response:
    """A response whose body has not been read yet; `aclose` hands its connection back.

    `headers` maps lower-case names to values, repeated headers joined by ", "
    as httpx does; values are decoded as UTF-8, else Latin-1.
    """

    def __init__(
        self,
        url: httpx.URL,
        head: h11.Response,
        connection: _Connection,
        put_back: functools.partial[None],
    ) -> None:
        self.url = url
        self.status_code = head.status_code
        self.reason_phrase = head.reason.decode("ascii", "replace")
        self.headers = _header_map(head.headers)
        self._connection: _Connection | None = connection
        self._put_back = put_back

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as received (still content-encoded), chunk by chunk."""
        assert self._connection is not None, "response already closed"
        async for chunk in self._connection.body():
            yield chunk

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.next_cycle():
            self._put_back(connection)
        else:
            connection.close()


class _Connection:
    """One HTTP/1.1 connection: an h11 state machine over a `_Stream`."""

    def __init__(self, stream: _Stream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._timeout = 0.0
        self._idle_since = 0.0
        # Bytes received for the current response, and how many it may have.
        self._received = 0
        self._limit: int | None = None

    @classmethod
    async def open(
        cls, host: str, addresses: Sequence[str] | None, origin: Origin, timeout: float
    ) -> _Connection:
        """A connection to `addresses` (else `host`'s), TLS verified for `host` on https."""
        if addresses is None:
            stream = await _Stream.connect(host, origin[2], timeout)
        else:
            stream = await _Stream.connect_to(addresses, origin[2], timeout)
        if origin[0] == b"https":
            try:
                await stream.start_tls(tls_context(), host, timeout)
            except BaseException:
                stream.close()
                raise
        return cls(stream)

    async def request(
        self,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        timeout: float,
        max_bytes: int | None = None,
    ) -> h11.Response:
        """Send a GET and read up to the response's head (1xx answers skipped).

        With `max_bytes` (the caller's cap on the decoded body), the server may
        send twice that plus a head for this response, framing included: the
        decoded cap alone lets chunk extensions or padding stream forever,
        burning a core until the time limit.
        """
        self._timeout = timeout
        self._received = 0
        self._limit = None if max_bytes is None else 2 * max_bytes + MAX_HEAD
        state = self._h11
        try:
            data = state.send(h11.Request(method=b"GET", target=target, headers=headers))
            data += state.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc)) from exc
        # As httpcore does: a server may answer (an error) and close before reading it all.
        with contextlib.suppress(httpx.WriteError):
            await self._stream.write(data, timeout)
        for _ in range(_MAX_INFORMATIONAL + 1):
            event = await self._next_event()
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} from server")
        raise httpx.RemoteProtocolError(f"more than {_MAX_INFORMATIONAL} 1xx responses")

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__} from server")

    def next_cycle(self) -> bool:
        """Make ready for the next request if this exchange ended cleanly; whether it did."""
        state = self._h11
        if state.our_state is not h11.DONE or state.their_state is not h11.DONE:
            return False  # body not read to its end, or the server closes ("Connection: close")
        if state.trailing_data[0]:
            # Bytes after the response (a 304 with a body, a body longer than its
            # Content-Length): the next request would take them for its answer.
            return False
        state.start_next_cycle()
        self._idle_since = time.monotonic()
        return True

    def unanswered(self) -> bool:
        """Whether the server sent nothing at all for the request in progress."""
        return not self._received and self._h11.their_state is h11.SEND_RESPONSE

    def reusable(self, fresh_after: float) -> bool:
        """Idle since after `fresh_after` (monotonic) and not closed or written to by the server."""
        return self._idle_since > fresh_after and not self._stream.readable()

    def close(self) -> None:
        self._stream.close()

    async def _next_event(self) -> object:
        state = self._h11
        try:
            while True:
                event = state.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await self._stream.read(_READ_SIZE, self._timeout)
                if not data and state.their_state is h11.SEND_RESPONSE:
                    raise httpx.RemoteProtocolError(_NO_RESPONSE)
                self._received += len(data)
                if self._limit is not None and self._received > self._limit:
                    raise httpx.RemoteProtocolError(
                        f"response larger than {self._limit / 2**20:.1f} MB received"
                        " (framing included)"
                    )
                state.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc


def _basic_auth(url: httpx.URL) -> tuple[bytes, bytes]:
    credentials = f"{url.username}:{url.password}".encode()
    return b"Authorization", b"Basic " + base64.b64encode(credentials)


def _header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """h11's headers (names already lower-case) as a dict, repeated ones joined."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class _Stream(asyncio.Protocol):
    """One TCP (or TLS) connection as a byte stream with timeouts, on an asyncio transport.

    The transport reads continuously into a buffer (paused above _READ_BUFFER),
    so anything the server sent an idle connection (its end, mostly) is usually
    known already; the socket is still polled before reuse, for what the event
    loop has not processed yet. Read and write timeouts are one timer per wait,
    not a cancel scope per call.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._fd: int | None = None
        self._buffer = bytearray()
        self._eof = False
        self._lost: Exception | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._waiter: asyncio.Future[None] | None = None

    @classmethod
    async def connect(cls, host: str, port: int, timeout: float) -> _Stream:
        """A TCP connection (TCP_NODELAY set by asyncio), addresses raced as RFC 8305 says.

        Racing, as anyio did: the next address is tried when the last has not
        connected within 250 ms, so a host whose IPv6 address is unreachable
        does not cost the whole connect timeout.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, stream = await loop.create_connection(
                    cls, host, port, happy_eyeballs_delay=_HAPPY_EYEBALLS
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {timeout:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        return stream

    @classmethod
    async def connect_to(cls, addresses: Sequence[str], port: int, timeout: float) -> _Stream:
        """A TCP connection to the first of `addresses` to answer; no name is resolved.

        Raced as RFC 8305 says, as asyncio does for a name: the next address is
        tried when the ones before have failed or not connected within 250 ms,
        so an unreachable first address (a broken IPv6 route) costs 250 ms.
        Connections that lose the race are closed.
        """
        loop = asyncio.get_running_loop()
        attempts: dict[asyncio.Future[Any], str] = {}  # connecting -> to which address
        failures: list[str] = []
        untried = iter(addresses)
        winner: _Stream | None = None
        try:
            async with asyncio.timeout(timeout):
                while (address := next(untried, None)) is not None or _running(attempts):
                    if address is not None:
                        connecting = loop.create_connection(cls, address, port)
                        attempts[asyncio.ensure_future(connecting)] = address
                    done, _ = await asyncio.wait(
                        _running(attempts),
                        timeout=None if address is None else _HAPPY_EYEBALLS,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    for finished in done:
                        error = finished.exception()
                        if error is None:
                            winner = finished.result()[1]
                            return winner
                        failures.append(f"{attempts[finished]}: {_reason(error)}")
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection within {timeout:g} s") from None
        finally:
            for attempt in attempts:
                if not attempt.done():
                    attempt.cancel()
                elif _connected(attempt) and attempt.result()[1] is not winner:
                    attempt.result()[1].close()
        raise httpx.ConnectError("; ".join(failures) or "no address to connect to")

    # -- the protocol: called by the event loop --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = None if sock is None else sock.fileno()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _READ_BUFFER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport: a server that ended its side is done

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self._wake()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake()

    # -- the stream: called by _Connection --

    async def read(self, max_bytes: int, timeout: float) -> bytes:
        """Up to `max_bytes` received bytes; b"" once the server closed its side."""
        while not self._buffer:
            if self._lost is not None:
                raise httpx.ReadError(str(self._lost) or type(self._lost).__name__)
            if self._eof:
                return b""
            await self._wait(timeout, httpx.ReadTimeout)
        if len(self._buffer) <= max_bytes:
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
        if self._reading_paused and len(self._buffer) <= _READ_BUFFER // 2:
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise httpx.WriteError("connection closed")
        transport.write(data)
        while self._writing_paused and not transport.is_closing():
            await self._wait(timeout, httpx.WriteTimeout)

    def readable(self) -> bool:
        """Whether anything (data or the end) arrived that was not read yet.

        The socket is asked too (one poll, as httpcore does): a server that
        closes right after its response may not have been heard by the event
        loop yet, and a request sent on that connection would fail.
        """
        if self._buffer or self._eof or self._fd is None:
            return True
        return _fd_readable(self._fd)

    def close(self) -> None:
        """Close at once, discarding what is unsent or unread.

        Not `transport.close()`: over TLS that waits (up to 30 s) for the
        server's close_notify, and a server that never sends it would hold the
        socket that long after a failed fetch.
        """
        if self._transport is not None:
            self._transport.abort()

    async def start_tls(self, context: ssl.SSLContext, host: str, timeout: float) -> None:
        """Switch to TLS, verifying the certificate for `host`, within `timeout` seconds."""
        assert self._transport is not None
        try:
            async with asyncio.timeout(timeout):
                transport = await self._loop.start_tls(
                    self._transport, self, context, server_hostname=host
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"TLS handshake not done within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc)) from exc
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    async def _wait(self, timeout: float, error: type[httpx.TimeoutException]) -> None:
        """Until the protocol side has news, at most `timeout` seconds (else `error`)."""
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise error(f"no progress within {timeout:g} s") from None
        finally:
            self._waiter = None
            timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _running(attempts: Iterable[asyncio.Future[Any]]) -> set[asyncio.Future[Any]]:
    return {attempt for attempt in attempts if not attempt.done()}


def _connected(attempt: asyncio.Future[Any]) -> bool:
    return not attempt.cancelled() and attempt.exception() is None


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _fd_readable(fd: int) -> bool:
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # no poll() on Windows


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
