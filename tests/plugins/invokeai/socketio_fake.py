"""The tests' name for the fake socket.io endpoint of :mod:`degrees37_imagegen_invokeai.testing`."""

from __future__ import annotations

from degrees37_imagegen_invokeai._fake.socketio import Connection
from degrees37_imagegen_invokeai.testing import (
    WS_PATH,
    ItemIds,
    Recording,
    SocketIOEndpoint,
    SocketIOServer,
    invocation_event,
    recording,
    status_changed,
)

__all__ = [
    "WS_PATH",
    "Connection",
    "ItemIds",
    "Recording",
    "SocketIOEndpoint",
    "SocketIOServer",
    "invocation_event",
    "recording",
    "status_changed",
]
