"""A lean HTTP/1.1 transport for ``httpx.AsyncClient``: the async drivers' bytes.

httpx's own async transport (httpcore over anyio and h11) costs ~1.3 ms of CPU a request on
a small machine, and aiohttp's client ~0.2 ms; a request over a bare :class:`asyncio.Protocol`
costs a fraction of that (``benchmarks/http_request_cpu.py``). At two requests an image,
that is most of what a fast client spends. The drivers keep talking httpx (its
``AsyncClient``, its errors, and the ``transport=`` seam tests inject); only the bytes go
through here.

What a failure means for "was the request sent?" follows httpx: ``ConnectError``,
``ConnectTimeout`` and ``PoolTimeout`` are raised only when no byte of the request was
written, so a caller may send it again. Anything later (``WriteError``, ``ReadError``,
``ReadTimeout``, ``RemoteProtocolError``) means it may have been received. A kept-alive
connection the server closed while it sat idle is noticed before it is used, and a new one
is opened. If the server closes it just as a request goes out, with no byte of an answer,
an idempotent request (``GET``, ``HEAD``...) is sent once more on a new connection, as
RFC 9112 allows; any other is reported as maybe sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import ssl

__all__ = ["Http11Transport"]

#: How long an idle connection is kept for reuse (s): under uvicorn's default keep-alive of
#: 5 s (InvokeAI), so that a connection is rarely reused just as its server drops it.
KEEPALIVE_EXPIRY = 4.0
#: The most a response head may hold (bytes), as h11's default.
MAX_HEAD = 64 * 1024
#: Reading pauses while this much of a body waits in memory, and resumes under a quarter.
_HIGH_WATER = 1 << 20
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_NO_BODY = frozenset({204, 304})
_STATUS = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: (.*))?\Z")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_HEX = re.compile(rb"[0-9A-Fa-f]+\Z")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _Disconnected(Exception):
    """The connection ended; ``received``: after part of an answer had arrived."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the bytes received so far, and a way to wait for more."""

    def __init__(self, origin: tuple[str, str, int], loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False  # the server ended it, or we did
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self.loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # for the transport

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, count: int) -> bytes:
        """The first ``count`` bytes of the buffer, removed from it."""
        if count >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:count])
            del self.buffer[:count]
        if self._paused and len(self.buffer) < _HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def more(self, timeout: float | None) -> None:
        """Wait for bytes beyond those in the buffer; :class:`_Disconnected` if none can
        come, :class:`TimeoutError` after ``timeout`` seconds without any."""
        if self.closed:
            raise _Disconnected(self.error)
        waiter = self._waiter = self.loop.create_future()
        timer = None if timeout is None else self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        if self.closed and not self.buffer:
            raise _Disconnected(self.error)

    async def write(self, data: bytes, timeout: float | None) -> None:
        """Send ``data``, waiting (up to ``timeout``) while the socket's buffer is full."""
        if self.closed or self.transport is None:
            raise _Disconnected(self.error)
        self.transport.write(data)
        drain = self._drain
        if drain is not None:
            await asyncio.wait_for(asyncio.shield(drain), timeout)
            if self.closed:
                raise _Disconnected(self.error)

    def reusable(self) -> bool:
        """Whether the connection may carry another request: open, with nothing unread."""
        return (
            not self.closed
            and not self.buffer  # a server has nothing to say between answers
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        """Close the connection (its socket, at once)."""
        self.closed = True
        if self.transport is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed, and so its socket
                self.transport.abort()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http11Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests over HTTP/1.1 connections of its own, kept alive and reused.

    At most ``max_connections`` are open at once (a request waits for one, up to the pool
    timeout); ``ssl_context`` is used for ``https`` URLs (the process's shared one when not
    given). Connections belong to the event loop that opened them: a request on another loop
    opens its own.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, max_connections: int = 32):
        self._ssl = ssl_context
        self._limit = max_connections
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the head of its answer; the body streams."""
        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}", request=request)
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        message, close = _message(request, await request.aread())
        for attempt in (1, 2):
            connection, reused = await self._acquire(origin, request, timeouts)
            try:
                try:
                    await connection.write(message, timeouts.get("write"))
                except _Disconnected as exc:
                    raise httpx.WriteError(
                        _said(exc, "the connection closed"), request=request
                    ) from None
                except (TimeoutError, asyncio.TimeoutError):
                    raise httpx.WriteTimeout(
                        "timed out sending the request", request=request
                    ) from None
                try:
                    status, version, reason, headers = await _read_head(
                        connection, timeouts.get("read")
                    )
                except _Disconnected as exc:
                    if reused and attempt == 1 and request.method in _IDEMPOTENT:
                        self._release(connection, reuse=False)
                        continue  # the server dropped a kept-alive connection: once more
                    raise httpx.RemoteProtocolError(
                        _said(exc, "Server disconnected without sending a response."),
                        request=request,
                    ) from None
                except (TimeoutError, asyncio.TimeoutError):
                    raise httpx.ReadTimeout(
                        "timed out waiting for the response", request=request
                    ) from None
                except _Malformed as exc:
                    raise httpx.RemoteProtocolError(str(exc), request=request) from None
                body = _Body(self, connection, request, status, headers, timeouts.get("read"))
            except BaseException:
                self._release(connection, reuse=False)
                raise
            body.keep = body.keep and version == b"1" and not close
            return httpx.Response(
                status_code=status,
                headers=headers,
                stream=body,
                extensions={
                    "http_version": b"HTTP/1.1" if version == b"1" else b"HTTP/1.0",
                    "reason_phrase": reason,
                },
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the idle connections (those in use close when their answers are read)."""
        self._closed = True
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                self._forget(connection)

    # the pool

    async def _acquire(
        self, origin: tuple[str, str, int], request: httpx.Request, timeouts: dict[str, Any]
    ) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                if (
                    connection.loop is loop
                    and connection.reusable()
                    and now - connection.idle_since < KEEPALIVE_EXPIRY
                ):
                    return connection, True
                self._forget(connection)
            if self._open < self._limit:
                self._open += 1
                try:
                    return await self._connect(origin, request, timeouts.get("connect")), False
                except BaseException:
                    self._open -= 1
                    self._next()
                    raise
            other = next((c for cs in self._idle.values() for c in cs), None)
            if other is not None:  # at the limit: an idle connection elsewhere makes room
                self._idle[other.origin].remove(other)
                self._forget(other)
                continue
            waiter = loop.create_future()
            self._waiting.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeouts.get("pool"))
            except (TimeoutError, asyncio.TimeoutError):
                raise httpx.PoolTimeout(
                    "timed out waiting for a connection", request=request
                ) from None
            finally:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)

    async def _connect(
        self, origin: tuple[str, str, int], request: httpx.Request, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {}
        if scheme == "https":
            if self._ssl is None:
                from .tls import ssl_context

                self._ssl = ssl_context()
            options["ssl"] = self._ssl
            sni = request.extensions.get("sni_hostname") or host
            options["server_hostname"] = sni.decode() if isinstance(sni, bytes) else sni
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(origin, loop), host, port, **options),
                timeout,
            )
        except (TimeoutError, asyncio.TimeoutError):
            raise httpx.ConnectTimeout(
                f"timed out connecting to {host}:{port}", request=request
            ) from None
        except OSError as exc:  # refused, unreachable, no such host, TLS failed
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return connection

    def _release(self, connection: _Connection, *, reuse: bool) -> None:
        if reuse and not self._closed and connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.setdefault(connection.origin, []).append(connection)
            self._next()
        else:
            self._forget(connection)

    def _forget(self, connection: _Connection) -> None:
        connection.close()
        self._open -= 1
        self._next()

    def _next(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Malformed(Exception):
    """The server's answer is not HTTP/1.1."""


def _message(request: httpx.Request, body: bytes) -> tuple[bytes, bool]:
    """The request's bytes, its head (httpx has set ``Host`` and the body's length) and body;
    and whether it asks for its connection to be closed after the answer."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    chunked = close = False
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\0" in value or not _valid_name(name):
            raise httpx.LocalProtocolError(
                f"invalid header {name.decode('latin-1')!r}", request=request
            )
        lines.append(b"%s: %s" % (name, value))
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            chunked = value.strip().lower() == b"chunked"
        elif lowered == b"connection":
            close = b"close" in value.lower()
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if chunked:  # a stream of unknown length, read whole by now: one chunk, then the end
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    return head + body, close


#: Header names already found valid (a client sends the same few again and again).
_VALID_NAMES: set[bytes] = set()


def _valid_name(name: bytes) -> bool:
    if name in _VALID_NAMES:
        return True
    if not _TOKEN.match(name):
        return False
    if len(_VALID_NAMES) < 256:
        _VALID_NAMES.add(name)
    return True


async def _read_head(
    connection: _Connection, timeout: float | None
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    """The next final answer's status, HTTP minor version, reason and headers (informational
    ``1xx`` answers are skipped)."""
    while True:
        end = connection.buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(connection.buffer) > MAX_HEAD:
                raise _Malformed("the response head is too long")
            await connection.more(timeout)
            end = connection.buffer.find(b"\r\n\r\n")
        lines = connection.take(end + 4)[:-4].split(b"\r\n")
        match = _STATUS.match(lines[0])
        if match is None:
            raise _Malformed(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        status = int(match.group(2))
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise _Malformed(f"invalid response header line {line[:80]!r}")
            headers.append((name, value.strip(b" \t")))
        if status == 101:
            raise _Malformed("the server switched protocols, which was not asked for")
        if status >= 200:
            return status, match.group(1), match.group(3) or b"", headers


def _said(exc: BaseException, default: str) -> str:
    cause = exc.args[0] if exc.args else None
    return str(cause) if cause else default


class _Body(httpx.AsyncByteStream):
    """A response's body, framed as RFC 9112 says; its connection goes back to the pool
    once the body is read whole (and is closed if it is not)."""

    def __init__(
        self,
        pool: Http11Transport,
        connection: _Connection,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout
        self.keep = True
        self._length: int | None = None
        self._chunked = False
        encoding: bytes | None = None
        lengths: set[bytes] = set()
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"transfer-encoding":
                encoding = value.lower().rsplit(b",", 1)[-1].strip()
            elif lowered == b"content-length":
                lengths.update(v.strip() for v in value.split(b","))
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep = False
        if request.method == "HEAD" or status in _NO_BODY:
            self._length = 0
        elif encoding is not None:
            if encoding != b"chunked":
                raise httpx.RemoteProtocolError("unsupported transfer-encoding", request=request)
            self._chunked = True
        elif lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise httpx.RemoteProtocolError("invalid content-length", request=request)
            self._length = int(next(iter(lengths)))
        # else: the body ends when the connection does

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        try:
            if self._chunked:
                async for chunk in self._chunks(connection):
                    yield chunk
            elif self._length is not None:
                async for chunk in self._next_bytes(connection, self._length):
                    yield chunk
            else:
                self.keep = False
                while True:
                    if connection.buffer:
                        yield connection.take(len(connection.buffer))
                    elif connection.closed:
                        break
                    else:
                        try:
                            await connection.more(self._timeout)
                        except _Disconnected:
                            break
        except _Disconnected as exc:
            self._done(reuse=False)
            raise httpx.RemoteProtocolError(
                _said(exc, "peer closed connection without sending complete message body"),
                request=self._request,
            ) from None
        except (TimeoutError, asyncio.TimeoutError):
            self._done(reuse=False)
            raise httpx.ReadTimeout(
                "timed out reading the response", request=self._request
            ) from None
        except _Malformed as exc:
            self._done(reuse=False)
            raise httpx.RemoteProtocolError(str(exc), request=self._request) from None
        self._done(reuse=self.keep and not connection.buffer)

    async def _chunks(self, connection: _Connection) -> AsyncIterator[bytes]:
        while True:
            line = await self._line(connection)
            size_text = line.split(b";", 1)[0].strip()
            if not _HEX.match(size_text):
                raise _Malformed(f"invalid chunk size {line[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                while await self._line(connection):  # trailers, up to an empty line
                    pass
                return
            async for chunk in self._next_bytes(connection, size):
                yield chunk
            while len(connection.buffer) < 2:
                await connection.more(self._timeout)
            if connection.take(2) != b"\r\n":
                raise _Malformed("a chunk does not end with CRLF")

    async def _next_bytes(self, connection: _Connection, size: int) -> AsyncIterator[bytes]:
        """The next ``size`` bytes, as they arrive."""
        while size:
            if not connection.buffer:
                await connection.more(self._timeout)
            chunk = connection.take(size)
            size -= len(chunk)
            yield chunk

    async def _line(self, connection: _Connection) -> bytes:
        end = connection.buffer.find(b"\r\n")
        while end < 0:
            if len(connection.buffer) > MAX_HEAD:
                raise _Malformed("a chunk line is too long")
            await connection.more(self._timeout)
            end = connection.buffer.find(b"\r\n")
        return connection.take(end + 2)[:-2]

    def _done(self, *, reuse: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._release(connection, reuse=reuse)

    async def aclose(self) -> None:
        """Give the connection back (closed, if the body was not read whole)."""
        self._done(reuse=False)
