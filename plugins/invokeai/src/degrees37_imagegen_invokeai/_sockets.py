"""python-socketio's client as the sync driver uses it: events in the order the server sent
them, each handled where it is read (the async driver speaks socket.io itself: see
:mod:`._asocket`).

Imported only when a socket is opened (see :func:`._events.socket_client`, and the async
driver's ``_connect``).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import engineio
import socketio
from socketio.packet import Packet

__all__ = ["SocketClient"]

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


class _StdJSONPacket(Packet):  # type: ignore[misc]
    """socket.io's packet, decoded by the standard library's C JSON scanner.

    python-engineio's ``loads`` hands every integer to a Python function (to refuse one of
    over 100 digits): a good part of an event's cost. The interpreter refuses integers past
    its own digit limit (``sys.get_int_max_str_digits``, Python 3.11 and later 3.10s), so
    there this guard is not needed; elsewhere the library's packet is used.
    """

    json = json


#: The packets our client reads (``serializer=``).
PACKET: type[Packet] = _StdJSONPacket if hasattr(sys, "get_int_max_str_digits") else Packet


class SocketClient(socketio.Client):  # type: ignore[misc]
    """``socketio.Client`` whose events arrive in order (see :class:`_InOrderEngineIO`),
    read as :data:`PACKET` unless told otherwise (``serializer=``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", PACKET)
        super().__init__(*args, **kwargs)

    def _engineio_client_class(self) -> type[engineio.Client]:
        return _InOrderEngineIO
