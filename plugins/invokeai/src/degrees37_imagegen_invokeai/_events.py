"""InvokeAI's socket.io events: one connection per generator, shared by every thread.

The connection is python-socketio's client (``socketio.Client``) over the WebSocket
transport at ``/ws/socket.io``, as InvokeAI serves it. On connecting it emits
``subscribe_queue {"queue_id": "default"}``; the socket is *live* once the server has
acknowledged that. :class:`QueueEvents` keeps it open on a background thread (reconnecting
after a drop, backing off while the server refuses: :func:`~._schedule.reconnect_delay`)
and hands each event to the :class:`ItemWatch` of its item (:mod:`._messages` decides
which). A watch says "look now" whenever an event or the socket's state means the item
may have changed; the item is then read over HTTP, unless the events said it completed
and named its image (:func:`~._queue.told_update`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from degrees37_imagegen.redaction import RedactingLogger, redact_url

from ._messages import QUEUE_ID, News, read_event
from ._schedule import reconnect_delay

if TYPE_CHECKING:
    import socketio

__all__ = ["ItemWatch", "QueueEvents", "socket_address", "socket_client"]

log = logging.getLogger(__name__)

#: Items whose ``invocation_complete`` and status events are kept until a watch starts
#: (oldest go).
_MAX_UNWATCHED = 64
#: The events kept for an item no one watches yet: they name its image, and its end.
_KEPT_UNWATCHED = frozenset({"invocation_complete", "queue_item_status_changed"})
#: Events kept for a watch whose thread has not read them yet (older ones are dropped).
_MAX_QUEUED = 512
#: A connection that lived this long (seconds) was healthy: reconnect at once when it drops.
#: One that drops sooner counts as a failed attempt (backing off), not to hammer a server
#: that accepts sockets and then closes them.
_HEALTHY = 10.0


class _LibraryLog(RedactingLogger):
    """The log of python-socketio and python-engineio, one level quieter.

    They log every packet and event at INFO and a dropped socket at WARNING; this module
    says what matters (events lost, back) itself. They also log the URL they connect to
    (it may hold a password): secrets are hidden before any handler sees them.
    """

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at DEBUG what the libraries say at INFO, at INFO what they warn of."""
        quieter = _QUIETER.get(level, level)
        if self.logger.isEnabledFor(quieter):
            super().log(quieter, msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        """What the libraries say of every packet: at DEBUG (checked first: it is seldom
        on, and they say it twice an event)."""
        if self.logger.isEnabledFor(logging.DEBUG):
            super().log(logging.DEBUG, msg, *args, **kwargs)


#: The level :class:`_LibraryLog` logs each of the libraries' levels at.
_QUIETER = {logging.INFO: logging.DEBUG, logging.WARNING: logging.INFO}


_SIO_LOG = _LibraryLog(logging.getLogger(__name__ + ".socketio"))


ClientFactory = Callable[..., "socketio.Client"]


def socket_client(**options: Any) -> socketio.Client:
    """A :class:`~._sockets.SocketClient`: python-socketio is imported only when a socket
    is opened (importing it, with python-engineio and requests behind it, costs ~0.2 s of
    CPU; ~0.4 s where aiohttp is installed, which python-engineio imports too)."""
    from ._sockets import SocketClient

    return SocketClient(**options)


def socket_address(base_url: str) -> tuple[str, str]:
    """The URL to give ``socketio.Client.connect`` and its ``socketio_path``.

    InvokeAI mounts socket.io at ``/ws/socket.io`` under its root; a server behind a proxy
    under a sub-path keeps that path in front.
    """
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/") + "/ws/socket.io"
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")), path


class ItemWatch:
    """What the socket said about one queue item, for the thread waiting for it.

    The socket's threads :meth:`push` news; the waiting thread waits on :attr:`wake`, then
    :meth:`take` s it. ``look`` is set when the item may have ended (a final status, the
    queue cleared, the socket lost): read the item now.
    """

    def __init__(self, hub: QueueEvents, item_id: int) -> None:
        self.hub = hub
        self.item_id = item_id
        #: Set whenever there is something to read or to do.
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._events: deque[tuple[str, Mapping[str, Any]]] = deque(maxlen=_MAX_QUEUED)
        self._look = False

    def push(self, news: News) -> None:
        """Take news about this item (socket threads)."""
        with self._lock:
            if news.look:
                self._look = True
            if news.event is not None:
                self._events.append(news.event)
        self.wake.set()

    def poke(self) -> None:
        """Ask the waiting thread to read the item now."""
        self.push(News(self.item_id, look=True))

    def take(self) -> tuple[list[tuple[str, Mapping[str, Any]]], bool]:
        """The events not read yet, and whether to read the item now (clears both)."""
        with self._lock:
            self.wake.clear()
            events = list(self._events)
            self._events.clear()
            look, self._look = self._look, False
        return events, look

    def close(self) -> None:
        """Stop watching the item."""
        self.hub._forget(self)


class QueueEvents:
    """One socket.io connection to InvokeAI, subscribed to the queue, on its own thread.

    Nothing happens before :meth:`start`. ``open_timeout`` bounds each attempt (the
    WebSocket, the namespace, the subscription's ack). The token, when there is one, goes
    in the handshake's ``Authorization`` header, as on every HTTP request.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        open_timeout: float = 10.0,
        generator: str | None = None,
        client_factory: ClientFactory = socket_client,
    ) -> None:
        self.url, self.path = socket_address(base_url)
        self.shown_url = redact_url(self.url + self.path)
        self.generator = generator
        self.open_timeout = open_timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._factory = client_factory
        self._lock = threading.Lock()
        self._watches: dict[int, set[ItemWatch]] = {}
        #: The last ``invocation_complete`` and status events of items no one watched yet:
        #: a fast item can finish before its job starts watching it.
        self._unwatched: OrderedDict[int, list[News]] = OrderedDict()
        self._sio: socketio.Client | None = None
        self._live = False
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._first_attempt = threading.Event()
        self._acked = threading.Event()
        self._down = threading.Event()
        self._refused: str | None = None
        #: Counters for logs and tests: connections made and lost, failed attempts,
        #: events received.
        self.connections = 0
        self.drops = 0
        self.failures = 0
        self.events_received = 0
        #: Why the last attempt failed or the last connection ended (no URL, no secret).
        self.last_error: str | None = None

    # -- for the waiting threads ---------------------------------------------------------

    @property
    def live(self) -> bool:
        """Whether the socket is connected and subscribed right now."""
        return self._live

    def start(self) -> bool:
        """Start the connection's thread (once); the first call waits for its first attempt.

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
        self._first_attempt.wait(self.open_timeout * 2 + 1.0)
        return self._live

    def watch(self, item_id: int) -> ItemWatch:
        """Start collecting the events of ``item_id``; close the watch when done."""
        watch = ItemWatch(self, item_id)
        with self._lock:
            self._watches.setdefault(item_id, set()).add(watch)
            early = self._unwatched.pop(item_id, [])
        for news in early:
            watch.push(news)
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
        """Close the socket and stop the thread (waiting threads go on polling)."""
        self._closing.set()
        self._down.set()
        self._acked.set()  # an attempt waiting for its subscription gives up now
        with self._lock:
            sio, thread = self._sio, self._thread
            self._live = False
        if sio is not None:
            try:
                sio.disconnect()
            except Exception:  # closing a broken socket may fail; it is gone either way
                log.debug("closing the socket.io connection failed", exc_info=True)
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(self.open_timeout + 2.0)
            if thread.is_alive():
                log.warning("the socket.io thread for %s did not stop", self.shown_url)
        self._first_attempt.set()
        self._poke_all()

    # -- the connection's thread ---------------------------------------------------------

    def _run(self) -> None:
        failures = 0  # attempts in a row that did not get a healthy socket
        while not self._closing.is_set():
            connected = self._attempt()
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
            self._closing.wait(reconnect_delay(failures))
        self._first_attempt.set()

    def _attempt(self) -> float | None:
        """Connect, subscribe and stay until the socket drops; return when it went live."""
        self._acked.clear()
        self._down.clear()
        sio = self._factory(
            reconnection=False,  # this thread reconnects, backing off as it sees fit
            logger=_SIO_LOG,
            engineio_logger=_SIO_LOG,
            request_timeout=self.open_timeout,
        )
        sio.on("connect", self._on_connect)
        sio.on("disconnect", self._on_disconnect)
        sio.on("connect_error", self._on_refused)
        sio.on("*", self._on_event)
        with self._lock:
            if self._closing.is_set():
                return None
            self._sio = sio
        self._refused = None
        try:
            # Not waiting for the namespace here: the wait below ends on the subscription's
            # ack, a refusal, or close().
            sio.connect(
                self.url,
                headers=dict(self._headers),
                transports=["websocket"],
                socketio_path=self.path,
                wait=False,
            )
        except Exception as exc:  # any failure means: poll, and try again later
            self.last_error = _describe(exc)
            return None
        acked = self._acked.wait(self.open_timeout) and self._refused is None
        if not acked or self._closing.is_set():
            _disconnect(sio)
            if not self._closing.is_set():
                self.last_error = self._refused or (
                    "timed out waiting for subscribe_queue's acknowledgement"
                )
            return None
        connected = self._went_live()
        self._down.wait()
        self._went_down()
        _disconnect(sio)
        return connected

    def _on_connect(self) -> None:
        # Called on the socket's reader thread: emit and take the ack in a callback (a
        # blocking call() here would wait for itself).
        sio = self._sio
        if sio is not None:
            sio.emit("subscribe_queue", {"queue_id": QUEUE_ID}, callback=self._on_ack)

    def _on_ack(self, *args: Any) -> None:
        self._acked.set()

    def _on_refused(self, *args: Any) -> None:
        self._refused = (
            f"the server refused the namespace: {str(args[0])[:100]}"
            if args
            else ("the server refused the namespace")
        )
        self._acked.set()

    def _on_disconnect(self, *args: Any) -> None:
        self.last_error = f"disconnected ({args[0]})" if args else "disconnected"
        self._down.set()

    def _went_live(self) -> float:
        with self._lock:
            self._live = True
            self.connections += 1
            reconnected = self.connections > 1
        self._first_attempt.set()
        if reconnected:
            log.info("InvokeAI's socket.io events at %s are back", self.shown_url)
        else:
            log.debug("subscribed to InvokeAI's queue events at %s", self.shown_url)
        return time.monotonic()

    def _went_down(self) -> None:
        with self._lock:
            self._live = False
            if not self._closing.is_set():
                self.drops += 1
        self._poke_all()  # events may be lost from here on: look at the items now

    def _on_event(self, name: str, *args: Any) -> None:
        with self._lock:
            self.events_received += 1
        for news in read_event(str(name), args[0] if args else None):
            with self._lock:
                if news.item_id is None:
                    watches = [w for ws in self._watches.values() for w in ws]
                else:
                    watches = list(self._watches.get(news.item_id, ()))
                    if not watches and news.event and news.event[0] in _KEPT_UNWATCHED:
                        self._unwatched.setdefault(news.item_id, []).append(news)
                        self._unwatched.move_to_end(news.item_id)
                        while len(self._unwatched) > _MAX_UNWATCHED:
                            self._unwatched.popitem(last=False)
            for watch in watches:
                watch.push(news)


def _disconnect(sio: socketio.Client) -> None:
    try:
        sio.disconnect()
    except Exception:  # a broken socket may fail to close; it is gone either way
        log.debug("closing the socket.io connection failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    """A short reason for logs: never the URL (it may hold a password) nor a header."""
    import socketio  # imported already: the socket that failed is its

    if isinstance(exc, socketio.exceptions.ConnectionError):
        text = str(exc.args[0]) if exc.args else type(exc).__name__
        return redact_url(text)[:200]
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__
