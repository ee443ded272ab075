"""InvokeAI's socket.io events: one connection per generator, shared by every thread.

InvokeAI pushes queue events over Socket.IO v5 on Engine.IO v4 at ``/ws/socket.io``
(``invokeai/app/api/sockets.py``). Over the WebSocket transport the conversation is, as
recorded from a real 6.14.2 (``tests/plugins/invokeai/captures/rec_socketio_*.json``)::

    server  0{"sid":...,"upgrades":[],"pingTimeout":20000,"pingInterval":25000,...}
    client  40                                          connect the namespace "/"
    server  40{"sid":...}
    client  420["subscribe_queue",{"queue_id":"default"}]   (ack id 0)
    server  430[]                                       the subscription is in place
    server  42["queue_item_status_changed",{"item_id":134,"status":"in_progress",...}]
    server  42["invocation_started",{...}]  42["invocation_progress",{...}] ...
    server  42["queue_item_status_changed",{"item_id":134,"status":"completed",...}]
    server  2                                           ping, every pingInterval
    client  3                                           pong

:class:`QueueEvents` owns the connection. A reader thread connects, subscribes, answers
pings and hands each event to the :class:`ItemWatch` of its ``item_id``; when the socket
drops it reconnects in the background (backing off while the server refuses). Events only
make waiting shorter: the queue item itself (``GET /api/v1/queue/default/i/{id}``) stays
the source of truth, and a watch says "look now" whenever an event or the socket's state
means the item may have changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from degrees37_imagegen.progress import Progress
from degrees37_imagegen.redaction import RedactingLogger, redact_url

__all__ = [
    "ItemWatch",
    "Packet",
    "QueueEvents",
    "SocketIOError",
    "event_progress",
    "parse_packet",
    "socket_url",
]

log = logging.getLogger(__name__)

#: The queue this plugin uses (InvokeAI has only ``default``).
QUEUE_ID = "default"
#: Statuses after which a queue item does not change any more.
_TERMINAL = frozenset({"completed", "failed", "canceled"})
#: Events a waiting thread turns into progress reports.
_PROGRESS_EVENTS = frozenset(
    {"queue_item_status_changed", "invocation_started", "invocation_progress"}
)
#: Delays before reconnecting after consecutive failures (then the last one, repeated).
_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: Events kept for a watch whose thread has not read them yet (older ones are dropped).
_MAX_QUEUED = 512
#: The reader looks up from the socket at least this often (to notice it should stop).
_READ_SLICE = 5.0
#: A connection that lived this long (seconds) was healthy: reconnect at once when it drops.
#: One that drops sooner counts as a failed attempt (backing off), not to hammer a server
#: that accepts sockets and then closes them.
_HEALTHY = 10.0


#: websockets logs every handshake header at DEBUG (the token too): hide secrets first.
_WS_LOG = RedactingLogger(logging.getLogger("websockets.client"))


class SocketIOError(Exception):
    """The socket.io conversation went wrong (refused, malformed, closed by the server)."""


def socket_url(base_url: str) -> str:
    """The socket.io WebSocket URL of the InvokeAI at ``base_url``.

    ``http://host:9090`` gives ``ws://host:9090/ws/socket.io/?EIO=4&transport=websocket``;
    ``https`` gives ``wss``, and a path (a server behind a proxy under a sub-path) is kept,
    as InvokeAI mounts socket.io under its ``base_url``.
    """
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + "/ws/socket.io/"
    return urlunsplit((scheme, parts.netloc, path, "EIO=4&transport=websocket", ""))


@dataclass(frozen=True)
class Packet:
    """One Engine.IO packet; ``sio_type`` and the rest only for Socket.IO messages (``4``).

    Engine.IO types: ``0`` open, ``1`` close, ``2`` ping, ``3`` pong, ``4`` message, ``6``
    noop. Socket.IO types: ``0`` connect, ``1`` disconnect, ``2`` event, ``3`` ack, ``4``
    connect error.
    """

    eio_type: str
    sio_type: str | None = None
    namespace: str = "/"
    ack_id: int | None = None
    data: Any = None


def parse_packet(text: str) -> Packet | None:
    """Decode one text frame; ``None`` when it is not a packet we can read."""
    if not text or text[0] not in "0123456":
        return None
    eio_type, rest = text[0], text[1:]
    if eio_type == "0":
        try:
            return Packet("0", data=json.loads(rest))
        except ValueError:
            return None
    if eio_type != "4":
        return Packet(eio_type, data=rest or None)
    if not rest or rest[0] not in "0123456":
        return None
    sio_type, rest = rest[0], rest[1:]
    # Binary packets (5, 6) carry "<attachments>-" before the namespace.
    if sio_type in "56":
        count, dash, after = rest.partition("-")
        if not dash or not count.isdigit():
            return None
        rest = after
    namespace = "/"
    if rest.startswith("/"):
        namespace, comma, after = rest.partition(",")
        rest = after if comma else ""
    digits = 0
    while digits < len(rest) and rest[digits].isdigit():
        digits += 1
    ack_id = int(rest[:digits]) if digits else None
    payload = rest[digits:]
    data: Any = None
    if payload:
        try:
            data = json.loads(payload)
        except ValueError:
            return None
    return Packet("4", sio_type, namespace, ack_id, data)


def event_progress(
    name: str, data: Mapping[str, Any], *, steps: int | None, generator: str | None
) -> Progress | None:
    """The progress report an event about our item means, if any.

    ``invocation_started`` is the node that runs now; ``invocation_progress`` with a
    ``percentage`` (0..1, denoising) becomes a step of ``steps`` (or of 100 when the
    number of steps is not known); without one (e.g. ``Saving image``) it is a message.
    Status changes are reported by the caller, which also sees them from polling.
    """
    source = data.get("invocation_source_id")
    invocation = data.get("invocation")
    node_type = invocation.get("type") if isinstance(invocation, Mapping) else None
    node = str(source) if source is not None else (str(node_type) if node_type else None)
    if name == "invocation_started":
        message = str(node_type) if node_type and node_type != node else "started"
        return Progress("running", message, node=node, generator=generator)
    if name != "invocation_progress":
        return None
    text = str(data.get("message") or "")
    percentage = data.get("percentage")
    if isinstance(percentage, (int, float)) and not isinstance(percentage, bool):
        total = steps if steps and steps > 0 else 100
        step = min(total, max(0, round(float(percentage) * total)))
        message = f"{text} step {step}/{total}".strip()
        return Progress("step", message, step=step, total=total, node=node, generator=generator)
    return Progress("running", text or "working", node=node, generator=generator)


class ItemWatch:
    """What the socket said about one queue item, for the thread waiting for it.

    The reader thread :meth:`push`-es events; the waiting thread waits on :attr:`wake`,
    then :meth:`drain`-s them. :attr:`look` is set when the item may have ended (a final
    status, the queue cleared or canceled in bulk, the socket lost): poll it now.
    """

    def __init__(self, hub: QueueEvents, item_id: int) -> None:
        self.hub = hub
        self.item_id = item_id
        #: Set whenever there is something to read or to do.
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._events: deque[tuple[str, dict[str, Any]]] = deque(maxlen=_MAX_QUEUED)
        self._look = False
        #: The final status an event announced (``completed``, ``failed``, ``canceled``).
        self.ended: str | None = None

    def push(self, name: str, data: dict[str, Any]) -> None:
        """Take an event about this item (reader thread)."""
        ended = name == "queue_item_status_changed" and data.get("status") in _TERMINAL
        if not ended and name not in _PROGRESS_EVENTS:
            return  # e.g. invocation_complete: nothing to report, nothing to look at
        with self._lock:
            if ended:
                self.ended = str(data["status"])
                self._look = True
            if name in _PROGRESS_EVENTS:
                self._events.append((name, data))
        self.wake.set()

    def poke(self) -> None:
        """Ask the waiting thread to poll the item now (reader thread, or close)."""
        with self._lock:
            self._look = True
        self.wake.set()

    def drain(self) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """The events not read yet, and whether to poll now (clears both)."""
        with self._lock:
            self.wake.clear()
            events = list(self._events)
            self._events.clear()
            look, self._look = self._look, False
        return events, look

    def close(self) -> None:
        """Stop watching the item."""
        self.hub._forget(self)

    def __enter__(self) -> ItemWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


Connector = Callable[..., ClientConnection]


class QueueEvents:
    """One socket.io connection to InvokeAI, subscribed to the queue, with a reader thread.

    Nothing happens before :meth:`start`. ``open_timeout`` bounds each connection attempt
    (connecting, the namespace, the subscription's ack); ``connect`` is
    ``websockets.sync.client.connect`` (tests may wrap it). The token, when there is one,
    goes in the handshake's ``Authorization`` header, as on every HTTP request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        open_timeout: float = 10.0,
        generator: str | None = None,
        connect: Connector = connect,
    ) -> None:
        self.url = socket_url(base_url)
        self.shown_url = redact_url(self.url)
        self.generator = generator
        self.open_timeout = open_timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._connect = connect
        self._lock = threading.Lock()
        self._watches: dict[int, set[ItemWatch]] = {}
        self._ws: ClientConnection | None = None
        self._live = False
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._first_attempt = threading.Event()
        #: Counters for logs, tests and the e2e check: connections made, connections lost,
        #: failed attempts, events received, pings answered.
        self.connections = 0
        self.drops = 0
        self.failures = 0
        self.events_received = 0
        self.pings_answered = 0
        #: Why the last attempt failed or the last connection ended (no URL, no secret).
        self.last_error: str | None = None

    # -- for the waiting threads ---------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the socket is connected and subscribed right now."""
        return self._live

    def start(self) -> bool:
        """Start the reader (once); the first call waits for its first attempt.

        Returns whether the socket is live. Never raises: without a socket, items are
        followed by polling.
        """
        with self._lock:
            if self._closing.is_set():
                return False
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"invokeai-events-{self.generator}", daemon=True
                )
                self._thread.start()
        self._first_attempt.wait(self.open_timeout + 1.0)
        return self._live

    def watch(self, item_id: int) -> ItemWatch:
        """Start collecting the events of ``item_id``; close the watch when done."""
        watch = ItemWatch(self, item_id)
        with self._lock:
            self._watches.setdefault(item_id, set()).add(watch)
        return watch

    def _forget(self, watch: ItemWatch) -> None:
        with self._lock:
            watches = self._watches.get(watch.item_id)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[watch.item_id]

    def _poke_all(self) -> None:
        with self._lock:
            watches = [w for ws in self._watches.values() for w in ws]
        for watch in watches:
            watch.poke()

    def close(self, wait: bool = True) -> None:
        """Close the socket and stop the reader thread (waiting threads go on polling).

        ``wait=False`` cuts the connection and returns without waiting for the thread: for
        a generator that is garbage-collected without being closed.
        """
        self._closing.set()
        if not wait:
            with self._lock:
                ws = self._ws
            if ws is not None:
                with contextlib.suppress(OSError):
                    ws.socket.shutdown(socket.SHUT_RDWR)
            self._poke_all()
            return
        with self._lock:
            ws, thread = self._ws, self._thread
            self._live = False
        if ws is not None:
            try:
                ws.close()
            except Exception:  # closing a broken socket may fail; it is gone either way
                log.debug("closing the socket.io connection failed", exc_info=True)
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.open_timeout + 2.0)
            if thread.is_alive():
                log.warning("the socket.io reader for %s did not stop", self.shown_url)
        self._first_attempt.set()
        self._poke_all()

    # -- the reader thread ---------------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # attempts in a row that did not get a healthy socket
        while not self._closing.is_set():
            connected: float | None = None  # when the socket went live
            try:
                with self._connect(
                    self.url,
                    additional_headers=self._headers or None,
                    open_timeout=self.open_timeout,
                    close_timeout=1.0,
                    max_size=64 * 2**20,  # progress events may carry preview images
                    compression=None,
                    logger=_WS_LOG,
                ) as ws:
                    ping_wait = self._handshake(ws)
                    self._went_live(ws)
                    connected = time.monotonic()
                    try:
                        self._read(ws, ping_wait)
                    finally:
                        self._went_down()
            except Exception as exc:  # any failure means: poll, and try again later
                self.last_error = _describe(exc)
            if self._closing.is_set():
                break
            if connected is not None and time.monotonic() - connected >= _HEALTHY:
                log.warning(
                    "lost InvokeAI's socket.io events at %s (%s); reconnecting, polling "
                    "queue items meanwhile",
                    self.shown_url,
                    self.last_error,
                )
                failures = 0
                continue  # at once; back off only if that fails
            failures += 1
            self.failures += 1
            if failures == 1 and not self.connections:
                log.warning(
                    "InvokeAI's socket.io events at %s are unavailable (%s); following queue "
                    "items by polling, and retrying in the background",
                    self.shown_url,
                    self.last_error,
                )
            else:
                log.debug("socket.io at %s: %s", self.shown_url, self.last_error)
            self._first_attempt.set()
            self._closing.wait(_BACKOFF[min(failures, len(_BACKOFF)) - 1])
        self._first_attempt.set()

    def _handshake(self, ws: ClientConnection) -> float:
        """Open the namespace and subscribe; return how long to wait for a ping."""
        deadline = time.monotonic() + self.open_timeout

        def receive() -> Packet:
            while True:
                raw = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
                packet = parse_packet(raw) if isinstance(raw, str) else None
                if packet is None:
                    continue
                if packet.eio_type == "2":
                    ws.send("3")
                    self.pings_answered += 1
                    continue
                if packet.eio_type == "1":
                    raise SocketIOError("the server closed the connection")
                return packet

        opened = receive()
        if opened.eio_type != "0" or not isinstance(opened.data, dict):
            raise SocketIOError("no Engine.IO open packet")
        interval = _seconds(opened.data.get("pingInterval"), 25.0)
        timeout = _seconds(opened.data.get("pingTimeout"), 20.0)
        ws.send("40")
        while True:
            packet = receive()
            if packet.sio_type == "0" and packet.namespace == "/":
                break
            if packet.sio_type == "4":
                raise SocketIOError(f"the server refused the connection: {packet.data!r}")
        ws.send('420["subscribe_queue",' + json.dumps({"queue_id": QUEUE_ID}) + "]")
        while True:
            packet = receive()
            if packet.sio_type == "3" and packet.ack_id == 0:
                return interval + timeout
            if packet.sio_type == "2":
                self._event(packet)
            elif packet.sio_type in ("1", "4"):
                raise SocketIOError("the server closed the namespace")

    def _went_live(self, ws: ClientConnection) -> None:
        with self._lock:
            if self._closing.is_set():
                raise SocketIOError("closing")
            self._ws = ws
            self._live = True
            self.connections += 1
            reconnected = self.connections > 1
        self._first_attempt.set()
        if reconnected:
            log.info("InvokeAI's socket.io events at %s are back", self.shown_url)
        else:
            log.debug("subscribed to InvokeAI's queue events at %s", self.shown_url)

    def _went_down(self) -> None:
        with self._lock:
            self._ws = None
            self._live = False
            if not self._closing.is_set():
                self.drops += 1
        self._poke_all()  # events may be lost from here on: look at the items now

    def _read(self, ws: ClientConnection, ping_wait: float) -> None:
        """Handle frames until the connection ends; the server must ping every
        ``ping_wait`` seconds (``pingInterval + pingTimeout``), or it is taken for gone."""
        heard = time.monotonic()
        while not self._closing.is_set():
            silent_for = time.monotonic() - heard
            if silent_for >= ping_wait:
                raise SocketIOError(f"no ping from the server in {ping_wait:.0f}s")
            try:
                raw = ws.recv(timeout=min(ping_wait - silent_for, _READ_SLICE))
            except TimeoutError:
                continue
            heard = time.monotonic()
            if not isinstance(raw, str):
                continue  # binary attachments: InvokeAI sends none to a queue subscriber
            packet = parse_packet(raw)
            if packet is None:
                continue
            if packet.eio_type == "2":
                ws.send("3")
                self.pings_answered += 1
            elif packet.eio_type == "1":
                raise SocketIOError("the server closed the connection")
            elif packet.sio_type == "2":
                self._event(packet)
            elif packet.sio_type in ("1", "4") and packet.namespace == "/":
                raise SocketIOError("the server closed the namespace")

    def _event(self, packet: Packet) -> None:
        data = packet.data
        if packet.namespace != "/" or not isinstance(data, list) or not data:
            return
        self.events_received += 1
        name = data[0]
        payload = data[1] if len(data) > 1 and isinstance(data[1], dict) else {}
        if payload.get("queue_id", QUEUE_ID) != QUEUE_ID:
            return
        if name == "queue_cleared":
            self._poke_all()  # items are deleted without a status change of their own
            return
        if name == "queue_items_canceled":
            ids = payload.get("canceled_item_ids")
            if not isinstance(ids, list) or not ids:
                self._poke_all()  # another user's view: no ids, so everyone looks
                return
            for item_id in ids:
                self._push(item_id, "queue_item_status_changed", {"status": "canceled"})
            return
        self._push(payload.get("item_id"), str(name), payload)

    def _push(self, item_id: Any, name: str, payload: dict[str, Any]) -> None:
        if not isinstance(item_id, int) or isinstance(item_id, bool):
            return
        with self._lock:
            watches = list(self._watches.get(item_id, ()))
        for watch in watches:
            watch.push(name, payload)


def _seconds(milliseconds: Any, default: float) -> float:
    if isinstance(milliseconds, (int, float)) and milliseconds > 0:
        return float(milliseconds) / 1000.0
    return default


def _describe(exc: BaseException) -> str:
    """A short reason for logs: never the URL (it may hold a password) nor a header."""
    if isinstance(exc, InvalidStatus):
        return f"the server answered HTTP {exc.response.status_code}, not a WebSocket"
    if isinstance(exc, SocketIOError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__
