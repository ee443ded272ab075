"""python-socketio's clients as this plugin uses them: events in the order the server sent
them, each handled where it is read.

Imported only when a socket is opened (see :func:`._events.socket_client`, and the async
driver's ``_connect``).
"""

from __future__ import annotations

import threading
from typing import Any

import engineio
import socketio

__all__ = ["AsyncSocketClient", "SocketClient"]

#: How long closing waits for the socket's reader thread to end (seconds).
_CLOSE_WAIT = 5.0


class _InOrderEngineIO(engineio.Client):  # type: ignore[misc]
    """python-engineio's client, with two fixes for how this plugin uses it.

    It runs each message's handler on a new thread, so events could be seen out of order
    (step 12 before step 11); ours only files the event and returns, so it runs on the
    reader thread, in the order the server sent them. And its writer thread may take the
    close packet and the end marker behind it in one go, then wait for another packet for
    ``pingInterval + 5`` seconds while ``disconnect`` waits for it: a second end marker
    ends it at once.
    """

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return super()._trigger_event(event, *args, **kwargs)

    def disconnect(self, abort: bool = False, reason: Any = None) -> None:
        queue, reader = getattr(self, "queue", None), getattr(self, "read_loop_task", None)
        super().disconnect(abort=True, reason=reason)
        if queue is not None:
            queue.put(None)
        if not abort and reader is not None and reader is not threading.current_thread():
            reader.join(_CLOSE_WAIT)


class SocketClient(socketio.Client):  # type: ignore[misc]
    """``socketio.Client`` whose events arrive in order (see :class:`_InOrderEngineIO`)."""

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIO


class _InOrderAsyncEngineIO(engineio.AsyncClient):  # type: ignore[misc]
    """python-engineio's async client, each message handled in its read loop.

    It starts a task per message, so events could be seen out of order, and each one costs
    the event loop a task; ours only files the event and returns (it never waits for the
    socket), so it is awaited in the read loop, in the order the server sent them.
    """

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        return await super()._trigger_event(event, *args, **kwargs)


class AsyncSocketClient(socketio.AsyncClient):  # type: ignore[misc]
    """``socketio.AsyncClient`` whose events arrive in order (see
    :class:`_InOrderAsyncEngineIO`)."""

    def _engineio_client_class(self) -> type[engineio.AsyncClient]:
        return _InOrderAsyncEngineIO
