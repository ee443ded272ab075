"""A fake of InvokeAI 6.14.2's socket.io endpoint, speaking the frames a real server sent.

InvokeAI serves Socket.IO v5 over Engine.IO v4 at ``/ws/socket.io``. Everything this fake
sends is taken from ``rec_socketio_items.json`` (a whole conversation with a real
server: open packet, namespace answer, the subscription's ack, queue events, a ping) with
only the ids put in, and it refuses a connection the way the server did in
``rec_socketio_handshake_errors.json``. The WebSocket itself is the ``websockets``
library's sans-I/O server protocol over a connection accepted by ``http.server``, so it can
sit behind any ``BaseHTTPRequestHandler`` (the benchmark's fake InvokeAI uses it too), or
alone on a loopback port (:class:`SocketIOServer`, for the tests whose HTTP is mocked).

As in InvokeAI's single-user mode, every socket that connected the namespace gets every
queue event (it joins the ``admin`` room on connecting; the recording
``rec_socketio_no_subscribe.json`` shows events reaching a socket that never subscribed).
"""

from __future__ import annotations

import copy
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from degrees37_imagegen.testing._wsfake import ServerSocket

from .captures import CAPTURES, CaptureFolder

__all__ = [
    "ItemIds",
    "Recording",
    "SocketIOEndpoint",
    "SocketIOServer",
    "WS_PATH",
    "invocation_event",
    "recording",
    "status_changed",
]

WS_PATH = "/ws/socket.io/"
#: The fake's own WebSocket logger: quiet, so the tests see only the client's logs.
_QUIET = logging.getLogger("degrees37_imagegen_invokeai.testing.websockets")
_QUIET.setLevel(logging.WARNING)


class Recording:
    """The frames a real InvokeAI sent (``rec_socketio_items.json``) and its refusal."""

    def __init__(self, folder: CaptureFolder = CAPTURES) -> None:
        doc = json.loads((folder / "rec_socketio_items.json").read_text(encoding="utf-8"))
        self.frames: list[dict[str, Any]] = doc["frames"]
        received = [f["text"] for f in self.frames if f["dir"] == "recv" and f.get("text")]
        self.open_packet: dict[str, Any] = json.loads(received[0][1:])
        self.connect_answer: dict[str, Any] = json.loads(
            next(t for t in received if t.startswith("40"))[2:]
        )
        ack = next(t for t in received if t.startswith("43"))
        self.ack_args: str = ack[ack.index("[") :]  # "[]"
        self.events: list[tuple[str, dict[str, Any]]] = [
            tuple(json.loads(t[2:])) for t in received if t.startswith("42")
        ]
        errors = json.loads(
            (folder / "rec_socketio_handshake_errors.json").read_text(encoding="utf-8")
        )
        #: How the server refused a WebSocket on a path or version it does not serve.
        self.refusal: dict[str, Any] = errors["answers"][0]

    def payload(self, name: str, **where: Any) -> dict[str, Any]:
        """A deep copy of the first recorded ``name`` event whose data has ``where``."""
        for event, data in self.events:
            if event == name and all(data.get(k) == v for k, v in where.items()):
                return copy.deepcopy(data)
        raise KeyError(f"no recorded {name} event with {where}")


_RECORDING: list[Recording] = []


def recording() -> Recording:
    """The recording, read once."""
    if not _RECORDING:
        _RECORDING.append(Recording())
    return _RECORDING[0]


@dataclass(frozen=True)
class ItemIds:
    """What identifies a queue item in its events."""

    item_id: int
    batch_id: str
    session_id: str
    origin: str | None = None
    destination: str | None = None


def _identify(data: dict[str, Any], item: ItemIds) -> dict[str, Any]:
    data.update(
        timestamp=int(time.time()),
        item_id=item.item_id,
        batch_id=item.batch_id,
        session_id=item.session_id,
        origin=item.origin,
        destination=item.destination,
    )
    return data


def status_changed(
    item: ItemIds,
    status: str,
    *,
    error: tuple[str, str] | None = None,
    rec: Recording | None = None,
) -> dict[str, Any]:
    """``queue_item_status_changed`` for ``item``: the recorded one of that status.

    The server sends none for ``pending`` (a new item is announced by ``batch_enqueued``).
    """
    rec = rec or recording()
    data = _identify(rec.payload("queue_item_status_changed", status=status), item)
    if error is not None:
        data["error_type"], data["error_message"] = error
    batch = data["batch_status"]
    batch.update(batch_id=item.batch_id, origin=item.origin, destination=item.destination)
    queue = data["queue_status"]
    if queue.get("item_id") is not None:  # set while the item runs, null once it ended
        queue.update(item_id=item.item_id, batch_id=item.batch_id, session_id=item.session_id)
    return data


def invocation_event(
    name: str,
    item: ItemIds,
    node_id: str,
    node: dict[str, Any],
    *,
    message: str | None = None,
    percentage: float | None = None,
    result: dict[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    rec: Recording | None = None,
) -> dict[str, Any]:
    """``invocation_started``/``_progress``/``_complete``/``_error`` for node ``node_id``.

    The recorded payload with the node put in (``invocation`` is the prepared copy of the
    node, ``invocation_source_id`` the graph's node id). ``invocation_progress`` with a
    ``percentage`` (denoising) is not in any recording (the recording server had no
    model): its fields are those of ``InvocationProgressEvent`` in InvokeAI's source.
    """
    rec = rec or recording()
    data = _identify(rec.payload(name), item)
    data["invocation"] = {**node, "id": str(uuid.uuid4())}
    data["invocation_source_id"] = node_id
    if name == "invocation_progress":
        data["message"] = message if message is not None else data["message"]
        data["percentage"] = percentage
    if name == "invocation_complete":
        data["result"] = result if result is not None else data["result"]
    if name == "invocation_error" and error is not None:
        data["error_type"], data["error_message"] = error
    return data


class Connection(ServerSocket):
    """One accepted socket.io socket: its handler thread reads, any thread may send."""

    def __init__(self, conn: socket.socket, rfile: Any, proto: ServerProtocol) -> None:
        super().__init__(uuid.uuid4().hex[:20], conn, rfile, proto)
        #: The namespace "/" is connected (it then gets queue events).
        self.connected = False
        self.subscribed: list[str] = []
        #: Text frames the client sent, in order.
        self.received: list[str] = []
        self.pongs = 0


class SocketIOEndpoint:
    """The socket.io side of a fake InvokeAI: accepts sockets, emits queue events.

    Knobs: ``refuse`` (answer upgrades as the server answered a bad handshake),
    ``ack_subscribe`` (answer ``subscribe_queue``'s ack), ``ping_interval`` and
    ``ping_timeout`` (milliseconds, put in the open packet). ``on_subscribe`` is called
    with the queue id when a socket subscribes (the fake InvokeAI logs it among requests).
    """

    def __init__(self, rec: Recording | None = None) -> None:
        self.rec = rec or recording()
        self.refuse = False
        self.ack_subscribe = True
        self.ping_interval: int = self.rec.open_packet["pingInterval"]
        self.ping_timeout: int = self.rec.open_packet["pingTimeout"]
        self.on_subscribe: Callable[[str], None] | None = None
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        #: Every socket ever accepted, in order.
        self.connections: list[Connection] = []
        #: Upgrade requests refused.
        self.refused = 0
        #: Every event emitted: (name, data, how many sockets it reached).
        self.emitted: list[tuple[str, dict[str, Any], int]] = []

    # -- for tests -----------------------------------------------------------------------

    @property
    def live(self) -> list[Connection]:
        """The sockets still open."""
        with self.lock:
            return [c for c in self.connections if not c.closed]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (checked whenever a socket changes) or ``timeout``."""
        end = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(min(remaining, 0.05))
            return True

    def emit(self, name: str, data: dict[str, Any]) -> int:
        """Send the event to every socket that connected the namespace; return how many."""
        text = "42" + json.dumps([name, data], separators=(",", ":"))
        with self.lock:
            targets = [c for c in self.connections if c.connected and not c.closed]
        sent = sum(1 for c in targets if c.send_text(text))
        with self.lock:
            self.emitted.append((name, data, sent))
        return sent

    def ping(self) -> None:
        """Send an Engine.IO ping (``2``) to every open socket, as the server does."""
        for conn in self.live:
            conn.send_text("2")

    def drop(self) -> int:
        """Cut every open socket's TCP connection (no close frame); return how many."""
        dropped = self.live
        for conn in dropped:
            conn.abort()
        with self.changed:
            self.changed.notify_all()
        return len(dropped)

    # -- serving -------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Serve one upgrade request on ``handler``'s connection until the socket closes."""
        handler.close_connection = True
        if self.refuse:
            with self.changed:
                self.refused += 1
                self.changed.notify_all()
            refusal = self.rec.refusal
            handler.send_response(refusal["status"])
            for key, value in refusal["headers"].items():
                handler.send_header(key, value)
            handler.end_headers()
            return
        # The protocol parses the handshake itself: give it the request as it came.
        raw = f"GET {handler.path} HTTP/1.1\r\n" + "".join(
            f"{key}: {value}\r\n" for key, value in handler.headers.items()
        )
        proto = ServerProtocol(max_size=2**20, logger=_QUIET)
        proto.receive_data((raw + "\r\n").encode("latin-1"))
        (request,) = proto.events_received()
        assert isinstance(request, Request)
        proto.send_response(proto.accept(request))
        handler.connection.sendall(b"".join(proto.data_to_send()))
        handler.wfile.flush()
        conn = Connection(handler.connection, handler.rfile, proto)
        conn.headers = dict(handler.headers.items())
        with self.changed:
            self.connections.append(conn)
            self.changed.notify_all()
        opened = dict(self.rec.open_packet)
        opened.update(sid=conn.sid, pingInterval=self.ping_interval, pingTimeout=self.ping_timeout)
        conn.send_text("0" + json.dumps(opened, separators=(",", ":")))
        try:
            while True:
                frames = self.frames_or_none(conn)
                if frames is None:
                    break
                for frame in frames:
                    if frame.opcode is Opcode.TEXT:
                        self._packet(conn, bytes(frame.data).decode())
        finally:
            with self.changed:
                conn.closed = True
                self.changed.notify_all()

    @staticmethod
    def frames_or_none(conn: Connection) -> list[Frame] | None:
        """The next frames of ``conn``; ``None`` once it is closed."""
        frames = conn.frames()
        if conn.closed and not frames:
            return None
        return frames

    def _packet(self, conn: Connection, text: str) -> None:
        with self.changed:
            conn.received.append(text)
            self.changed.notify_all()
        if text == "3":
            with self.changed:
                conn.pongs += 1
                self.changed.notify_all()
        elif text == "40" or text.startswith("40{"):
            # "40" connects the namespace "/"; python-socketio's client sends "40{}" (an
            # empty auth payload), which InvokeAI's python-socketio server accepts alike.
            answer = {**self.rec.connect_answer, "sid": uuid.uuid4().hex[:20]}
            with self.changed:
                conn.connected = True
            conn.send_text("40" + json.dumps(answer, separators=(",", ":")))
        elif text == "41":
            with self.changed:
                conn.connected = False
        elif text.startswith("42"):
            body = text[2:]
            digits = len(body) - len(body.lstrip("0123456789"))
            ack_id, args = body[:digits], json.loads(body[digits:])
            if args and args[0] == "subscribe_queue":
                queue_id = str(args[1]["queue_id"])
                with self.changed:
                    conn.subscribed.append(queue_id)
                    self.changed.notify_all()
                if self.on_subscribe is not None:
                    self.on_subscribe(queue_id)
                if ack_id and self.ack_subscribe:
                    conn.send_text(f"43{ack_id}{self.rec.ack_args}")


class SocketIOServer:
    """A :class:`SocketIOEndpoint` alone on ``127.0.0.1`` (for tests whose HTTP is mocked).

    Any other request answers 404.
    """

    def __init__(self, endpoint: SocketIOEndpoint | None = None) -> None:
        self.endpoint = endpoint or SocketIOEndpoint()
        served = self.endpoint

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.startswith(WS_PATH) and (
                    self.headers.get("Upgrade", "").lower() == "websocket"
                ):
                    served.handle(self)
                    return
                self.send_response(404)
                self.send_header("content-length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=lambda: self._httpd.serve_forever(poll_interval=0.05), daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> SocketIOServer:
        """Serve on its port; returns the server."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cut the sockets and stop serving."""
        self.endpoint.drop()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
