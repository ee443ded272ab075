"""The async drivers' HTTP/1.1 transport, against scripted servers on real sockets.

Each server is an ``asyncio`` server in the test's own loop that answers with the bytes a
test gives it, so that framing, kept-alive connections, and failures before and after a
request is sent are each seen as a real client sees them. No test waits on a clock: a
timeout of 0 expires at the loop's next turn.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from degrees37_imagegen._async_http import AsyncClient
from degrees37_imagegen._http11 import Http11Transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """A scripted server: ``handler`` runs for each connection; what it saw is kept."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's head (kept in :attr:`requests`); its body in :attr:`bodies`."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self.bodies.append(await reader.readexactly(length))
        return head


def answers(*responses: bytes, close: bool = False) -> Handler:
    """A handler that answers each request on a connection with the next response."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        for response in responses:
            await server.read_request(reader)
            writer.write(response)
            await writer.drain()
        if not close:
            await reader.read()  # until the client closes

    return handler


async def never_answers(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    """Reads a request, answers nothing, and keeps the connection until the client closes."""
    await server.read_request(reader)
    await reader.read()


async def hangs_up(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    """Reads a request and closes the connection without a word."""
    await server.read_request(reader)


def ok(body: bytes = b"hello", *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        b"".join(e + b"\r\n" for e in extra),
        body,
    )


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


#: Every transport a test made, checked after it (see :func:`_counts_hold`).
TRANSPORTS: list[Http11Transport] = []


def client(
    server: Server, transport: Http11Transport | None = None, **kwargs: object
) -> AsyncClient:
    transport = transport or Http11Transport()
    TRANSPORTS.append(transport)
    return AsyncClient(base_url=server.url, transport=transport, timeout=5, **kwargs)


@pytest.fixture(autouse=True)
def _counts_hold() -> Iterator[None]:
    """After each test, each transport counts as open just the connections it keeps idle:
    none was lost by a failure, nor given back twice."""
    TRANSPORTS.clear()
    yield
    for transport in TRANSPORTS:
        assert transport._open == sum(len(kept) for kept in transport._idle.values())


def test_a_kept_alive_connection_carries_the_next_requests() -> None:
    async def main() -> None:
        three = answers(ok(b"one"), ok(b"two"), ok(b"three"))
        async with Server(three) as server, client(server) as http:
            assert (await http.get("/a")).content == b"one"
            assert (await http.post("/b", json={"x": 1})).content == b"two"
            response = await http.get("/c", params={"q": "a b"})
            assert response.content == b"three"
            assert response.http_version == "HTTP/1.1"
            assert response.reason_phrase == "OK"
        assert server.connections == 1
        assert server.requests[0].startswith(b"GET /a HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:" in server.requests[0].lower()
        assert server.requests[1].startswith(b"POST /b HTTP/1.1\r\n")
        assert server.bodies[1] == b'{"x":1}'
        assert server.requests[2].startswith(b"GET /c?q=a+b HTTP/1.1\r\n")

    run(main)


@pytest.mark.parametrize(
    ("response", "body"),
    [
        (ok(b"x" * 10), b"x" * 10),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b""),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nTrailer: x\r\n\r\n",
            b"hello world",
        ),
        (b"HTTP/1.1 200 OK\r\nCONTENT-LENGTH: 3\r\nX-Other:   spaced  \r\n\r\nabc", b"abc"),
    ],
)
def test_bodies_are_framed_as_http_says(response: bytes, body: bytes) -> None:
    async def main() -> None:
        async with Server(answers(response, ok(b"next"))) as server, client(server) as http:
            first = await http.get("/")
            assert first.content == body
            assert (await http.get("/")).content == b"next"  # the framing was exact
        assert server.connections == 1

    run(main)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
    ],
)
def test_a_body_without_a_length_ends_with_the_connection(response: bytes) -> None:
    async def main() -> None:
        async with Server(answers(response, close=True)) as server, client(server) as http:
            first = await http.get("/")
            assert first.content == b"until the end"
            server.handler = answers(ok(b"again"))
            assert (await http.get("/")).content == b"again"
        assert server.connections == 2  # the first connection was not reused

    run(main)


@pytest.mark.parametrize(
    ("response", "headers"),
    [
        (ok(b"bye", b"Connection: close"), {}),
        (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", {}),
        (ok(b"bye"), {"Connection": "close"}),  # the client asked
    ],
)
def test_a_connection_either_side_closes_is_not_reused(
    response: bytes, headers: dict[str, str]
) -> None:
    async def main() -> None:
        # the server keeps the connection open: a client that used it again would wait
        async with Server(answers(response)) as server, client(server) as http:
            await http.get("/", headers=headers)
            server.handler = answers(ok(b"new"))
            assert (await http.get("/")).content == b"new"
        assert server.connections == 2

    run(main)


def test_answers_without_a_body_and_informational_ones() -> None:
    async def main() -> None:
        responses = (
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",  # to a HEAD
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        )
        async with Server(answers(*responses)) as server, client(server) as http:
            assert (await http.get("/")).status_code == 204
            assert (await http.get("/")).status_code == 304
            head = await http.head("/")
            assert (head.status_code, head.content) == (200, b"")
            created = await http.post("/", content=b"data")
            assert (created.status_code, created.content) == (201, b"ok")
        assert server.connections == 1
        assert server.bodies[3] == b"data"

    run(main)


def test_uploads_and_large_bodies_go_whole() -> None:
    big = bytes(range(256)) * 12_000  # 3 MB: reading pauses and resumes

    async def main() -> None:
        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
        ) -> None:
            await server.read_request(reader)
            writer.write(ok(b"%d" % len(server.bodies[-1])))
            await server.read_request(reader)
            writer.write(ok(big))
            await writer.drain()
            await reader.read()

        async with Server(handler) as server, client(server) as http:
            files = {"file": ("a.png", big, "image/png")}
            uploaded = await http.post("/upload", files=files)
            assert int(uploaded.content) > len(big)
            got = bytearray()
            async with http.stream("GET", "/big") as response:
                async for chunk in response.aiter_bytes():
                    got += chunk
            assert bytes(got) == big
        assert big in server.bodies[0]

    run(main)


def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def main() -> None:
        async with Server(answers(ok(b"first"), close=True)) as server:
            transport = Http11Transport()
            async with client(server, transport) as http:
                assert (await http.get("/")).content == b"first"
                (idle,) = transport._idle[("http", "127.0.0.1", int(server.url.rsplit(":")[-1]))]
                while not idle.closed:  # the server's FIN arrives
                    await asyncio.sleep(0)
                server.handler = answers(ok(b"second"))
                assert (await http.post("/", content=b"once")).content == b"second"
        assert server.connections == 2
        assert server.bodies == [b"", b"once"]

    run(main)


def test_a_kept_alive_connection_dropped_as_a_request_goes_out() -> None:
    """The server reads the request, then closes without a word (its keep-alive ran out
    just then): a GET is sent again on a new connection; a POST may have been received,
    so it is reported, never sent twice."""

    async def main() -> None:
        async def drops_the_second(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
        ) -> None:
            await server.read_request(reader)
            writer.write(ok(b"first"))
            await server.read_request(reader)  # and no answer

        async with Server(drops_the_second) as server, client(server) as http:
            await http.get("/")
            assert (await http.get("/retried")).content == b"first"  # on a new connection
            assert server.connections == 2
            with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
                await http.post("/enqueue", content=b"job")  # on the second, kept alive
        assert server.connections == 2
        assert [r.split(b" ")[1] for r in server.requests].count(b"/enqueue") == 1

    run(main)


def test_a_new_connection_closed_unanswered_is_not_sent_again() -> None:
    async def main() -> None:
        async with Server(hangs_up) as server, client(server) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/")
        assert len(server.requests) == 1

    run(main)


def test_a_body_cut_short_is_an_error_and_its_connection_is_dropped() -> None:
    async def main() -> None:
        cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nonly"
        for response in (cut, chunked):
            async with Server(answers(response, close=True)) as server, client(server) as http:
                with pytest.raises(httpx.RemoteProtocolError):
                    await http.get("/")
                server.handler = answers(ok(b"fine"))
                assert (await http.get("/")).content == b"fine"
            assert server.connections == 2

    run(main)


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70_000,
    ],
)
def test_an_answer_that_is_not_http_1_1_is_a_protocol_error(response: bytes) -> None:
    async def main() -> None:
        async with Server(answers(response)) as server, client(server) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/")

    run(main)


def test_a_header_that_would_split_the_request_is_refused() -> None:
    async def main() -> None:
        async with Server(answers(ok())) as server, client(server) as http:
            request = http.build_request("GET", "/")
            request.headers["X-Bad"] = "a\r\nInjected: yes"
            with pytest.raises(httpx.LocalProtocolError):
                await http.send(request)
        assert server.requests == []

    run(main)


def test_a_refused_connection_is_a_connect_error_never_sent() -> None:
    async def main() -> None:
        async with Server(answers()) as server:
            url = server.url
        async with AsyncClient(base_url=url, transport=Http11Transport()) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get("/")

    run(main)


def test_timeouts_name_what_was_waited_for() -> None:
    async def main() -> None:
        async with Server(never_answers) as server, client(server) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get("/", timeout=httpx.Timeout(5, read=0))
            with pytest.raises(httpx.ConnectTimeout):
                await http.get("/", timeout=httpx.Timeout(5, connect=0))

        slow_body = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
        async with Server(answers(slow_body)) as server, client(server) as http:
            with pytest.raises(httpx.ReadTimeout):
                async with http.stream("GET", "/", timeout=httpx.Timeout(5, read=0)) as response:
                    await response.aread()

    run(main)


def test_the_pool_limit_holds_and_a_free_connection_is_handed_on() -> None:
    async def main() -> None:
        async with Server(answers(ok(b"a"), ok(b"b"))) as server:
            transport = Http11Transport(max_connections=1)
            async with client(server, transport) as http:
                async with http.stream("GET", "/") as held:
                    with pytest.raises(httpx.PoolTimeout):
                        await http.get("/", timeout=httpx.Timeout(5, pool=0))
                    waiting = asyncio.ensure_future(http.get("/"))
                    await asyncio.sleep(0)
                    assert not waiting.done()
                    assert await held.aread() == b"a"
                assert (await waiting).content == b"b"
        assert server.connections == 1

    run(main)


def test_a_canceled_request_drops_its_connection() -> None:
    async def main() -> None:
        async with Server(never_answers) as server, client(server) as http:
            task = asyncio.ensure_future(http.get("/"))
            while not server.requests:
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            server.handler = answers(ok(b"fresh"))
            assert (await http.get("/")).content == b"fresh"
        assert server.connections == 2

    run(main)


def test_a_transport_serves_one_event_loop_after_another() -> None:
    transport = Http11Transport()

    async def main() -> None:
        async with Server(answers(ok(b"x"), ok(b"y"))) as server:
            http = client(server, transport)
            assert (await http.get("/")).content == b"x"

    run(main)
    run(main)  # the first loop's idle connection is dropped, not used


#: A self-signed certificate for ``localhost`` (valid 2026-2125) and its key: test data only.
CERTIFICATE = Path(__file__).parent / "data" / "localhost.pem"


def test_https_with_the_context_given() -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(CERTIFICATE)
    trusting = ssl.create_default_context(cafile=str(CERTIFICATE))

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok(b"secret"))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        async with server:
            url = f"https://localhost:{port}/"
            async with AsyncClient(transport=Http11Transport(ssl_context=trusting)) as http:
                assert (await http.get(url)).content == b"secret"
            untrusting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            async with AsyncClient(transport=Http11Transport(ssl_context=untrusting)) as http:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await http.get(url)

    run(main)
