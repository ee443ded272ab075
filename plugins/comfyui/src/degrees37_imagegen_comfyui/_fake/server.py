"""An in-process fake ComfyUI 0.3.64 that answers as the real one did in ``captures/``.

HTTP runs on a ``ThreadingHTTPServer``; ``GET /ws`` is upgraded on the same port with the
``websockets`` library's sans-I/O server protocol. A worker thread runs queued prompts one
at a time in order of ``number`` and sends the messages the captures show, in their order:

    status (on POST) · status (when the worker takes it) · execution_start ·
    execution_cached · per node: progress_state, executing, [progress...], [executed],
    progress_state · execution_success · (history written) · status · executing node=null

``status`` goes to every socket; everything else only to the socket of the prompt's
``client_id``. History is written only after ``execution_success`` (``history_delay`` later),
before the final ``executing``. Validation errors, 500 answers, ``/queue``, ``/interrupt``,
``/history`` and ``/view`` follow the captured answers. A few switches make the failures
that tests need (dropping a socket, refusing WebSockets, losing a POST's answer...).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

from PIL import Image

from .common import CAPTURES, CaptureFolder, Item, NodeError, Recorded, is_link, load_capture, ms
from .graph import check_prompt, order, signature
from .http import _Handler, _Socket
from .nodes import run

__all__ = ["FakeComfyUI", "running_fake"]


@dataclass
class FakeComfyUI:
    """The fake server. Start with :meth:`start`; ``url`` is its ``http://127.0.0.1:port``."""

    checkpoints: list[str] = field(default_factory=list)
    #: Seconds between ``execution_success`` and writing history (the real gap is small).
    history_delay: float = 0.0
    #: Send a binary preview frame after each KSampler step (as SaveImageWebsocket did).
    preview_frames: bool = False
    #: Refuse WebSocket upgrades (HTTP 403).
    refuse_websockets: bool = False
    #: Accept WebSockets but send them nothing after the first ``status``.
    mute_websockets: bool = False
    #: Drop the prompt's socket once, right after sending this message type
    #: (``(type, node)``; node ``None`` matches any).
    drop_after: tuple[str, str | None] | None = None
    #: Queue the next POST /prompt but close the connection without answering.
    lose_next_post_answer: bool = False
    #: Answers to replay for the next POST /prompt calls (capture file names).
    scripted_posts: list[str] = field(default_factory=list)
    #: Faults, as counts of requests still to hit (each fault hits one request): ``post_500``
    #: (POST /prompt answers ComfyUI's plain-text 500, nothing queued), ``post_drop``
    #: (POST /prompt's connection closed before it is read), ``view_500``, ``view_drop``,
    #: ``view_truncated`` (the PNG cut in half, with its full Content-Length).
    faults: dict[str, int] = field(default_factory=dict)
    #: A fault hits one request in ``fault_spacing`` of its kind (1: the next ones).
    fault_spacing: int = 1
    #: A fault of a kind hits each subject (a workflow, an image) once at most, so that the
    #: faults spread over the jobs as independent faults would, instead of piling onto one
    #: job's retries.
    spread_faults: bool = False
    #: Where the captures are read from (``scripted_posts`` names files there): by
    #: default the ones shipped with the plugin.
    captures: CaptureFolder = CAPTURES

    def __post_init__(self) -> None:
        info = load_capture("object_info_trimmed.json", self.captures)
        info.pop("_note", None)
        self.object_info: dict[str, Any] = info
        self.requests: list[Recorded] = []
        self.sent: list[tuple[str | None, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.sockets: dict[str, _Socket] = {}
        self.ws_headers: list[dict[str, str]] = []
        self.pending: dict[str, Item] = {}
        self.running: Item | None = None
        self.history: dict[str, Any] = {}
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.counters: dict[str, int] = {}
        self._faulted: set[tuple[str, str]] = set()
        self.number = 0
        self.interrupted = False
        self.interrupt_requests: list[Any] = []
        self.current_client: str | None = None
        self.last_node_id: str | None = None
        self.cache: dict[str, tuple[list[Any], dict[str, Any] | None]] = {}
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.RLock()
        self.wakeup = threading.Condition(self.lock)
        self.stopping = False
        self.drops = 0
        self.forgotten: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- life ----------------------------------------------------------------------------

    def start(self) -> FakeComfyUI:
        """Serve on a free loopback port, and run the queue; returns the fake."""
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        server = self._server
        for target in (lambda: server.serve_forever(poll_interval=0.02), self._worker):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving: close every socket, end the threads."""
        with self.lock:
            self.stopping = True
            self.wakeup.notify_all()
            for gate in self.gates.values():
                gate.set()
            sockets = list(self.sockets.values())
        for sock in sockets:
            sock.abort()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:port``: the ``server_address`` to give a generator."""
        return f"http://127.0.0.1:{self.port}"

    # -- test helpers --------------------------------------------------------------------

    def gate(self, class_type: str) -> threading.Event:
        """Make nodes of ``class_type`` wait until the returned event is set (or an
        interrupt arrives, after which the node finishes as real nodes do)."""
        with self.lock:
            return self.gates.setdefault(class_type, threading.Event())

    def posts(self, path: str = "/prompt") -> list[Recorded]:
        """The POST requests received for ``path``."""
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def messages_to(self, sid: str) -> list[dict[str, Any]]:
        """Every text message sent to ``sid`` (broadcasts included), in order."""
        return [m for s, m in self.sent if (s is None or s == sid) and isinstance(m, dict)]

    def wait_until(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Poll ``predicate()`` until true (a test helper; returns whether it became true)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.005)
        return False

    # -- sending -------------------------------------------------------------------------

    def queue_remaining(self) -> int:
        """Prompts pending or running."""
        return len(self.pending) + (1 if self.running is not None else 0)

    def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        """``send_sync``: to ``sid`` only, or to every socket when ``sid`` is ``None``."""
        message = {"type": event, "data": data}
        text = json.dumps(message)
        with self.lock:
            self.sent.append((sid, message))
            if sid is None:
                targets = list(self.sockets.values())
            else:
                target = self.sockets.get(sid)
                targets = [target] if target is not None else []
        for sock in targets:
            if self.mute_websockets:
                continue
            sock.send_text(text)
            if sid is not None and self.drop_after is not None:
                kind, node = self.drop_after
                if kind == event and (node is None or data.get("node") == node):
                    self.drop_after = None
                    self.drops += 1
                    sock.abort()

    def send_binary(self, data: bytes, sid: str | None) -> None:
        """A binary frame (a preview) to ``sid``'s socket."""
        with self.lock:
            sock = self.sockets.get(sid) if sid else None
        if sock is not None and not self.mute_websockets:
            sock.send_binary(data)

    def queue_updated(self) -> None:
        """Tell every socket the queue's length (a ``status`` message)."""
        self.send(
            "status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None
        )

    # -- POST /prompt ----------------------------------------------------------------------

    def take_fault(self, kind: str, subject: str | None = None) -> bool:
        """Whether the next request of ``kind`` fails (and count it).

        ``subject`` says what the request is about (a workflow, an image), for
        :attr:`spread_faults`."""
        if not self.spread_faults:
            subject = None
        with self.lock:
            seen = self.counters["seen:" + kind] = self.counters.get("seen:" + kind, 0) + 1
            if subject is not None and (kind, subject) in self._faulted:
                return False
            left = self.faults.get(kind, 0) if seen % self.fault_spacing == 0 else 0
            if left > 0 and subject is not None:
                self._faulted.add((kind, subject))
            if left > 0:
                self.faults[kind] = left - 1
                self.counters["fault:" + kind] = self.counters.get("fault:" + kind, 0) + 1
            return left > 0

    def restart(self) -> None:
        """As a restart does: queue and history gone, every socket closed; the prompt that
        was running finishes into nothing (its history is dropped as it is written)."""
        with self.lock:
            self.pending.clear()
            self.history.clear()
            if self.running is not None:
                self.forgotten.add(self.running.prompt_id)
            self.restarts = getattr(self, "restarts", 0) + 1
            sockets = list(self.sockets.values())
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.conn.shutdown(socket.SHUT_RDWR)
        self.queue_updated()

    def post_prompt(self, body: Any) -> tuple[int, Any]:
        """Validate and queue; return ``(status, json body or text)``."""
        if self.scripted_posts:
            capture = load_capture(self.scripted_posts.pop(0), self.captures)["response"]
            payload = capture["body"]
            return capture["status"], payload.get("json", payload.get("text"))
        status, checked = check_prompt(self.object_info, self.checkpoints, body)
        if status != 200:
            return status, checked
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        good, node_errors = checked["outputs"], checked["node_errors"]
        extra = {"client_id": body["client_id"]} if "client_id" in body else {}
        with self.lock:
            self.number += 1
            number = self.number
            if body.get("front"):
                number = -number
            self.pending[prompt_id] = Item(number, prompt_id, prompt, extra, good)
            self.events.append(("post", str(body.get("client_id"))))
            self.wakeup.notify_all()
        self.queue_updated()
        return 200, {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}

    def _worker(self) -> None:
        while True:
            with self.lock:
                while not self.pending and not self.stopping:
                    self.wakeup.wait()
                if self.stopping:
                    return
                item = min(self.pending.values(), key=lambda i: i.number)
                del self.pending[item.prompt_id]
                self.running = item
            self.queue_updated()
            status, outputs, messages, meta = self._execute(item)
            if status == "success" and self.history_delay:
                time.sleep(self.history_delay)
            with self.lock:
                if item.prompt_id in self.forgotten:  # ran through a restart: no history
                    self.running = None
                    continue
                self.history[item.prompt_id] = {
                    "prompt": item.wire(),
                    "outputs": outputs,
                    "status": {
                        "status_str": status,
                        "completed": status == "success",
                        "messages": messages,
                    },
                    "meta": meta,
                }
                self.running = None
                self.last_node_id = None
            self.queue_updated()
            if item.extra.get("client_id") is not None:
                self.send(
                    "executing",
                    {"node": None, "prompt_id": item.prompt_id},
                    item.extra["client_id"],
                )

    def _execute(self, item: Item) -> tuple[str, dict[str, Any], list[Any], dict[str, Any]]:
        pid, sid, prompt = item.prompt_id, item.extra.get("client_id"), item.prompt
        with self.lock:
            self.interrupted = False
            self.current_client = sid
        messages: list[Any] = []

        def status_message(event: str, data: dict[str, Any]) -> None:
            messages.append([event, data])
            self.send(event, data, sid)

        status_message("execution_start", {"prompt_id": pid, "timestamp": ms()})
        nodes = order(self.object_info, prompt, item.outputs)
        signatures = {n: signature(prompt, n) for n in nodes}
        with self.lock:  # the classic cache keeps only what the current prompt uses
            self.cache = {s: v for s, v in self.cache.items() if s in signatures.values()}
        cached = [n for n in prompt if n in signatures and signatures[n] in self.cache]
        status_message("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": ms()})
        results: dict[str, list[Any]] = {}
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        states: dict[str, str] = {}
        executed: list[str] = []

        def progress_state() -> None:
            nodes = {
                n: {
                    "value": 1.0 if s == "finished" else 0.0,
                    "max": 1.0,
                    "state": s,
                    "node_id": n,
                    "prompt_id": pid,
                    "display_node_id": n,
                    "parent_node_id": None,
                    "real_node_id": n,
                }
                for n, s in states.items()
            }
            self.send("progress_state", {"prompt_id": pid, "nodes": nodes}, sid)

        def executed_output(node_id: str, ui: Any) -> None:
            """An output node's ``executed`` message, and its entry in the history."""
            self.send(
                "executed",
                {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": pid},
                sid,
            )
            outputs[node_id] = ui
            meta[node_id] = {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }

        for node_id in nodes:
            node = prompt[node_id]
            if node_id in cached:
                results[node_id], ui = self.cache[signatures[node_id]]
                if ui is not None:
                    executed_output(node_id, ui)
                    states[node_id] = "finished"
                    progress_state()
                continue
            states[node_id] = "running"
            progress_state()
            with self.lock:
                self.last_node_id = node_id
            self.send(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}, sid
            )
            if self.interrupted:
                status_message(
                    "execution_interrupted",
                    {
                        "prompt_id": pid,
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "executed": executed[::-1],
                        "timestamp": ms(),
                    },
                )
                return "error", outputs, messages, {}
            inputs = {
                k: results[str(v[0])][v[1]] if is_link(v) else v
                for k, v in node.get("inputs", {}).items()
            }
            try:
                result, ui = self._run(node["class_type"], inputs, node_id, pid, sid)
            except NodeError as exc:
                status_message(
                    "execution_error",
                    {
                        "prompt_id": pid,
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "executed": executed[::-1],
                        "exception_message": exc.message,
                        "exception_type": exc.exception_type,
                        "traceback": exc.traceback,
                        "current_inputs": {k: [repr(v)] for k, v in inputs.items()},
                        "current_outputs": list(prompt),
                        "timestamp": ms(),
                    },
                )
                return "error", outputs, messages, meta
            results[node_id] = result
            executed.append(node_id)
            with self.lock:
                self.cache[signatures[node_id]] = (result, ui)
            if ui is not None:
                executed_output(node_id, ui)
            states[node_id] = "finished"
            progress_state()
        status_message("execution_success", {"prompt_id": pid, "timestamp": ms()})
        return "success", outputs, messages, meta

    # -- the nodes -----------------------------------------------------------------------

    def _save(self, images: list[Image.Image], prefix: str, kind: str) -> dict[str, Any]:
        saved = []
        for image in images:
            with self.lock:
                count = self.counters.get(prefix, 0) + 1
                self.counters[prefix] = count
            name = f"{prefix}_{count:05}_.png"
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            self.files[(kind, "", name)] = buffer.getvalue()
            saved.append({"filename": name, "subfolder": "", "type": kind})
        return {"images": saved}

    def _wait_gate(self, class_type: str) -> None:
        gate = self.gates.get(class_type)
        while gate is not None and not gate.is_set() and not self.interrupted:
            gate.wait(0.01)

    def _run(
        self, class_type: str, inputs: dict[str, Any], node_id: str, pid: str, sid: str | None
    ) -> tuple[list[Any], dict[str, Any] | None]:
        return run(self, class_type, inputs, node_id, pid, sid)

    # -- WebSocket -----------------------------------------------------------------------

    def accept_socket(self, sid: str, sock: _Socket) -> None:
        """Take a new socket for ``sid`` (replacing an older one) and greet it."""
        with self.lock:
            old = self.sockets.pop(sid, None)
            self.sockets[sid] = sock
            self.events.append(("ws", sid))
            running_client = self.current_client if self.running is not None else None
            last_node = self.last_node_id
        if old is not None:
            old.closed = True
        hello = {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}, "sid": sid}
        message = {"type": "status", "data": hello}
        with self.lock:
            self.sent.append((sid, message))
        sock.send_text(json.dumps(message))
        if running_client == sid and last_node is not None:
            self.send("executing", {"node": last_node}, sid)

    def forget_socket(self, sid: str, sock: _Socket) -> None:
        """Forget ``sid``'s socket once it closed (unless a newer one replaced it)."""
        with self.lock:
            if self.sockets.get(sid) is sock:
                del self.sockets[sid]


@contextlib.contextmanager
def running_fake(**options: Any) -> Iterator[FakeComfyUI]:
    """A started fake, stopped afterwards."""
    fake = FakeComfyUI(**options).start()
    try:
        yield fake
    finally:
        fake.stop()
