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
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image
from websockets.http11 import Request
from websockets.server import ServerProtocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/plugins: shared fakes
from wsfake import ServerSocket

CAPTURES = Path(__file__).parent / "captures"

#: EmptyImage into SaveImage, with width, height and colour as placeholders.
EMPTY_IMAGE_TEMPLATE: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {
            "width": "{{width}}",
            "height": "{{height}}",
            "batch_size": 1,
            "color": "{{color}}",
        },
        "_meta": {"title": "EmptyImage"},
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "imagegen_test"},
        "_meta": {"title": "Save Image"},
    },
}


TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"


def load_capture(name: str) -> Any:
    """A capture file from ``captures/`` (JSON)."""
    return json.loads((CAPTURES / name).read_text(encoding="utf-8"))


def _ms() -> int:
    return int(time.time() * 1000)


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class NodeError(Exception):
    """A node failed while running (becomes ``execution_error``)."""

    def __init__(self, exception_type: str, message: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = traceback


@dataclass
class Recorded:
    """One HTTP request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class Item:
    """One queued prompt: ``[number, prompt_id, prompt, extra_data, outputs]`` on the wire."""

    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra: dict[str, Any]
    outputs: list[str]

    def wire(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra, self.outputs]


class _Socket(ServerSocket):
    """One accepted WebSocket of the fake ComfyUI."""

    def serve(self) -> None:
        """Read the client's frames until it closes (answering pings and the close)."""
        while self.frames():  # what the client sends (feature_flags...) is ignored
            pass


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

    def __post_init__(self) -> None:
        info = load_capture("object_info_trimmed.json")
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
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
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
        with self.lock:
            sock = self.sockets.get(sid) if sid else None
        if sock is not None and not self.mute_websockets:
            sock.send_binary(data)

    def queue_updated(self) -> None:
        self.send(
            "status", {"status": {"exec_info": {"queue_remaining": self.queue_remaining()}}}, None
        )

    # -- POST /prompt ----------------------------------------------------------------------

    def take_fault(self, kind: str) -> bool:
        """Whether the next request of ``kind`` fails (and count it)."""
        with self.lock:
            seen = self.counters["seen:" + kind] = self.counters.get("seen:" + kind, 0) + 1
            left = self.faults.get(kind, 0) if seen % self.fault_spacing == 0 else 0
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
            capture = load_capture(self.scripted_posts.pop(0))["response"]
            payload = capture["body"]
            return capture["status"], payload.get("json", payload.get("text"))
        if not isinstance(body, dict):
            return 500, TEXT_500
        if "prompt" not in body:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": {}}
        prompt = body["prompt"]
        if not isinstance(prompt, dict) or not all(isinstance(v, dict) for v in prompt.values()):
            return 500, TEXT_500  # as for a list or a UI-format workflow
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        for node_id, node in prompt.items():
            if "class_type" not in node:
                error = {
                    "type": "invalid_prompt",
                    "message": "Cannot execute because a node is missing the class_type property.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return 400, {"error": error, "node_errors": {}}
            if node["class_type"] not in self.object_info:
                error = {
                    "type": "invalid_prompt",
                    "message": f"Cannot execute because node {node['class_type']} does not exist.",
                    "details": f"Node ID '#{node_id}'",
                    "extra_info": {},
                }
                return 400, {"error": error, "node_errors": {}}
        outputs = [
            n
            for n, node in prompt.items()
            if self.object_info[node["class_type"]].get("output_node")
        ]
        if not outputs:
            error = {
                "type": "prompt_no_outputs",
                "message": "Prompt has no outputs",
                "details": "",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": {}}
        node_errors: dict[str, Any] = {}
        good = []
        for out in outputs:
            failed = self._validate(prompt, out, set())
            for node_id, errors in failed.items():
                entry = node_errors.setdefault(
                    node_id,
                    {
                        "errors": errors,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    },
                )
                entry["dependent_outputs"].append(out)
            if not failed:
                good.append(out)
        if not good:
            error = {
                "type": "prompt_outputs_failed_validation",
                "message": "Prompt outputs failed validation",
                "details": "",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": node_errors}
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

    def _options(self, class_type: str) -> dict[str, Any]:
        info = self.object_info[class_type]["input"]
        return {**info.get("required", {}), **info.get("optional", {})}

    def _validate(self, prompt: dict[str, Any], node_id: str, seen: set[str]) -> dict[str, Any]:
        if node_id in seen:
            return {}
        seen.add(node_id)
        node = prompt[node_id]
        required = self.object_info[node["class_type"]]["input"].get("required", {})
        options = self._options(node["class_type"])
        inputs = node.get("inputs", {})
        errors: list[dict[str, Any]] = []
        failed: dict[str, Any] = {}
        for name in required:
            if name not in inputs:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
        for name, value in inputs.items():
            config = options.get(name)
            if config is None:
                continue
            if _is_link(value):
                failed.update(self._validate(prompt, str(value[0]), seen))
                continue
            kind = config[0]
            opts = config[1] if len(config) > 1 else {}
            if name == "ckpt_name":
                kind = list(self.checkpoints)
            if isinstance(kind, list):
                if value not in kind:
                    errors.append(
                        {
                            "type": "value_not_in_list",
                            "message": "Value not in list",
                            "details": f"{name}: '{value}' not in {kind!r}",
                            "extra_info": {
                                "input_name": name,
                                "input_config": [kind, opts],
                                "received_value": value,
                            },
                        }
                    )
            elif kind in ("INT", "FLOAT"):
                try:
                    number = int(value) if kind == "INT" else float(value)
                except (TypeError, ValueError) as exc:
                    errors.append(
                        {
                            "type": "invalid_input_type",
                            "message": f"Failed to convert an input value to a {kind} value",
                            "details": f"{name}, {value}, {exc}",
                            "extra_info": {
                                "input_name": name,
                                "input_config": config,
                                "received_value": value,
                                "exception_message": str(exc),
                            },
                        }
                    )
                    continue
                if "min" in opts and number < opts["min"]:
                    errors.append(
                        {
                            "type": "value_smaller_than_min",
                            "message": f"Value {number} smaller than min of {opts['min']}",
                            "details": name,
                            "extra_info": {
                                "input_name": name,
                                "input_config": config,
                                "received_value": value,
                            },
                        }
                    )
                if "max" in opts and number > opts["max"]:
                    errors.append(
                        {
                            "type": "value_bigger_than_max",
                            "message": f"Value {number} bigger than max of {opts['max']}",
                            "details": name,
                            "extra_info": {
                                "input_name": name,
                                "input_config": config,
                                "received_value": value,
                            },
                        }
                    )
        if errors:
            failed[node_id] = errors
        return failed

    # -- running prompts -----------------------------------------------------------------

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

    def _order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        """The nodes the outputs need, dependencies first; among the nodes that are ready,
        output nodes go first (ComfyUI's ``ux_friendly_pick_node``: 1, 4, 2 in the
        captured execution error)."""
        needed: dict[str, set[str]] = {}

        def collect(node_id: str) -> None:
            if node_id in needed:
                return
            deps = {str(v[0]) for v in prompt[node_id].get("inputs", {}).values() if _is_link(v)}
            needed[node_id] = deps
            for dep in deps:
                collect(dep)

        for out in outputs:
            collect(out)
        order: list[str] = []
        while len(order) < len(needed):
            ready = [n for n in needed if n not in order and needed[n] <= set(order)]
            is_output = [
                n for n in ready if self.object_info[prompt[n]["class_type"]].get("output_node")
            ]
            order.append((is_output or ready)[0])
        return order

    def _signature(self, prompt: dict[str, Any], node_id: str) -> str:
        node = prompt[node_id]
        parts = {}
        for name, value in sorted(node.get("inputs", {}).items()):
            parts[name] = (
                ["link", self._signature(prompt, str(value[0])), value[1]]
                if _is_link(value)
                else value
            )
        return json.dumps([node["class_type"], parts], sort_keys=True)

    def _execute(self, item: Item) -> tuple[str, dict[str, Any], list[Any], dict[str, Any]]:
        pid, sid, prompt = item.prompt_id, item.extra.get("client_id"), item.prompt
        with self.lock:
            self.interrupted = False
            self.current_client = sid
        messages: list[Any] = []

        def status_message(event: str, data: dict[str, Any]) -> None:
            messages.append([event, data])
            self.send(event, data, sid)

        status_message("execution_start", {"prompt_id": pid, "timestamp": _ms()})
        order = self._order(prompt, item.outputs)
        signatures = {n: self._signature(prompt, n) for n in order}
        with self.lock:  # the classic cache keeps only what the current prompt uses
            self.cache = {s: v for s, v in self.cache.items() if s in signatures.values()}
        cached = [n for n in prompt if n in signatures and signatures[n] in self.cache]
        status_message("execution_cached", {"nodes": cached, "prompt_id": pid, "timestamp": _ms()})
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

        for node_id in order:
            node = prompt[node_id]
            if node_id in cached:
                results[node_id], ui = self.cache[signatures[node_id]]
                if ui is not None:
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
                        "timestamp": _ms(),
                    },
                )
                return "error", outputs, messages, {}
            inputs = {
                k: results[str(v[0])][v[1]] if _is_link(v) else v
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
                        "timestamp": _ms(),
                    },
                )
                return "error", outputs, messages, meta
            results[node_id] = result
            executed.append(node_id)
            with self.lock:
                self.cache[signatures[node_id]] = (result, ui)
            if ui is not None:
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
            states[node_id] = "finished"
            progress_state()
        status_message("execution_success", {"prompt_id": pid, "timestamp": _ms()})
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
        self._wait_gate(class_type)
        if class_type == "EmptyImage":
            color = int(inputs["color"])
            rgb = ((color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF)
            size = (int(inputs["width"]), int(inputs["height"]))
            return [[Image.new("RGB", size, rgb) for _ in range(int(inputs["batch_size"]))]], None
        if class_type == "SaveImage":
            return [], self._save(inputs["images"], inputs["filename_prefix"], "output")
        if class_type == "PreviewImage":
            return [], self._save(inputs["images"], "ComfyUI_temp_fake", "temp")
        if class_type == "ImageBlur":
            return [inputs["image"]], None
        if class_type == "ImageScaleBy":
            images = inputs["image"]
            w, h = images[0].size
            nw, nh = round(w * inputs["scale_by"]), round(h * inputs["scale_by"])
            if nw <= 0 or nh <= 0:
                captured = load_capture("exec_error_imagescaleby_history.json")
                entry = next(iter(captured["response"]["body"]["json"].values()))
                error = dict(entry["status"]["messages"])["execution_error"]
                raise NodeError(
                    "RuntimeError",
                    "Input and output sizes should be greater than 0, but got input "
                    f"(H: {h}, W: {w}) output (H: {nh}, W: {nw})\n",
                    error["traceback"],
                )
            return [[i.resize((nw, nh)) for i in images]], None
        if class_type == "CheckpointLoaderSimple":
            return ["MODEL", "CLIP", "VAE"], None
        if class_type == "CLIPTextEncode":
            return [("CONDITIONING", inputs["text"])], None
        if class_type == "EmptyLatentImage":
            return [
                {
                    "w": int(inputs["width"]) // 8,
                    "h": int(inputs["height"]) // 8,
                    "batch": int(inputs["batch_size"]),
                }
            ], None
        if class_type == "KSampler":
            steps = int(inputs["steps"])
            preview = (CAPTURES / "binary_legacy_01.bin").read_bytes()
            for step in range(1, steps + 1):
                self.send(
                    "progress",
                    {"value": step, "max": steps, "prompt_id": pid, "node": node_id},
                    sid,
                )
                if self.preview_frames:
                    self.send_binary(preview, sid)
            return [{**inputs["latent_image"], "seed": inputs["seed"]}], None
        if class_type == "VAEDecode":
            latent = inputs["samples"]
            shade = int(latent.get("seed", 0)) % 256
            size = (latent["w"] * 8, latent["h"] * 8)
            return [
                [Image.new("RGB", size, (shade, shade, shade)) for _ in range(latent["batch"])]
            ], None
        raise NodeError("NotImplementedError", f"the fake cannot run {class_type}", [])

    # -- WebSocket -----------------------------------------------------------------------

    def accept_socket(self, sid: str, sock: _Socket) -> None:
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
        with self.lock:
            if self.sockets.get(sid) is sock:
                del self.sockets[sid]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeComfyUI

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(
        self,
        status: int,
        body: Any = None,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            content_type = "application/json; charset=utf-8"
        elif isinstance(body, str):
            data = body.encode()
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            data = body or b""
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any) -> Recorded:
        parts = urlsplit(self.path)
        record = Recorded(
            self.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            body,
            dict(self.headers.items()),
        )
        with self.server_fake.lock:
            self.server_fake.requests.append(record)
        return record

    def do_GET(self) -> None:
        fake = self.server_fake
        parts = urlsplit(self.path)
        if parts.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self._record(None)
            self._websocket(parse_qs(parts.query).get("clientId", [""])[0])
            return
        request = self._record(None)
        path = request.path
        with fake.lock:
            if path == "/queue":
                running = [fake.running.wire()] if fake.running is not None else []
                pending = [i.wire() for i in fake.pending.values()]
                body: Any = {"queue_running": running, "queue_pending": pending}
            elif path.startswith("/history/"):
                prompt_id = path[len("/history/") :]
                entry = fake.history.get(prompt_id)
                body = {prompt_id: entry} if entry is not None else {}
            elif path == "/history":
                body = dict(fake.history)
            elif path == "/object_info":
                body = fake.object_info
            elif path.startswith("/object_info/"):
                name = path[len("/object_info/") :]
                body = {name: fake.object_info[name]} if name in fake.object_info else {}
            elif path == "/system_stats":
                body = load_capture("get_system_stats.json")["response"]["body"]["json"]
            elif path == "/prompt":
                body = {"exec_info": {"queue_remaining": fake.queue_remaining()}}
            elif path == "/view":
                self._view(request.query)
                return
            else:
                self._reply(404, "404: Not Found")
                return
        self._reply(200, body)

    def _view(self, query: dict[str, list[str]]) -> None:
        filename = query.get("filename", [""])[0]
        kind = query.get("type", ["output"])[0]
        subfolder = query.get("subfolder", [""])[0]
        if not filename or filename.startswith("/") or ".." in filename:
            self._reply(400)
            return
        if kind not in ("output", "input", "temp"):
            self._reply(400)
            return
        data = self.server_fake.files.get((kind, subfolder, filename))
        if data is None:
            self._reply(404)
            return
        fake = self.server_fake
        if fake.take_fault("view_500"):
            self._reply(500, TEXT_500)
            return
        if fake.take_fault("view_drop"):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fake.take_fault("view_truncated"):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._reply(200, data, "image/png", {"Content-Disposition": f'filename="{filename}"'})

    def do_POST(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
            bad_json = False
        except ValueError:
            body, bad_json = raw.decode(errors="replace"), True
        request = self._record(body)
        if request.path == "/prompt" and fake.take_fault("post_drop"):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if request.path == "/prompt" and fake.take_fault("post_500"):
            self._reply(500, TEXT_500)
            return
        if request.path == "/prompt":
            if bad_json:
                self._reply(500, TEXT_500)
                return
            lose = fake.lose_next_post_answer
            fake.lose_next_post_answer = False
            status, answer = fake.post_prompt(body)
            if lose and status == 200:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._reply(status, answer)
        elif request.path == "/queue":
            body = body if isinstance(body, dict) else {}
            changed = False
            with fake.lock:
                if body.get("clear"):
                    changed = bool(fake.pending)
                    fake.pending.clear()
                for prompt_id in body.get("delete", []):
                    changed |= fake.pending.pop(prompt_id, None) is not None
            if changed:
                fake.queue_updated()
            self._reply(200)
        elif request.path == "/interrupt":
            prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
            with fake.lock:
                fake.interrupt_requests.append(prompt_id)
                if not prompt_id or (fake.running and fake.running.prompt_id == prompt_id):
                    fake.interrupted = True
            self._reply(200)
        else:
            self._reply(404, "404: Not Found")

    def _websocket(self, client_id: str) -> None:
        fake = self.server_fake
        self.close_connection = True
        if fake.refuse_websockets:
            self._reply(403, "403: Forbidden")
            return
        # The protocol parses the handshake itself: give it the request as it came.
        raw = f"GET {self.path} HTTP/1.1\r\n" + "".join(
            f"{key}: {value}\r\n" for key, value in self.headers.items()
        )
        proto = ServerProtocol()
        proto.receive_data((raw + "\r\n").encode("latin-1"))
        (request,) = proto.events_received()
        assert isinstance(request, Request)
        proto.send_response(proto.accept(request))
        self.connection.sendall(b"".join(proto.data_to_send()))
        self.wfile.flush()
        sid = client_id or uuid.uuid4().hex
        sock = _Socket(sid, self.connection, self.rfile, proto)
        sock.headers = dict(self.headers.items())
        with fake.lock:
            fake.ws_headers.append(sock.headers)
        fake.accept_socket(sid, sock)
        try:
            sock.serve()
        finally:
            fake.forget_socket(sid, sock)


@contextlib.contextmanager
def running_fake(**options: Any) -> Iterator[FakeComfyUI]:
    """A started fake, stopped afterwards."""
    fake = FakeComfyUI(**options).start()
    try:
        yield fake
    finally:
        fake.stop()
