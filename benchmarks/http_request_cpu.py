"""The client's CPU per HTTP request on the async drivers' path, beside its floors.

A small asyncio HTTP/1.1 server in a process of its own answers ``GET /img`` with 300 bytes
(kept alive); one client sends N requests one after another and this prints its CPU (user +
system) per request:

- ``ours``: the async drivers' ``AsyncClient`` (httpx) over their HTTP/1.1 transport
  (``degrees37_imagegen._http11``), the body streamed as the plugins stream an image;
- ``httpx``: ``httpx.AsyncClient`` over its own transport (httpcore), streamed the same way;
- ``aiohttp``: aiohttp's ``ClientSession`` alone (when aiohttp is installed: it is no
  longer a dependency of this project);
- ``asyncio streams``: a bare HTTP/1.1 request over one kept connection (the floor).

Each figure is the least of ``--repeat`` rounds, the three taking turns::

    python benchmarks/http_request_cpu.py [--requests 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SERVER = r"""
import asyncio
answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 300\r\n\r\n" + b"x" * 300
async def serve(reader, writer):
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(send: Callable[[], Awaitable[None]], count: int) -> float:
    for _ in range(50):  # connections made, code warm
        await send()
    before = _cpu()
    for _ in range(count):
        await send()
    return (_cpu() - before) / count * 1e6


async def _run(port: int, count: int, repeat: int) -> dict[str, list[float]]:
    import httpx

    try:
        import aiohttp
    except ImportError:
        aiohttp = None

    from degrees37_imagegen._async_http import AsyncClient
    from degrees37_imagegen._http11 import Http11Transport

    url = f"http://127.0.0.1:{port}"
    ours = AsyncClient(base_url=url, transport=Http11Transport(), timeout=10)
    plain = httpx.AsyncClient(base_url=url, timeout=10)
    session = aiohttp.ClientSession(url) if aiohttp is not None else None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = f"GET /img HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def with_ours() -> None:
        async with ours.stream("GET", "/img") as response:
            async for _chunk in response.aiter_bytes():
                pass

    async def with_httpx() -> None:
        async with plain.stream("GET", "/img") as response:
            async for _chunk in response.aiter_bytes():
                pass

    async def with_aiohttp() -> None:
        assert session is not None
        async with session.get("/img") as response:
            await response.read()

    async def with_streams() -> None:
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)

    figures: dict[str, list[float]] = {}
    try:
        for _ in range(repeat):
            clients = [
                ("ours (httpx, lean transport)", with_ours),
                ("httpx alone (httpcore)", with_httpx),
                ("aiohttp alone", with_aiohttp),
                ("asyncio streams (floor)", with_streams),
            ]
            for name, send in clients:
                if send is with_aiohttp and session is None:
                    continue  # aiohttp is not installed
                figures.setdefault(name, []).append(await _measure(send, count))
    finally:
        await ours.aclose()
        await plain.aclose()
        if session is not None:
            await session.close()
        writer.close()
    return figures


def main() -> None:
    """Start the server, measure, print one line per client."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        figures = asyncio.run(_run(port, args.requests, args.repeat))
    finally:
        server.kill()
        server.wait()
    for name, values in figures.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:29} {min(values):5.0f} µs CPU per request (rounds: {rounds})")


if __name__ == "__main__":
    main()
