"""A lean HTTP/1.1 load client for the benchmarks: keep-alive connections on asyncio protocols, requests pre-encoded.

Why not aiohttp's client: on this 2-core machine the generator shares the cores with the service, its database and
its broker, and aiohttp's client spends about 700 µs of CPU per request (measured with /proc CPU times around a
steady 300 req/s run), about a third of what the stamping service itself spends. That CPU is taken from the service
being measured. This client sends bytes it built once per request and reads the answer with a minimal parser (status
line, ``Content-Length`` body; no chunked encoding, which none of the measured servers uses for these answers), so
the figures are about the service, not the generator.

Only what the benchmarks need: POST of a body, one request at a time per connection, 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

__all__ = ["HttpError", "LoadClient"]

#: Longest wait for one answer: a stalled server fails the request instead of hanging the benchmark.
TIMEOUT_S = 60.0


class HttpError(Exception):
    """The connection closed, or the answer was not HTTP/1.1 with a Content-Length."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._need = -1  # bytes of the whole answer once its head is parsed
        self._body_start = 0
        self._status = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need < 0:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
            try:
                self._status = int(head[0].split(" ", 2)[1])
                fields = (line.partition(":") for line in head[1:])
                length = next(int(v) for k, _, v in fields if k.lower() == "content-length")
            except (IndexError, ValueError, StopIteration):
                self._fail(HttpError(f"not an HTTP/1.1 answer with a Content-Length: {head[:1]!r}"))
                return
            self._body_start = end + 4
            self._need = end + 4 + length
        if len(self._buffer) >= self._need:
            body = bytes(self._buffer[self._body_start : self._need])
            del self._buffer[: self._need]
            self._need = -1
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result((self._status, body))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


class LoadClient:
    """POSTs to one URL over a pool of keep-alive connections (opened as needed, never limited: an open-loop
    generator must not queue requests behind busy connections; a closed loop simply never needs more than its
    number of workers)."""

    def __init__(self, url: str, content_type: str = "application/json") -> None:
        parts = urlsplit(url)
        if parts.hostname != "127.0.0.1" or parts.scheme != "http":
            raise ValueError(f"the load client talks to http://127.0.0.1 only, got {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            "Content-Length: "
        ).encode()
        self._idle: list[_Connection] = []
        self._all: list[_Connection] = []

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """One request; its status and body. Raises HttpError or OSError when there is no answer, TimeoutError when
        none comes within :data:`TIMEOUT_S`."""
        connection = await self._connection()
        try:
            async with asyncio.timeout(TIMEOUT_S):
                answer = await connection.request(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        if not connection.closed:
            self._idle.append(connection)
        return answer

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, self._host, self._port)
        self._all = [c for c in self._all if not c.closed]
        self._all.append(protocol)
        return protocol

    async def close(self) -> None:
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
        self._all.clear()
        await asyncio.sleep(0)
