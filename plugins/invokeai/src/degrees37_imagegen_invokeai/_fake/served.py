"""The fake InvokeAI on a loopback port, running its queue as the real server does.

:class:`ServedInvokeAI` serves the fake's routes over real HTTP (so that another process,
the CLI, can use it), socket.io on the same port, and runs queued items one at a time in
the order of their ids on a worker thread, each taking ``seconds``, as InvokeAI's session
processor does. A fault that closes a connection closes the real TCP connection.

:meth:`ServedInvokeAI.restart` does what restarting InvokeAI 6.14.2 does
(``SqliteSessionQueue.start`` in ``app/services/session_queue/session_queue_sqlite.py``):
the item that was running stops where it was and is marked ``canceled`` (no event: the
server was down); pending items stay queued and run after the restart; finished items
stay; item ids keep counting (``item_id INTEGER PRIMARY KEY AUTOINCREMENT`` in the
database on disk). Only with ``use_memory_db`` (``restart(memory_db=True)``) is the queue
gone and do ids start again at 1. Every socket.io and HTTP connection is cut.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from .server import FakeInvokeAI
from .socketio import WS_PATH, SocketIOEndpoint

__all__ = ["ServedInvokeAI"]

#: respx keeps every call it routed: forget them this often (a long benchmark's memory).
_FORGET_CALLS_EVERY = 5000


class _QuietServer(ThreadingHTTPServer):
    """A client that went away (killed, or cut by a fault) is no error of the fake's."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ServedInvokeAI(FakeInvokeAI):
    """A :class:`FakeInvokeAI` on ``127.0.0.1``: :meth:`start`, then give clients
    :attr:`url`. ``seconds`` is how long each item runs; ``events=False`` serves no
    socket.io (the upgrade answers the web UI's page, as any unknown GET does)."""

    def __init__(self, seconds: float = 0.01, *, events: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.runs_queue = True
        self.script = ["pending"]
        if events:
            self.attach_socketio(SocketIOEndpoint())
        #: How many restarts there were.
        self.restarts = 0
        #: The item running now, if any.
        self.running: int | None = None
        self.stopping = False
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._routed = 0

    # -- life ----------------------------------------------------------------------------

    def start(self) -> ServedInvokeAI:
        """Serve on a free loopback port and run the queue; returns the fake."""
        self._httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        httpd = self._httpd
        for target in (lambda: httpd.serve_forever(poll_interval=0.02), self._worker):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving: cut every connection, end the threads."""
        with self.lock:
            self.stopping = True
            self.generation += 1
            self.wakeup.notify_all()
        self._cut_connections()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> ServedInvokeAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the ``base_url`` to give a generator."""
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def restart(self, *, memory_db: bool = False) -> None:
        """Restart the server (module docstring): the running item is canceled, the rest
        kept, ids go on; with ``memory_db`` the queue is emptied and ids start at 1."""
        with self.lock:
            self.generation += 1
            self.restarts += 1
            for item in self.items.values():
                if item.status == "in_progress":
                    item.status = "canceled"
            if memory_db:
                self.items.clear()
                self.next_item_id = 1
            self.running = None
            self.wakeup.notify_all()
        self._cut_connections()

    def _cut_connections(self) -> None:
        if self.sio is not None:
            self.sio.drop()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # -- the queue -------------------------------------------------------------------------

    def _worker(self) -> None:
        while True:
            with self.lock:
                while not self.stopping and not self._next_pending():
                    self.wakeup.wait()
                if self.stopping:
                    return
                item = self.items[self._next_pending()]
                self.running = item.item_id
            self._run(item, self.seconds)
            with self.lock:
                if self.running == item.item_id:
                    self.running = None

    def _next_pending(self) -> int:
        pending = [i for i, item in self.items.items() if item.status == "pending"]
        return min(pending, default=0)

    # -- HTTP ----------------------------------------------------------------------------

    def _route(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self._routed += 1
            if self._routed % _FORGET_CALLS_EVERY == 0:
                self.router.reset()
                del self.calls[:-_FORGET_CALLS_EVERY]
        response: httpx.Response = self.router.handler(request)
        return response

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def setup(self) -> None:
                super().setup()
                with fake.lock:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake.lock:
                    fake._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def _cut(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _serve(self) -> None:
                if (
                    self.path.startswith(WS_PATH)
                    and self.headers.get("Upgrade", "").lower() == "websocket"
                    and fake.sio is not None
                ):
                    fake.sio.handle(self)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                request = httpx.Request(
                    self.command, fake.base_url + self.path, headers=headers, content=body
                )
                try:
                    response = fake._route(request)
                except httpx.TransportError:  # a fault: the connection goes, unanswered
                    self._cut()
                    return
                try:
                    self._answer(response)
                except OSError:  # cut meanwhile (a restart): the client sees it
                    self.close_connection = True

            def _answer(self, response: httpx.Response) -> None:
                self.send_response(response.status_code)
                stream = response.stream
                sent = {k.lower() for k in response.headers}
                for key, value in response.headers.multi_items():
                    self.send_header(key, value)
                if "content-length" not in sent:
                    response.read()
                    stream = httpx.ByteStream(response.content)
                    self.send_header("Content-Length", str(len(response.content)))
                self.end_headers()
                try:
                    for chunk in stream:  # type: ignore[union-attr]
                        self.wfile.write(chunk)
                except httpx.TransportError:  # cut mid-body
                    self._cut()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        return Handler
