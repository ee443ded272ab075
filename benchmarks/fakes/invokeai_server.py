"""A fake InvokeAI 6 queue server for benchmarks: one item at a time, a fixed time per item.

It answers the routes a client uses to make an image, in the shapes of the captures in
``shared/api/invokeai`` (``enqueue_blank_image.json``, ``queue_item_blank_*.json``,
``image_full_blank.json``, ``app_version.json``):

- ``GET /api/v1/app/version``
- ``GET /api/v2/models/`` (one SDXL main model)
- ``POST /api/v1/queue/default/enqueue_batch`` (answers ``item_ids``, descending)
- ``GET /api/v1/queue/default/i/{id}`` (``pending`` / ``in_progress`` / ``completed``; the
  session's ``source_prepared_mapping`` and ``results`` name the image, as InvokeAI does)
- ``GET /api/v1/queue/default/list_all?destination=``
- ``GET /api/v1/images/i/{name}/full`` (``image/png``)
- ``/ws/socket.io/`` (a WebSocket): socket.io as InvokeAI speaks it, pushing
  ``batch_enqueued``, ``queue_item_status_changed``, ``invocation_started`` and
  ``invocation_complete`` as an item is enqueued, starts and ends. The endpoint and the
  event payloads are the InvokeAI plugin's test fake (``tests/plugins/invokeai/
  socketio_fake.py``, built from frames recorded from a real server).

A worker thread runs items in order, one at a time, each taking ``seconds_per_image``; it
records when each item started and finished (``time.perf_counter``), for busy-time figures;
as on the real server, an item's final status event goes out after it is marked finished.
Unknown ``/api`` paths answer 404 with ``{"detail": "Not Found"}``.
``FakeInvokeAI(T, socketio=False)`` has no socket.io (the upgrade answers 404, as a server
without it would).
"""

from __future__ import annotations

import io
import itertools
import json
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

_TEST_FAKES = Path(__file__).resolve().parents[2] / "tests" / "plugins" / "invokeai"
if str(_TEST_FAKES) not in sys.path:
    sys.path.insert(0, str(_TEST_FAKES))

from socketio_fake import (  # noqa: E402 (the path to the tests' fakes comes first)
    WS_PATH,
    ItemIds,
    SocketIOEndpoint,
    invocation_event,
    status_changed,
)

__all__ = ["FakeInvokeAI", "ItemTimes"]

_ID_BLOCKS = itertools.count()

_MODEL = {
    "key": "c7a1f4e2-0000-4000-8000-000000000001",
    "hash": "blake3:0000000000000000000000000000000000000000000000000000000000000001",
    "name": "sdxl-base-1.0",
    "base": "sdxl",
    "type": "main",
    "format": "diffusers",
    "default_settings": None,
}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@dataclass
class ItemTimes:
    """When the server started and finished an item (``time.perf_counter`` seconds)."""

    item_id: int
    image_name: str = ""
    started: float = 0.0
    finished: float = 0.0


@dataclass
class _Item:
    item_id: int
    batch: dict[str, Any]
    status: str = "pending"
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    completed_at: str | None = None
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> ItemIds:
        return ItemIds(
            self.item_id,
            self.batch["batch_id"],
            self.session["id"],
            self.batch.get("origin"),
            self.batch.get("destination"),
        )

    def wire(self) -> dict[str, Any]:
        body = {
            "item_id": self.item_id,
            "status": self.status,
            "priority": 0,
            "batch_id": self.batch["batch_id"],
            "origin": self.batch.get("origin"),
            "destination": self.batch.get("destination"),
            "session_id": self.session["id"],
            "created_at": self.created_at,
            "updated_at": self.completed_at or self.started_at or self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "queue_id": "default",
            "field_values": [],
            "session": self.session,
        }
        return {k: v for k, v in body.items() if v is not None}  # this route omits nulls


class FakeInvokeAI:
    """The fake server; ``with FakeInvokeAI(0.2) as server:`` serves on ``server.url``."""

    def __init__(self, seconds_per_image: float = 0.2, *, socketio: bool = True) -> None:
        self.seconds_per_image = seconds_per_image
        self.sio = SocketIOEndpoint() if socketio else None
        #: By job id: the InvokeAI plugin's job (and image) id is the queue item id, as text.
        self.times: dict[str, ItemTimes] = {}
        #: By job id: the seed of the graph it made (which job's image it is).
        self.seeds: dict[str, Any] = {}
        self._items: dict[int, _Item] = {}
        self._pending: list[int] = []
        # Each fake numbers its items from its own block, so that the job ids of a pool of
        # fakes never collide in the benchmark's tables (real servers each count from 1).
        self._next_id = next(_ID_BLOCKS) * 1_000_000 + 1
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._images: dict[str, bytes] = {}
        self._png_cache: dict[tuple[int, int], bytes] = {}
        self._stopping = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, daemon=True),
            threading.Thread(target=self._worker, daemon=True),
        ]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeInvokeAI:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._stopping = True
            self._wakeup.notify_all()
        if self.sio is not None:
            self.sio.drop()
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- the queue -----------------------------------------------------------------------

    def enqueue(self, body: dict[str, Any]) -> dict[str, Any]:
        batch = dict(body["batch"])
        batch["batch_id"] = str(uuid.uuid4())
        runs = int(batch.get("runs", 1))
        with self._lock:
            ids = []
            for _ in range(runs):
                item_id = self._next_id
                self._next_id += 1
                session = {
                    "id": str(uuid.uuid4()),
                    "graph": batch["graph"],
                    "results": {},
                    "source_prepared_mapping": {},
                }
                self._items[item_id] = _Item(item_id, batch, session=session)
                self._pending.append(item_id)
                ids.append(item_id)
            self._wakeup.notify_all()
        if self.sio is not None:
            announced = self.sio.rec.payload("batch_enqueued")
            announced.update(batch_id=batch["batch_id"], origin=batch.get("origin"))
            announced.update(enqueued=runs, requested=runs)
            self.sio.emit("batch_enqueued", announced)
        return {
            "queue_id": "default",
            "enqueued": runs,
            "requested": runs,
            "batch": {**batch, "data": batch.get("data"), "workflow": None},
            "priority": 0,
            "item_ids": sorted(ids, reverse=True),  # InvokeAI answers them descending
        }

    def _worker(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                item = self._items[self._pending.pop(0)]
                item.status = "in_progress"
                item.started_at = _now()
            started = time.perf_counter()
            node_id, node = _output(item.batch["graph"])
            self._emit("queue_item_status_changed", status_changed(item.ids, "in_progress"))
            self._emit(
                "invocation_started",
                invocation_event("invocation_started", item.ids, node_id, node),
            )
            name = f"{uuid.uuid4()}.png"
            width, height = _size(item.batch["graph"])
            png = self._png(width, height)
            time.sleep(max(0.0, self.seconds_per_image - (time.perf_counter() - started)))
            # As on the real server: the node's event, then the item is completed, then its
            # status event.
            result = {"image": {"image_name": name}, "width": width, "height": height}
            result.update(type="image_output", output_meta=None)
            complete = invocation_event(
                "invocation_complete", item.ids, node_id, node, result=result
            )
            self._emit("invocation_complete", complete)
            with self._lock:
                self._images[name] = png
                mapping: dict[str, list[str]] = {}
                results: dict[str, Any] = {}
                for node_id in item.batch["graph"].get("nodes", {}):
                    prepared = str(uuid.uuid4())
                    mapping[node_id] = [prepared]
                    results[prepared] = {
                        "image": {"image_name": name},
                        "width": width,
                        "height": height,
                        "type": "image_output",
                    }
                item.session["source_prepared_mapping"] = mapping
                item.session["results"] = results
                item.status = "completed"
                item.completed_at = _now()
                self.times[str(item.item_id)] = ItemTimes(
                    item.item_id, name, started, time.perf_counter()
                )
                self.seeds[str(item.item_id)] = _seed(item.batch)
            self._emit("queue_item_status_changed", status_changed(item.ids, "completed"))

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        if self.sio is not None:
            self.sio.emit(name, data)

    def _png(self, width: int, height: int) -> bytes:
        key = (width, height)
        if key not in self._png_cache:
            buffer = io.BytesIO()
            Image.new("RGB", key, (30, 144, 255)).save(buffer, "PNG")
            self._png_cache[key] = buffer.getvalue()
        return self._png_cache[key]

    # -- HTTP ----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle's algorithm the body would
            # wait for the client's delayed ACK (40 ms), which a real server does not do.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, data: Any) -> None:
                self._send(status, json.dumps(data).encode(), "application/json")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                path, query = parts.path, parse_qs(parts.query)
                if path == WS_PATH and self.headers.get("Upgrade", "").lower() == "websocket":
                    if fake.sio is not None:
                        return fake.sio.handle(self)
                    return self._json(404, {"detail": "Not Found"})
                if path == "/api/v1/app/version":
                    return self._json(200, {"version": "6.14.2"})
                if path == "/api/v2/models/":
                    return self._json(200, {"models": [_MODEL]})
                match = re.fullmatch(r"/api/v1/queue/default/i/(\d+)", path)
                if match:
                    with fake._lock:
                        item = fake._items.get(int(match.group(1)))
                        body = None if item is None else json.loads(json.dumps(item.wire()))
                    if body is None:
                        return self._json(404, {"detail": "Not Found"})
                    return self._json(200, body)
                if path == "/api/v1/queue/default/list_all":
                    wanted = (query.get("destination") or [None])[0]
                    with fake._lock:
                        items = [
                            i.wire()
                            for i in fake._items.values()
                            if wanted is None or i.batch.get("destination") == wanted
                        ]
                    return self._json(200, items)
                match = re.fullmatch(r"/api/v1/images/i/([^/]+)/full", path)
                if match:
                    with fake._lock:
                        png = fake._images.get(unquote(match.group(1)))
                    if png is None:
                        return self._json(404, {"detail": "Image not found"})
                    return self._send(200, png, "image/png")
                return self._json(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if urlsplit(self.path).path == "/api/v1/queue/default/enqueue_batch":
                    return self._json(200, fake.enqueue(body))
                return self._json(404, {"detail": "Not Found"})

            def do_PUT(self) -> None:
                match = re.fullmatch(r"/api/v1/queue/default/i/(\d+)/cancel", self.path)
                with fake._lock:
                    item = fake._items.get(int(match.group(1))) if match else None
                    if item is not None and item.status == "pending":
                        item.status = "canceled"
                        fake._pending.remove(item.item_id)
                    body = None if item is None else item.wire()
                if body is None:
                    return self._json(404, {"detail": "Not Found"})
                return self._json(200, body)

        return Handler


def _output(graph: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The graph's last node (its output, in the graphs this fake is given) and its id."""
    node_id = list(graph.get("nodes", {}))[-1]
    return node_id, graph["nodes"][node_id]


def _seed(batch: dict[str, Any]) -> Any:
    """The seed a batch of one run asks for: its ``data`` for the ``seed`` node, as the
    InvokeAI plugin sends it, or the first graph node with a ``seed``."""
    for group in batch.get("data") or []:
        for field_values in group:
            if field_values.get("node_path") == "seed" and field_values.get("items"):
                return field_values["items"][0]
    for node in batch["graph"].get("nodes", {}).values():
        if "seed" in node:
            return node["seed"]
    return None


def _size(graph: dict[str, Any]) -> tuple[int, int]:
    """The size the graph asks for: the first node with an integer width and height."""
    for node in graph.get("nodes", {}).values():
        width, height = node.get("width"), node.get("height")
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return 1024, 1024
