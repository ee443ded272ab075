"""The async drivers' httpx client: the same URLs and cookies as httpx's own."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from degrees37_imagegen._async_http import AsyncClient
from degrees37_imagegen._http11 import Http11Transport

BASES = [
    "http://127.0.0.1:8188",
    "http://user:secret@gpu:9090/sub/path",
    "https://h/x/",
    "http://[::1]:8188/",
    "http://h/?q=1",
]
PATHS = [
    "/prompt",
    "/history/0b7c2f7e-8d4f-4bd8",
    "/api/v1/queue/default/enqueue_batch",
    "/",
    "/a/./b",
    "/a/../b",
    "/.hidden/x",
    "/a//b/",
    "/a b",
    "/caf\u00e9",
    "/x?y=1",
    "relative",
    "http://elsewhere/abs",
]


PARAMS = [
    None,
    {"filename": "a b.png", "type": "output"},
    {"filename": "caf\u00e9/x&y=z+%41.png", "subfolder": "", "type": "temp"},
    {"n": 3, "flag": True, "none": None},  # not only strings: httpx's own encoding
    {"path": "a/b?c#d", "tilde": "~_.-*'()!"},
]


@pytest.mark.parametrize("base", BASES)
def test_urls_are_httpx_own(base: str) -> None:
    ours, theirs = AsyncClient(base_url=base), httpx.AsyncClient(base_url=base)
    for _ in range(2):  # made, then kept
        for path in PATHS:
            for params in PARAMS:
                got = ours.build_request("GET", path, params=params).url
                want = theirs.build_request("GET", path, params=params).url
                assert str(got) == str(want), (base, path, params)
                assert got == want
                assert (got.raw_path, got.netloc, got.host, got.port, got.path, got.query) == (
                    want.raw_path,
                    want.netloc,
                    want.host,
                    want.port,
                    want.path,
                    want.query,
                )


def test_it_keeps_only_so_many_urls() -> None:
    client = AsyncClient(base_url="http://h")
    for i in range(200):
        client.build_request("GET", f"/history/{i}")
    assert len(client._merged) == 64
    assert str(client.build_request("GET", "/history/199").url) == "http://h/history/199"


def test_cookies_are_kept_as_httpx_keeps_them() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            return httpx.Response(200, headers={"Set-Cookie": "session=abc; Path=/"})
        return httpx.Response(200, json={"cookie": request.headers.get("cookie")})

    async def main() -> list[object]:
        async with AsyncClient(
            base_url="http://h", transport=httpx.MockTransport(answer)
        ) as client:
            before = (await client.get("/who")).json()["cookie"]
            await client.get("/login")
            after = (await client.get("/who")).json()["cookie"]
            return [before, after, dict(client.cookies)]

    assert asyncio.run(main()) == [None, "session=abc", {"session": "abc"}]


def test_a_response_without_cookies_skips_the_jar() -> None:
    client = AsyncClient(base_url="http://h", cookies={"a": "1"})
    assert dict(client.cookies) == {"a": "1"}
    response = httpx.Response(200, request=client.build_request("GET", "/x"))

    def refuse(*args: object) -> None:
        raise AssertionError("the cookie jar was asked")

    client.cookies.jar.extract_cookies = refuse  # type: ignore[method-assign,assignment]
    client.cookies.extract_cookies(response)
    with pytest.raises(AssertionError, match="jar was asked"):
        client.cookies.extract_cookies(
            httpx.Response(200, headers={"Set-Cookie": "b=2"}, request=response.request)
        )


def test_a_plain_path_with_params_parses_no_url(monkeypatch: pytest.MonkeyPatch) -> None:
    client = AsyncClient(base_url="http://127.0.0.1:8188")
    client.build_request("GET", "/view")  # the path's URL is made (and kept) once
    parsed: list[object] = []
    real = httpx._urls.urlparse  # type: ignore[attr-defined]
    monkeypatch.setattr(httpx._urls, "urlparse", lambda *a, **k: parsed.append(a) or real(*a, **k))
    request = client.build_request("GET", "/view", params={"filename": "a.png", "type": "output"})
    assert str(request.url) == "http://127.0.0.1:8188/view?filename=a.png&type=output"
    assert parsed == []


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({}, "http://h/x"),
        ({"auth": ("u", "p")}, "http://h/x"),  # the client's auth: httpx's own path
        ({}, "http://u:p@h/x"),  # a user in the URL: basic auth, as httpx
        ({"follow_redirects": True}, "http://h/x"),
        ({"event_hooks": {"request": [], "response": []}}, "http://h/x"),
    ],
)
def test_requests_are_sent_as_httpx_sends_them(options: dict[str, object], url: str) -> None:
    """The same requests reach the transport, with the same answers, the same redirects
    told (or followed) and the same errors, as through httpx's own client."""

    def answer(request: httpx.Request) -> httpx.Response:
        said = {"auth": request.headers.get("authorization")}
        if request.url.path == "/x":
            return httpx.Response(307, headers={"Location": "/y"}, json=said)
        return httpx.Response(200, json=said)

    async def run(client: httpx.AsyncClient) -> list[object]:
        async with client:
            first = await client.get(url)
            async with client.stream("GET", "http://h/y") as streamed:
                body = await streamed.aread()
            told = first.next_request.url if first.next_request is not None else None
            return [first.status_code, first.content, str(told), body, len(first.history)]

    ours = asyncio.run(run(AsyncClient(transport=httpx.MockTransport(answer), **options)))
    theirs = asyncio.run(run(httpx.AsyncClient(transport=httpx.MockTransport(answer), **options)))
    assert ours == theirs


def test_a_closed_client_refuses_to_send_as_httpx_does() -> None:
    async def run() -> None:
        client = AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
        await client.aclose()
        with pytest.raises(RuntimeError, match="client has been closed"):
            await client.get("http://h/")

    asyncio.run(run())


def test_the_transport_sends_only_the_cookies_httpx_holds() -> None:
    """httpx keeps the cookies; the transport under it keeps none of its own, so a cookie
    httpx has dropped is not sent again (a real socket, and a host name, as a server is
    named: a cookie jar may take no cookie from an IP address)."""
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            lines = head.decode().split("\r\n")
            cookie = next(
                (
                    v
                    for k, _, v in (line.partition(": ") for line in lines)
                    if k.lower() == "cookie"
                ),
                "",
            )
            seen.append(cookie)
            extra = (
                "Set-Cookie: session=abc; Path=/\r\n" if lines[0].startswith("GET /login") else ""
            )
            writer.write(f"HTTP/1.1 200 OK\r\n{extra}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport = Http11Transport()
        async with (
            server,
            AsyncClient(base_url=f"http://localhost:{port}", transport=transport) as client,
        ):
            await client.get("/login")
            await client.get("/kept")
            client.cookies.clear()
            await client.get("/dropped")
        server.close()

    asyncio.run(main())
    assert seen == ["", "session=abc", ""]
