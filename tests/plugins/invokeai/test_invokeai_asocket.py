"""The async driver's socket.io client, against scripted servers speaking the recorded frames.

Each server is a ``websockets`` server in the test's loop that sends what a real InvokeAI
6.14.2 sent (``rec_socketio_items.json``, ``rec_socketio_handshake_errors.json``): the
open packet, the namespace's answer, the subscription's ack, events and a ping.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from degrees37_imagegen_invokeai._asocket import AsyncQueueSocket, SocketRefused

CAPTURES = Path(__file__).parent / "captures"
FRAMES = json.loads((CAPTURES / "rec_socketio_items.json").read_text(encoding="utf-8"))["frames"]
#: The frames the real server sent, in order: open, namespace, ack, then events and a ping.
SENT = [f["text"] for f in FRAMES if f["dir"] == "recv" and f["text"] is not None]
OPEN, NAMESPACE, ACK = SENT[:3]
EVENTS = [t for t in SENT if t.startswith("42[")]
PING = "2"

Script = Callable[[ServerConnection, list[str]], Awaitable[None]]


async def handshake(ws: ServerConnection, heard: list[str], open_packet: str = OPEN) -> None:
    """Open, then answer the namespace connect as the real server did."""
    await ws.send(open_packet)
    heard.append(str(await ws.recv()))  # "40"
    await ws.send(NAMESPACE)


async def subscribed(ws: ServerConnection, heard: list[str]) -> None:
    await handshake(ws, heard)
    heard.append(str(await ws.recv()))  # 420["subscribe_queue",...]
    await ws.send(ACK)


async def run(
    script: Script, client: Callable[[AsyncQueueSocket, str], Awaitable[None]]
) -> list[str]:
    """Serve ``script`` once; run ``client`` with a socket made for it; what it heard."""
    heard: list[str] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        try:
            await script(ws, heard)
        finally:
            done.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        events: list[Any] = []
        ended: list[bool] = []

        async def on_event(*args: Any) -> None:
            events.append(args)

        async def on_disconnect() -> None:
            ended.append(True)

        socket = AsyncQueueSocket(on_event, on_disconnect)
        socket.events, socket.ended = events, ended  # type: ignore[attr-defined]
        # a bound for a client that would wait for ever (only a failing test waits for it)
        await asyncio.wait_for(client(socket, f"http://127.0.0.1:{port}"), 10)
        await socket.close()
    return heard


def test_it_subscribes_and_hands_on_the_events_in_order_answering_pings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await subscribed(ws, heard)
        for frame in [*EVENTS[:3], PING, *EVENTS[3:6]]:
            await ws.send(frame)
        heard.append(str(await ws.recv()))  # the pong
        await ws.wait_closed()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        await socket.connect(url, "/ws/socket.io", {"Authorization": "Bearer t"}, 5)
        assert await socket.call("subscribe_queue", {"queue_id": "default"}, timeout=5) == []
        while len(socket.events) < 6:  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        expected = [tuple(json.loads(frame[2:])) for frame in EVENTS[:6]]
        assert socket.events == expected  # type: ignore[attr-defined]

    caplog.set_level(logging.DEBUG)
    heard = asyncio.run(run(script, client))
    assert heard == ["40", '420["subscribe_queue",{"queue_id":"default"}]', "3"]
    client_log = "\n".join(r.getMessage() for r in caplog.records if r.name == "websockets.client")
    assert "Authorization" in client_log  # the client logged its handshake...
    assert "Bearer t" not in client_log  # ...without the token


def test_a_refused_namespace_is_an_error() -> None:
    refusal = '44{"message":"Unable to connect"}'

    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await ws.send(OPEN)
        heard.append(str(await ws.recv()))
        await ws.send(refusal)
        await ws.wait_closed()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        with pytest.raises(SocketRefused, match="Unable to connect"):
            await socket.connect(url, "/ws/socket.io", {}, 5)

    asyncio.run(run(script, client))


def test_not_engine_io_is_an_error() -> None:
    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await ws.send('{"type": "status"}')  # ComfyUI's socket, say
        await ws.wait_closed()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        with pytest.raises(SocketRefused, match=r"not an Engine\.IO open packet"):
            await socket.connect(url, "/ws/socket.io", {}, 5)

    asyncio.run(run(script, client))


@pytest.mark.parametrize("end", ["close", "41", "1"])
def test_the_end_of_the_connection_is_reported_once_and_fails_a_pending_call(end: str) -> None:
    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await handshake(ws, heard)
        heard.append(str(await ws.recv()))  # a call that gets no ack
        if end != "close":
            await ws.send(end)
        await ws.close()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        await socket.connect(url, "/ws/socket.io", {}, 5)
        with pytest.raises(SocketRefused, match="ended"):
            await socket.call("subscribe_queue", {"queue_id": "default"}, timeout=5)
        while not socket.ended:  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert socket.ended == [True]  # type: ignore[attr-defined]

    asyncio.run(run(script, client))


def test_a_silent_server_is_left_after_its_ping_interval_and_timeout() -> None:
    """The open packet says how long the server may stay silent: past it, the connection is
    reported ended (here 0 ms, so the loop's next turn; InvokeAI says 25 s + 20 s)."""
    silent_open = json.dumps({**json.loads(OPEN[1:]), "pingInterval": 0, "pingTimeout": 0})

    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await handshake(ws, heard, "0" + silent_open)
        await ws.wait_closed()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        await socket.connect(url, "/ws/socket.io", {}, 5)
        while not socket.ended:  # type: ignore[attr-defined]
            await asyncio.sleep(0)

    asyncio.run(run(script, client))


def test_a_handler_that_raises_does_not_end_the_connection() -> None:
    seen: list[str] = []

    async def script(ws: ServerConnection, heard: list[str]) -> None:
        await handshake(ws, heard)
        for frame in EVENTS[:2]:
            await ws.send(frame)
        await ws.wait_closed()

    async def client(socket: AsyncQueueSocket, url: str) -> None:
        async def failing(name: str, *args: Any) -> None:
            seen.append(name)
            raise RuntimeError("a bug in a handler")

        socket._on_event = failing
        await socket.connect(url, "/ws/socket.io", {}, 5)
        while len(seen) < 2:
            await asyncio.sleep(0)
        assert not socket.ended  # type: ignore[attr-defined]

    asyncio.run(run(script, client))
    assert len(seen) == 2
