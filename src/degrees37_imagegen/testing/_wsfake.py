"""The server side of one WebSocket, for the in-process fakes of ComfyUI and InvokeAI.

Both fakes are ``ThreadingHTTPServer``s that upgrade a path to a WebSocket with the
``websockets`` sans-IO :class:`ServerProtocol`. :class:`ServerSocket` is what they share: a
connection that its handler thread reads and any thread may send on, and that a test can
drop like a failing network would.

It needs ``websockets``, which the core does not depend on: only the plugins' ``testing``
modules import this module (the ComfyUI plugin depends on ``websockets``; the InvokeAI
plugin's ``testing`` extra brings it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.protocol import State
from websockets.server import ServerProtocol

__all__ = ["ServerSocket"]


class ServerSocket:
    """One accepted WebSocket: the handler thread reads, any thread may send."""

    def __init__(self, sid: str, conn: socket.socket, rfile: Any, proto: ServerProtocol):
        self.sid = sid
        self.conn = conn
        self.rfile = rfile
        self.proto = proto
        self.lock = threading.Lock()
        self.closed = False
        self.headers: dict[str, str] = {}

    def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                self.conn.sendall(data)
            else:  # the protocol asks to half-close: the closing handshake is done
                self.conn.shutdown(socket.SHUT_WR)

    def _send(self, send: Any, payload: Any) -> bool:
        with self.lock:
            if self.closed:
                return False
            try:
                send(payload)
                self._flush()
                return True
            except (OSError, InvalidState):  # as the real servers' send helpers do
                self.closed = True
                return False

    def send_text(self, text: str) -> bool:
        """Send a text frame; False when the connection is already gone."""
        return self._send(self.proto.send_text, text.encode())

    def send_binary(self, data: bytes) -> bool:
        """Send a binary frame; False when the connection is already gone."""
        return self._send(self.proto.send_binary, data)

    def abort(self) -> None:
        """Drop the TCP connection with no close frame (a network failure)."""
        with self.lock:
            self.closed = True
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)

    def frames(self) -> list[Frame]:
        """Read until frames arrive; ``[]`` once the connection is over."""
        while True:
            try:
                data = self.rfile.read1(65536)
            except (OSError, ValueError):
                data = b""
            with self.lock:
                try:
                    if data:
                        self.proto.receive_data(data)
                    else:
                        self.proto.receive_eof()
                    events = self.proto.events_received()
                    self._flush()  # pongs and the closing handshake
                except OSError:
                    self.closed = True
                    events = []
                if not data or self.closed or self.proto.state is State.CLOSED:
                    self.closed = True
                    return [e for e in events if isinstance(e, Frame)]
            frames = [e for e in events if isinstance(e, Frame)]
            if frames:
                return frames
