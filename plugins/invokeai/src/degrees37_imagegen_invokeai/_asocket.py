"""InvokeAI's socket.io events for the async driver: the few frames it uses, over ``websockets``.

InvokeAI serves Socket.IO v5 over Engine.IO v4 at ``/ws/socket.io``. The async driver needs
only a sliver of that protocol, as the recorded conversation shows
(``rec_socketio_items.json``): the open packet (``0{...}``, with the ping timings), the
namespace connect (``40`` answered ``40{sid}``, or ``44{message}`` when refused), one event
with an ack (``420["subscribe_queue",...]`` answered ``430[...]``), the server's events
(``42["name",{...}]``), its pings (``2``, answered ``3``) and the ends (``41`` and ``1``).
That sliver is spoken here over a ``websockets`` connection, without python-socketio's
async client, which brings aiohttp, python-engineio's servers and requests with it (~0.25 s
of CPU to import) and a task, a packet object and several calls per event.

Events are handed to ``on_event(name, *args)`` in the order they arrive, from the reader
task; ``on_disconnect()`` is awaited once when the connection ends for any reason. Nothing
here reconnects: the driver does (``ensure_events``), and polls meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from degrees37_imagegen.redaction import RedactingLogger
from degrees37_imagegen.tls import ssl_context_for

__all__ = ["AsyncQueueSocket", "SocketRefused"]

log = logging.getLogger(__name__)

#: Frames past this size are refused (InvokeAI's own ``maxPayload`` is 1 MB).
_MAX_FRAME = 16 * 2**20


class SocketRefused(ConnectionError):
    """The server refused the socket.io connection (or answered something else)."""


class AsyncQueueSocket:
    """One socket.io connection to InvokeAI's default namespace (see the module)."""

    def __init__(
        self,
        on_event: Callable[..., Awaitable[None]],
        on_disconnect: Callable[[], Awaitable[None]],
    ) -> None:
        self._on_event = on_event
        self._on_disconnect = on_disconnect
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._next_ack = 0
        self._silence = 45.0  # the server's ping interval + timeout, from its open packet
        self._heard = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    async def connect(
        self, base_url: str, path: str, headers: dict[str, str], timeout: float
    ) -> None:
        """Open the WebSocket, then the namespace; :class:`SocketRefused` if refused."""
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        url = urlunsplit((scheme, parts.netloc, path + "/", "EIO=4&transport=websocket", ""))
        ws = self._ws = await connect(
            url,
            ssl=ssl_context_for(url),
            additional_headers=headers or None,
            open_timeout=timeout,
            close_timeout=2,
            ping_interval=None,  # Engine.IO pings at its own level
            compression=None,  # small JSON frames: deflating them costs more than it saves
            max_size=_MAX_FRAME,
            max_queue=None,  # read everything: the server must never wait for us
            logger=RedactingLogger(logging.getLogger("websockets.client"), headers),
        )
        opened = await asyncio.wait_for(ws.recv(), timeout)
        if not isinstance(opened, str) or not opened.startswith("0{"):
            raise SocketRefused(f"not an Engine.IO open packet: {str(opened)[:80]!r}")
        timings = json.loads(opened[1:])
        self._silence = (
            timings.get("pingInterval", 25000) + timings.get("pingTimeout", 20000)
        ) / 1000
        await ws.send("40")
        while True:
            answer = await asyncio.wait_for(ws.recv(), timeout)
            if not isinstance(answer, str) or answer == "2":
                if answer == "2":
                    await ws.send("3")
                continue
            if answer.startswith("40"):
                break
            raise SocketRefused(f"the namespace was refused: {answer[:200]!r}")
        self._reader = asyncio.ensure_future(self._read(ws))

    async def call(self, event: str, data: Any, timeout: float) -> list[Any]:
        """Send ``event`` with ``data`` and wait for its ack (``TimeoutError`` if none)."""
        ws = self._ws
        if ws is None:
            raise SocketRefused("the socket is not connected")
        ack = self._next_ack
        self._next_ack += 1
        waiter = self._acks[ack] = asyncio.get_running_loop().create_future()
        try:
            await ws.send(f"42{ack}" + json.dumps([event, data], separators=(",", ":")))
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._acks.pop(ack, None)

    async def close(self) -> None:
        """Leave the namespace and close the connection (``on_disconnect`` is not called)."""
        reader, self._reader = self._reader, None
        ws, self._ws = self._ws, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if ws is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await ws.send("41")
            await ws.close()

    async def _read(self, ws: ClientConnection) -> None:
        """Hand each event on, answer pings, resolve acks; on any end, ``on_disconnect``."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        self._watchdog = loop.call_later(self._silence, self._watch, ws)
        try:
            async for frame in ws:
                self._heard = loop.time()
                if not isinstance(frame, str):
                    continue  # binary frames: nothing InvokeAI sends to this namespace
                if frame.startswith("42"):
                    await self._event(frame)
                    # Frames already received are read without a pause: let the tasks the
                    # event woke (a job's wait) run before the next one, as they would
                    # between events that arrive apart.
                    await asyncio.sleep(0)
                elif frame == "2":
                    await ws.send("3")
                elif frame.startswith("43"):
                    self._acked(frame)
                elif frame.startswith("41") or frame == "1":
                    log.info("InvokeAI closed the socket.io connection (%s)", frame)
                    break
        except (WebSocketException, OSError) as exc:
            log.info("InvokeAI's socket.io connection ended (%s)", type(exc).__name__)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
        self._ws = None
        for waiter in self._acks.values():
            if not waiter.done():
                waiter.set_exception(SocketRefused("the connection ended"))
        with contextlib.suppress(WebSocketException, OSError):
            await ws.close()
        await self._on_disconnect()

    def _watch(self, ws: ClientConnection) -> None:
        """End a connection that has been silent for longer than the server's ping interval
        and timeout (one timer, moved on lazily, instead of a timeout on every read)."""
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self._heard
        if quiet >= self._silence:
            log.info("InvokeAI's socket.io connection fell silent for %.0f s", quiet)
            ws.transport.abort()  # the reader then ends, and reports the disconnect
        else:
            self._watchdog = loop.call_later(self._silence - quiet, self._watch, ws)

    async def _event(self, frame: str) -> None:
        # ``42["name", {...}]``: events with an ack id (``42<id>[...]``) are not sent to
        # clients by InvokeAI; they are read the same way.
        start = frame.find("[")
        try:
            event = json.loads(frame[start:]) if start > 0 else None
        except ValueError:
            event = None
        if isinstance(event, list) and event and isinstance(event[0], str):
            try:
                await self._on_event(*event)
            except Exception:  # a handler's bug must not end the connection
                log.exception("handling InvokeAI's %r event failed", event[0])
        else:
            log.debug("an unreadable socket.io event was ignored: %r", frame[:80])

    def _acked(self, frame: str) -> None:
        start = frame.find("[")
        digits = frame[2:start] if start > 0 else ""
        if not digits.isdigit():
            return
        waiter = self._acks.get(int(digits))
        if waiter is not None and not waiter.done():
            try:
                args = json.loads(frame[start:])
            except ValueError:
                args = []
            waiter.set_result(args if isinstance(args, list) else [args])
