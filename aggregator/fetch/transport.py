"""One small connection pool per origin, behind one httpx client.

httpcore's connection pool scans all its connections whenever a request is
queued or a response released, and asks every idle connection's socket
whether it was closed (a system call each). With one pool of 40 connections
spread over many hosts that is about 2 ms of CPU per request, more than the
rest of a 304 exchange costs. A pool per origin (scheme, host, port) holds
at most `per_host_concurrency` connections, which the fetcher never exceeds
towards one host anyway, so each scan is short.

Open sockets stay bounded as with one pool: at most `max_pools` pools are
kept; when another origin needs one, the least recently used pools with no
response open are closed.
"""

from __future__ import annotations

import functools
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import httpx

Origin = tuple[bytes, bytes, int | None]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate store, loaded once per process: loading it costs tens of milliseconds."""
    return httpx.create_ssl_context(trust_env=False)


@dataclass
class _Pool:
    transport: httpx.AsyncHTTPTransport
    # Responses handed out and not yet closed; a pool is closed only at zero.
    open_responses: int = 0


class PerOriginTransport(httpx.AsyncBaseTransport):
    """Routes each request to its origin's own `httpx.AsyncHTTPTransport`."""

    def __init__(self, *, per_origin: int, max_pools: int) -> None:
        self._limits = httpx.Limits(
            max_connections=per_origin, max_keepalive_connections=per_origin
        )
        self._max_pools = max_pools
        self._pools: OrderedDict[Origin, _Pool] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        pool = await self._pool(request.url)
        pool.open_responses += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.open_responses -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Counted(response.stream, pool),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.transport.aclose()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()

    async def _pool(self, url: httpx.URL) -> _Pool:
        origin = (url.raw_scheme, url.raw_host, url.port)
        if origin not in self._pools:
            await self._make_room()
        pool = self._pools.get(origin)  # another request may have made it meanwhile
        if pool is None:
            transport = httpx.AsyncHTTPTransport(
                verify=tls_context(), limits=self._limits, trust_env=False
            )
            pool = self._pools[origin] = _Pool(transport)
        self._pools.move_to_end(origin)
        return pool

    async def _make_room(self) -> None:
        """Close least recently used idle pools until one more fits under `max_pools`."""
        excess = len(self._pools) + 1 - self._max_pools
        idle = [origin for origin, pool in self._pools.items() if pool.open_responses == 0]
        for origin in idle[: max(excess, 0)]:
            await self._pools.pop(origin).transport.aclose()


class _Counted(httpx.AsyncByteStream):
    """A response body that tells its pool when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, pool: _Pool) -> None:
        self._stream = stream
        self._pool: _Pool | None = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._pool is not None:
                self._pool.open_responses -= 1
                self._pool = None
