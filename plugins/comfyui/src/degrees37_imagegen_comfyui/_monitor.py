"""Following one prompt until it is done: WebSocket messages first, ``/history`` always.

:class:`PromptTracker` is the decision logic alone (no I/O): it reads ComfyUI's messages and
history entries and says what they mean for *our* prompt. :class:`PromptWatcher` does the
I/O: it receives from the WebSocket with a timeout, polls ``/queue`` and ``/history`` when
the socket is quiet or gone, reconnects with the same client id, and gives up at the
deadline. Polling is the source of truth; the socket only makes it faster.

ComfyUI's protocol, as the captures show it: a prompt is finished when ``executing``
arrives with ``node: null`` and its ``prompt_id`` (``execution_success`` comes *before*
history is written). ``status`` is broadcast to every socket; everything else goes only to
the socket of the prompt's ``client_id``. On reconnecting with the same client id the
server sends ``status`` and, if that client's prompt is running, ``executing`` with the
current node and no ``prompt_id``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection

from degrees37_imagegen.errors import GeneratorConnectionError, GeneratorError
from degrees37_imagegen.progress import Progress, ProgressCallback

from ._api import ComfyUIAPI
from ._errors import ComfyUIExecutionError, ComfyUIInterruptedError

__all__ = ["DeadlineReached", "PromptTracker", "PromptWatcher"]

log = logging.getLogger("degrees37_imagegen_comfyui")

# Polls that may fail in a row while the socket is down before we give up on the server.
_MAX_POLL_FAILURES = 3


class DeadlineReached(Exception):
    """The prompt's time ran out (the generator then cancels it and raises a timeout)."""


class PromptTracker:
    """What ComfyUI's messages say about one prompt (no I/O).

    Feed it every WebSocket message with :meth:`handle` and history entries with
    :meth:`handle_history`; it returns progress to report and sets :attr:`finished`,
    :attr:`error` and :attr:`cached`. Messages about other prompts are ignored.
    """

    def __init__(
        self,
        prompt_id: str,
        class_types: Mapping[str, str],
        *,
        generator: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.class_types = dict(class_types)
        self.generator = generator
        #: The final ``executing`` (or a history entry) arrived: stop waiting.
        self.finished = False
        #: Why the prompt failed, when it did.
        self.error: GeneratorError | None = None
        #: ``execution_start`` (or a node) was seen.
        self.started = False
        #: Node ids ComfyUI served from its cache.
        self.cached: list[str] = []
        #: Outputs announced by ``executed`` messages (history is what counts).
        self.outputs: dict[str, Any] = {}
        self._queue_remaining: int | None = None
        self._ran: set[str] = set()

    def node_label(self, node_id: Any) -> str:
        """``"3 KSampler"``: a node id with its class."""
        class_type = self.class_types.get(str(node_id))
        return f"{node_id} {class_type}" if class_type else str(node_id)

    def _progress(self, stage: Any, message: str, **kwargs: Any) -> Progress:
        return Progress(stage, message, generator=self.generator, **kwargs)

    def handle(self, message: Mapping[str, Any]) -> Progress | None:
        """Take one decoded WebSocket message; return progress to report, if any."""
        kind = message.get("type")
        data = message.get("data")
        if not isinstance(data, Mapping) or self.finished:
            return None
        if kind == "status":
            return self._status(data)
        prompt_id = data.get("prompt_id")
        # Messages without a prompt_id come only to our own socket (see module docstring).
        if prompt_id is not None and prompt_id != self.prompt_id:
            return None
        if kind == "executing":
            node = data.get("node")
            if node is None:
                if prompt_id == self.prompt_id:
                    self.finished = True
                return None
            self.started = True
            self._ran.add(str(node))
            label = self.node_label(node)
            count, of = len(self._ran | set(self.cached)), len(self.class_types)
            where = f"node {count} of {of}" if of >= count else "running"
            return self._progress("running", where, node=label)
        if prompt_id is None and kind != "progress":
            return None
        if kind == "execution_start":
            self.started = True
            return self._progress("running", "started")
        if kind == "execution_cached":
            nodes = data.get("nodes")
            self.cached = [str(n) for n in nodes] if isinstance(nodes, list) else []
            if self.cached:
                return self._progress("running", f"{len(self.cached)} nodes from cache")
            return None
        if kind == "progress":
            value, total = data.get("value"), data.get("max")
            if isinstance(value, int) and isinstance(total, int):
                node = data.get("node")
                step_node = self.node_label(node) if node is not None else None
                return self._progress(
                    "step", f"step {value}/{total}", step=value, total=total, node=step_node
                )
            return None
        if kind == "executed":
            node, output = data.get("node"), data.get("output")
            if node is not None and isinstance(output, Mapping):
                self.outputs[str(node)] = dict(output)
            return None
        if kind == "execution_error":
            self.error = ComfyUIExecutionError(self.prompt_id, data, generator=self.generator)
            self.finished = True
        elif kind == "execution_interrupted":
            self.error = ComfyUIInterruptedError(self.prompt_id, data, generator=self.generator)
            self.finished = True
        return None

    def _status(self, data: Mapping[str, Any]) -> Progress | None:
        if self.started or "sid" in data:
            return None  # the greeting a socket gets on connecting predates our prompt
        status = data.get("status")
        info = status.get("exec_info") if isinstance(status, Mapping) else None
        remaining = info.get("queue_remaining") if isinstance(info, Mapping) else None
        if not isinstance(remaining, int) or remaining < 1 or remaining == self._queue_remaining:
            return None
        self._queue_remaining = remaining
        return self._progress("queued", f"{remaining} in the server's queue")

    def handle_history(self, entry: Mapping[str, Any]) -> None:
        """Take the prompt's ``/history`` entry: it exists only once the prompt is over."""
        self.finished = True
        status = entry.get("status")
        if not isinstance(status, Mapping):
            return  # old servers wrote no status; the outputs tell
        if status.get("status_str") == "success" or status.get("completed") is True:
            return
        for item in status.get("messages") or []:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], Mapping)):
                continue
            if item[0] == "execution_error":
                self.error = ComfyUIExecutionError(
                    self.prompt_id, item[1], generator=self.generator
                )
                return
            if item[0] == "execution_interrupted":
                self.error = ComfyUIInterruptedError(
                    self.prompt_id, item[1], generator=self.generator
                )
                return
        self.error = GeneratorError(
            f"ComfyUI prompt {self.prompt_id} ended with status "
            f"{status.get('status_str')!r} and no error message",
            generator=self.generator,
        )


class PromptWatcher:
    """Waits for one submitted prompt: socket when there is one, polling always.

    ``connect`` opens a new socket with the same client id (for reconnecting); it may
    raise. :meth:`run` returns once the tracker says the prompt is finished, and raises
    :class:`DeadlineReached` at ``deadline`` (a :func:`time.monotonic` value).
    """

    def __init__(
        self,
        api: ComfyUIAPI,
        tracker: PromptTracker,
        *,
        socket: ClientConnection | None,
        connect: Callable[[], ClientConnection],
        deadline: float,
        poll_interval: float,
        report: ProgressCallback,
        closing: threading.Event,
    ) -> None:
        self.api = api
        self.tracker = tracker
        self.socket = socket
        self._connect = connect
        self.deadline = deadline
        self.poll_interval = poll_interval
        self._report = report
        self._closing = closing
        self._poll_failures = 0
        self._reconnect_wait = 0.0
        self._next_reconnect = 0.0
        self._last_position: int | None = None
        self._polled_running = False
        #: How many times the socket was lost (for tests and logs).
        self.drops = 0

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineReached
        return remaining

    def run(self) -> None:
        """Wait until the prompt is finished (see the class docstring)."""
        prompt_id = self.tracker.prompt_id
        while not self.tracker.finished:
            if self._closing.is_set():
                raise GeneratorError(
                    f"the generator was closed while waiting for prompt {prompt_id}",
                    generator=self.tracker.generator,
                )
            remaining = self._remaining()
            if self.socket is None:
                self._try_reconnect()
            if self.socket is None:
                self._poll()
                if not self.tracker.finished:
                    self._closing.wait(min(self.poll_interval, self._remaining()))
                continue
            try:
                raw = self.socket.recv(timeout=min(self.poll_interval, remaining))
            except TimeoutError:
                self._poll()  # a quiet socket: ask the server, which is the source of truth
                continue
            except (ConnectionClosed, WebSocketException, OSError) as exc:
                self._lost(exc)
                continue
            if isinstance(raw, str):
                self._handle_text(raw)
            # Binary frames are previews (8-byte header, then a JPEG or PNG): not needed.

    def _handle_text(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.debug("ignoring a WebSocket message that is not JSON: %.80r", raw)
            return
        if isinstance(message, Mapping):
            progress = self.tracker.handle(message)
            if progress is not None:
                self._report(progress)

    def _lost(self, exc: BaseException) -> None:
        self.drops += 1
        log.warning(
            "WebSocket to %s lost while waiting for prompt %s (%s); reconnecting, and "
            "polling meanwhile",
            self.api.shown_url,
            self.tracker.prompt_id,
            type(exc).__name__,
        )
        self._close_socket()
        self._reconnect_wait = 0.0
        self._next_reconnect = 0.0

    def _close_socket(self) -> None:
        if self.socket is not None:
            try:
                self.socket.close()
            except Exception:  # closing a broken socket may fail; it is gone either way
                log.debug("closing a broken WebSocket failed", exc_info=True)
            self.socket = None

    def _try_reconnect(self) -> None:
        now = time.monotonic()
        if now < self._next_reconnect:
            return
        try:
            self.socket = self._connect()
        except Exception as exc:  # any failure to connect means: poll, retry later
            self._reconnect_wait = min(max(0.25, self._reconnect_wait * 2), self.poll_interval)
            self._next_reconnect = now + self._reconnect_wait
            log.debug("WebSocket reconnect failed (%s); polling", type(exc).__name__)
            return
        log.info("WebSocket to %s reconnected", self.api.shown_url)
        # Messages sent while we were away are lost: ask whether it finished meanwhile.
        self._poll()

    def _poll(self) -> None:
        """Ask ``/queue`` then ``/history`` where the prompt is (in that order: a prompt
        moves from the running list to the history atomically, never the other way)."""
        prompt_id = self.tracker.prompt_id
        try:
            running, pending = self.api.queue()
            if any(_item_id(item) == prompt_id for item in running):
                self._poll_failures = 0
                if not self._polled_running and not self.tracker.started:
                    self._polled_running = True
                    self._report(Progress("running", "running", generator=self.tracker.generator))
                return
            mine = [item for item in pending if _item_id(item) == prompt_id]
            if mine:
                self._poll_failures = 0
                self._report_position(mine[0], pending)
                return
            entry = self.api.history(prompt_id)
        except GeneratorError as exc:
            self._poll_failures += 1
            log.debug("polling ComfyUI failed (%s)", exc)
            if self.socket is None and self._poll_failures >= _MAX_POLL_FAILURES:
                raise GeneratorConnectionError(
                    f"lost the connection to ComfyUI at {self.api.shown_url} while prompt "
                    f"{prompt_id} was queued or running ({exc}); it was not submitted again",
                    generator=self.tracker.generator,
                ) from exc
            return
        self._poll_failures = 0
        if entry is not None:
            self.tracker.handle_history(entry)
            return
        raise GeneratorError(
            f"prompt {prompt_id} is neither queued, running nor in the history of ComfyUI "
            f"at {self.api.shown_url}: it was deleted from the queue or the server restarted",
            generator=self.tracker.generator,
        )

    def _report_position(self, item: list[Any], pending: list[list[Any]]) -> None:
        number = item[0] if item else None
        if not isinstance(number, (int, float)):
            return
        ahead = sum(
            1
            for other in pending
            if other and isinstance(other[0], (int, float)) and other[0] < number
        )
        position = ahead + 1
        if position != self._last_position:
            self._last_position = position
            self._report(
                Progress(
                    "queued",
                    f"waiting behind {ahead} prompts",
                    position=position,
                    generator=self.tracker.generator,
                )
            )


def _item_id(item: list[Any]) -> Any:
    return item[1] if len(item) > 1 else None
