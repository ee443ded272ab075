"""Following prompts: the WebSocket and polling I/O around the pure rules.

A :class:`Watch` is what this process knows about one prompt (its client id, its socket,
what the messages said so far). :class:`Follower` does the I/O for it: it receives from the
WebSocket with timeouts bounded by the wait, polls ``/history`` and ``/queue`` (with the
core's one backoff) when the socket is quiet, gone or never opened, and reconnects with the
same client id after a drop. Polling is the source of truth; the socket makes it faster.
What a message or an answer means is decided by ``_monitor`` and ``_protocol``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from degrees37_imagegen.clock import Clock
from degrees37_imagegen.errors import GeneratorError
from degrees37_imagegen.job import JobStatus, JobUpdate
from degrees37_imagegen.redaction import RedactingLogger
from degrees37_imagegen.tls import ssl_context_for

from ._api import ComfyUIAPI
from ._monitor import PromptTracker, decode, told_entry
from ._protocol import gone_update, history_update, queue_state, queue_update

if TYPE_CHECKING:  # websockets is imported when a socket opens (~30 ms of CPU otherwise)
    from websockets.sync.client import ClientConnection

__all__ = ["Follower", "Watch", "open_socket"]

log = logging.getLogger("degrees37_imagegen_comfyui")

#: The longest wait between two attempts to reconnect a dropped WebSocket (seconds).
_MAX_RECONNECT_WAIT = 5.0


def open_socket(
    ws_url: str,
    client_id: str,
    *,
    headers: Mapping[str, str],
    verify_ssl: bool,
    connect_timeout: float,
) -> ClientConnection:
    """Open ComfyUI's WebSocket as ``client_id`` (raises when it cannot)."""
    from websockets.sync.client import connect

    url = f"{ws_url}?clientId={client_id}"
    socket = connect(
        url,
        ssl=ssl_context_for(url, verify_ssl),
        additional_headers=dict(headers) or None,
        open_timeout=connect_timeout,
        close_timeout=2,
        max_size=64 * 2**20,
        # Read everything as it comes, even for a job nobody waits on yet: a bounded queue
        # would stop reading, and ComfyUI's sender (one loop for every client) would block
        # on our full socket. The messages are small; the socket closes when the job ends.
        max_queue=None,
        # websockets logs every handshake header at DEBUG: hide the auth headers first.
        logger=RedactingLogger(logging.getLogger("websockets.client"), dict(headers)),
    )
    # websockets >= 17.1 warns about a connection not used as a context manager; it
    # outlives any one block here (a wait may replace it), and every path closes it.
    socket.__enter__()
    return socket


@dataclass
class Watch:
    """What this process knows about one prompt it follows."""

    prompt_id: str
    client_id: str
    tracker: PromptTracker
    data: Mapping[str, Any] = field(default_factory=dict)
    socket: ClientConnection | None = None
    status: JobStatus = "queued"
    #: Clock time of the last poll, and of the next attempt to (re)connect the socket.
    last_poll: float | None = None
    next_connect: float = 0.0
    connect_wait: float = 0.0
    position: int | None = None
    #: What the socket's ``executed`` messages said each output node saved.
    outputs: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Follower:
    """Waits for and polls prompts of one server (see the module docstring).

    ``connect(client_id)`` opens a socket (or raises); ``None`` means follow by polling
    only. ``retrying`` is the generator's backoff for safe-to-repeat calls.
    """

    def __init__(
        self,
        api: ComfyUIAPI,
        *,
        connect: Callable[[str], ClientConnection] | None,
        clock: Clock,
        poll_interval: float,
        retrying: Callable[..., Any],
        generator: str | None = None,
    ) -> None:
        self.api = api
        self.generator = generator
        self._connect = connect
        self.clock = clock
        self.poll_interval = poll_interval
        self._retrying = retrying

    # -- sockets ---------------------------------------------------------------------------

    def connect(self, watch: Watch) -> bool:
        """Open ``watch``'s socket (as its client id); ``False`` if it cannot be opened now."""
        if self._connect is None or watch.socket is not None:
            return watch.socket is not None
        now = self.clock.monotonic()
        if now < watch.next_connect:
            return False
        try:
            watch.socket = self._connect(watch.client_id)
        except Exception as exc:  # no socket is not fatal: polling is the source of truth
            watch.connect_wait = min(max(0.25, watch.connect_wait * 2), _MAX_RECONNECT_WAIT)
            watch.next_connect = now + watch.connect_wait
            # The URL (and so the exception's text) may hold a password: only the type.
            log.debug(
                "cannot open ComfyUI's WebSocket at %s (%s); following prompt %s by "
                "polling instead",
                self.api.shown_url,
                type(exc).__name__,
                watch.prompt_id,
            )
            return False
        watch.connect_wait = 0.0
        return True

    @staticmethod
    def close(watch: Watch) -> None:
        """Close ``watch``'s socket, if it has one."""
        socket, watch.socket = watch.socket, None
        if socket is not None:
            try:
                socket.close()
            except Exception:  # it may be broken already; it is closed either way
                log.debug("closing a WebSocket failed", exc_info=True)

    # -- waiting -----------------------------------------------------------------------------

    def wait(self, watch: Watch, timeout: float) -> JobUpdate:
        """Wait up to ``timeout`` seconds for news of ``watch``'s prompt; return where it is."""
        with watch.lock:
            return self._wait(watch, timeout)

    def _wait(self, watch: Watch, timeout: float) -> JobUpdate:
        clock = self.clock
        deadline = clock.monotonic() + timeout
        if watch.socket is None and self.connect(watch):
            return self._poll(watch)  # messages sent while we were away are lost: ask
        socket = watch.socket
        if socket is None:
            clock.sleep(timeout)
            return self._poll(watch)
        from websockets.exceptions import WebSocketException  # imported with the socket

        while True:
            # At the deadline, still take what has arrived already (recv with 0 does not
            # wait): messages are read in order, before any poll could skip them.
            remaining = max(0.0, deadline - clock.monotonic())
            try:
                raw = socket.recv(timeout=remaining)
            except TimeoutError:
                break
            except (WebSocketException, OSError) as exc:  # ConnectionClosed is one
                log.info(
                    "WebSocket to %s lost while waiting for prompt %s (%s); reconnecting, "
                    "and polling meanwhile",
                    self.api.shown_url,
                    watch.prompt_id,
                    type(exc).__name__,
                )
                self.close(watch)
                watch.next_connect = 0.0
                return self._poll(watch)
            message = decode(raw)
            if message is not None and message.get("type") == "executed":
                _keep_output(watch, message.get("data"))
            update = watch.tracker.handle(message) if message is not None else None
            if update is None or (update.status == "queued" and watch.status == "running"):
                continue
            if update.status == "done":
                return self._finished(watch)
            return self._seen(watch, update)
        last = watch.last_poll
        if last is None or clock.monotonic() - last >= self.poll_interval:
            return self._poll(watch)  # a quiet socket: ask the server, the source of truth
        return JobUpdate(watch.status)

    def _finished(self, watch: Watch) -> JobUpdate:
        """A message said the prompt is over: its images are in ``/history``."""
        entry = self._retrying(self.api.history, watch.prompt_id)
        if entry is not None:
            return self._seen(watch, history_update(entry, watch.prompt_id, watch.data))
        # execution_success comes before history is written: look again soon.
        watch.tracker.reopen()
        watch.last_poll = None
        return self._seen(watch, JobUpdate("running"))

    # -- polling -----------------------------------------------------------------------------

    def poll(self, watch: Watch) -> JobUpdate:
        """Ask the server once where ``watch``'s prompt is."""
        with watch.lock:
            return self._poll(watch)

    def _poll(self, watch: Watch) -> JobUpdate:
        prompt_id = watch.prompt_id
        watch.last_poll = self.clock.monotonic()
        try:
            # History first (the usual answer once it is over), then the queue, then history
            # again: a prompt leaves the queue for the history between our two reads.
            entry = self._retrying(self.api.history, prompt_id)
            if entry is None:
                state = queue_state(self._retrying(self.api.queue), prompt_id)
                update = queue_update(state, self.generator)
                if update is not None:
                    if update.status == "queued" and state.position == watch.position:
                        update = JobUpdate("queued")  # no news: no progress report
                    watch.position = state.position
                    return self._seen(watch, update)
                entry = self._retrying(self.api.history, prompt_id)
        except GeneratorError as exc:
            if watch.socket is None:
                raise
            log.debug("polling ComfyUI failed (%s); the WebSocket still tells", exc)
            return JobUpdate(watch.status)
        if entry is None:
            entry = told_entry(watch.tracker, watch.outputs)  # a restart wiped /history
        if entry is not None:
            return self._seen(watch, history_update(entry, prompt_id, watch.data))
        return self._seen(watch, gone_update(prompt_id, self.api.shown_url))

    @staticmethod
    def _seen(watch: Watch, update: JobUpdate) -> JobUpdate:
        watch.status = update.status
        return update


def _keep_output(watch: Watch, data: Any) -> None:
    """Note what an ``executed`` message of ``watch``'s prompt says its node saved."""
    if isinstance(data, Mapping) and data.get("prompt_id") == watch.prompt_id:
        node, output = data.get("node"), data.get("output")
        if node is not None and isinstance(output, Mapping):
            watch.outputs[str(node)] = output
