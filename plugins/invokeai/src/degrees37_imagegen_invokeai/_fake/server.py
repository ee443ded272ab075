"""A fake InvokeAI 6.14.2 for tests, answering with bodies made from the captures.

Every answer starts from a captured answer of the real server (the shipped captures) with only the
ids, names and sizes of the request at hand put in. Enqueued bodies are checked against the
real ``openapi.json`` (a test fails at once on a graph the server would refuse), queue items
move through a scripted list of statuses one poll at a time, and a graph naming a model the
fake does not have fails at run time with the server's own ``Unknown model: <key>``, as the
real server does. Faults (refused connections, lost answers) can be injected per route.

With a socket.io endpoint attached (:meth:`FakeInvokeAI.attach_socketio`, see
``socketio.py``) every status change is also pushed as the server pushes it, and
``run_after_polls`` makes an item run by itself, node by node, pushing its events, the way
the real server runs it, instead of advancing one status per poll.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from typing import Any

import httpx
from PIL import Image, PngImagePlugin

from .captures import Captures, schema_of
from .faults import DISCONNECTED, CutShort, FaultSwitches
from .items import FakeItem, image_size, item_body, output_node
from .schema import OpenAPISchema
from .socketio import SocketIOEndpoint, invocation_event, recording, status_changed
from .uploads import answer_image_metadata, answer_image_search, answer_upload

__all__ = ["BASE_URL", "QUEUE", "FakeInvokeAI"]

BASE_URL = "http://invokeai.test:9090"
QUEUE = "/api/v1/queue/default"

_TERMINAL = ("completed", "failed", "canceled")


class FakeInvokeAI(FaultSwitches):
    """The fake server: state, a respx router, and knobs for the tests."""

    def __init__(
        self,
        captures: Captures | None = None,
        schema: OpenAPISchema | None = None,
        base_url: str = BASE_URL,
    ) -> None:
        import respx  # a test tool: the plugin's "testing" extra

        captures = captures or Captures()
        self.captures = captures
        self.schema = schema or schema_of(captures)
        self.base_url = base_url
        FaultSwitches.__init__(self)
        self.lock = threading.RLock()
        self.boards: list[dict[str, Any]] = []
        self.models: list[dict[str, Any]] = []
        self.presets: list[dict[str, Any]] = captures.body("style_presets_list_initial.json")
        self.items: dict[int, FakeItem] = {}
        self.images: dict[str, bytes] = {}
        #: The uploads it accepted: ``{image_name, data, filename, params}``.
        self.uploads: list[dict[str, Any]] = []
        self.next_item_id = 1
        #: Every request: (method, path with query).
        self.calls: list[tuple[str, str]] = []
        #: Statuses a new item shows on its successive polls; the last one stays.
        self.script: list[str] = ["pending", "in_progress", "completed"]
        #: Faults scripted for the next requests of a kind (:meth:`add_fault`): "connect"
        #: (never sent), "lost" (handled, answer lost), "dropped" (connection dropped before
        #: the server handled it), "truncated" (a download). Kinds: "board", "enqueue",
        #: "poll", "download", "upload".
        self.scripted: dict[str, list[str]] = {}
        #: Bumped by a restart: the item running then never finishes.
        self.generation = 0
        self.wakeup = threading.Condition(self.lock)
        #: Answer the next enqueue with this captured 422 instead of queuing.
        self.reject_next_enqueue: str | None = None
        #: The items a cancel request canceled, in order.
        self.canceled: list[int] = []
        #: Let an item finish just as it is canceled (the race at the end of max_wait).
        self.complete_on_cancel = False
        #: The socket.io endpoint, when one is attached.
        self.sio: SocketIOEndpoint | None = None
        #: Once an item was polled this many times, it runs by itself on a thread, pushing
        #: its events (the polls stop advancing it: give it the script ``["pending"]``);
        #: 0: as soon as it is enqueued, as on the real server.
        self.run_after_polls: int | None = None
        #: Cut the sockets instead of pushing this final status (the event is lost).
        self.drop_instead_of: str | None = None
        #: Items are run by a queue worker (:class:`~.served.ServedInvokeAI`), not by polls.
        self.runs_queue = False
        self.runners: list[threading.Thread] = []
        self.router = respx.mock(base_url=base_url, assert_all_called=False)
        self._routes()
        #: The httpx transport to give a generator (``transport=``): the fake's routes.
        self.transport = httpx.MockTransport(self.router.handler)

    # -- helpers for tests ---------------------------------------------------------------

    def attach_socketio(self, endpoint: SocketIOEndpoint) -> None:
        """Push events on ``endpoint``; its subscriptions are logged in :attr:`calls`."""
        self.sio = endpoint

        def subscribed(queue_id: str) -> None:
            with self.lock:
                self.calls.append(("SOCKET.IO", f"subscribe_queue {queue_id}"))

        endpoint.on_subscribe = subscribed

    def wait_for_runners(self, timeout: float = 10.0) -> None:
        """Wait until the items running by themselves are done."""
        for runner in list(self.runners):
            runner.join(timeout)

    def count(self, method: str, path: str) -> int:
        """How many requests went to ``method path`` (path without query)."""
        with self.lock:
            return sum(1 for m, p in self.calls if m == method and p.split("?")[0] == path)

    @property
    def enqueued(self) -> list[dict[str, Any]]:
        """The bodies of the enqueue requests the fake handled."""
        with self.lock:
            return [item.body for item in self.items.values()]

    def add_fault(self, kind: str, *faults: str) -> None:
        """Make the next requests of ``kind`` (enqueue, poll, board, download...) fail."""
        with self.lock:
            self.scripted.setdefault(kind, []).extend(faults)

    def _fault(self, kind: str) -> str | None:
        with self.lock:
            pending = self.scripted.get(kind)
            return pending.pop(0) if pending else None

    def prune(self) -> int:
        """``PUT /queue/default/prune``: delete every completed, failed and canceled item
        (the server sends no event for it); return how many."""
        with self.lock:
            ended = [i for i, item in self.items.items() if item.status in _TERMINAL]
            for item_id in ended:
                del self.items[item_id]
            return len(ended)

    @staticmethod
    def _raise_before(fault: str | None, request: httpx.Request) -> None:
        if fault == "connect":
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if fault == "dropped":
            raise httpx.RemoteProtocolError("Server disconnected without response", request=request)

    @staticmethod
    def _raise_after(fault: str | None, request: httpx.Request) -> None:
        if fault == "lost":
            raise httpx.ReadTimeout("timed out", request=request)

    # -- routes --------------------------------------------------------------------------

    def _routes(self) -> None:
        r = self.router
        r.route(method="GET", path="/api/v1/app/version").mock(side_effect=self._version)
        r.route(method="POST", path="/api/v1/images/upload").mock(
            side_effect=lambda request: answer_upload(self, request)
        )
        r.route(method="GET", path="/api/v1/boards/").mock(side_effect=self._list_boards)
        r.route(method="POST", path="/api/v1/boards/").mock(side_effect=self._create_board)
        r.route(method="GET", path="/api/v2/models/").mock(side_effect=self._list_models)
        r.route(method="GET", path="/api/v1/style_presets/").mock(side_effect=self._presets)
        r.route(method="POST", path=f"{QUEUE}/enqueue_batch").mock(side_effect=self._enqueue)
        r.route(method="GET", path=f"{QUEUE}/list_all").mock(side_effect=self._list_all)
        r.route(method="GET", path__regex=rf"^{QUEUE}/i/(?P<item_id>\d+)$").mock(
            side_effect=self._get_item
        )
        r.route(method="PUT", path__regex=rf"^{QUEUE}/i/(?P<item_id>\d+)/cancel$").mock(
            side_effect=self._cancel
        )
        r.route(method="GET", path__regex=r"^/api/v1/images/i/(?P<name>[^/]+)/full$").mock(
            side_effect=self._image
        )
        r.route(method="GET", path__regex=r"^/api/v1/images/i/(?P<name>[^/]+)/metadata$").mock(
            side_effect=lambda request, name: answer_image_metadata(self, request, name)
        )
        r.route(method="GET", path="/api/v1/images/").mock(
            side_effect=lambda request: answer_image_search(self, request)
        )
        # InvokeAI answers every other GET with its web UI's page.
        r.route(method="GET").mock(side_effect=self._html)

    def _log(self, request: httpx.Request) -> None:
        with self.lock:
            query = request.url.query.decode()
            self.calls.append((request.method, request.url.path + (f"?{query}" if query else "")))

    def _version(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        return self.captures.response("app_version.json")

    def _html(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        return self.captures.response("rec_unknown_path_html.json")

    def _list_boards(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        if request.url.params.get("all") != "true":
            return self.captures.response("boards_list_noparams.json")
        with self.lock:
            return self.captures.response("boards_list_all_one.json", body=list(self.boards))

    def _create_board(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        fault = self._fault("board")
        self._raise_before(fault, request)
        board = self.captures.body("board_create.json")
        board.update(board_id=str(uuid.uuid4()), board_name=request.url.params["board_name"])
        with self.lock:
            board["created_at"] = board["updated_at"] = (
                f"2026-11-26 06:20:{len(self.boards):02}.000"
            )
            self.boards.append(board)
        self._raise_after(fault, request)
        return self.captures.response("board_create.json", body=board)

    def _list_models(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        params = request.url.params
        with self.lock:
            models = [
                m
                for m in self.models
                if ("model_type" not in params or m["type"] == params["model_type"])
                and ("base_models" not in params or m["base"] in params["base_models"].split(","))
            ]
        return self.captures.response("models_list.json", body={"models": models})

    def _presets(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        with self.lock:
            return self.captures.response(
                "style_presets_list_initial.json", body=list(self.presets)
            )

    def _enqueue(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        fault = self._fault("enqueue")
        self._raise_before(fault, request)
        if self.take_fault("enqueue_drop"):
            raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
        body = json.loads(request.content)
        with self.lock:
            rejected, self.reject_next_enqueue = self.reject_next_enqueue, None
        if rejected:
            return self.captures.response(rejected)
        errors = self.schema.validate_enqueue(body)
        # A graph the real server would refuse is a bug in the generator: fail the test.
        assert not errors, "the generator sent an invalid graph:\n" + "\n".join(errors)
        if self.take_fault("enqueue_500"):
            # The router turns the queue service's exception into a 500 (its transaction
            # is rolled back: nothing is queued).
            detail = "Unexpected error while enqueuing batch: database is locked"
            return httpx.Response(500, json={"detail": detail})
        with self.lock:
            item = FakeItem(self.next_item_id, body, self.script)
            self.next_item_id += 1
            self.items[item.item_id] = item
            self.wakeup.notify_all()
        answer = self.captures.body("enqueue_blank_image.json")
        batch = item.batch
        answer["batch"].update(
            batch_id=item.batch_id,
            origin=batch.get("origin"),
            destination=batch.get("destination"),
            data=batch.get("data"),
            graph=batch["graph"],
            runs=batch["runs"],
        )
        answer["item_ids"] = [item.item_id]
        self._emit_batch_enqueued(item)
        if self.run_after_polls == 0:
            with self.lock:
                self._start_running(item)
        self._raise_after(fault, request)
        if self.take_fault("enqueue_lost"):  # queued, but the answer never left
            raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
        return self.captures.response("enqueue_blank_image.json", body=answer)

    def _list_all(self, request: httpx.Request) -> httpx.Response:
        self._log(request)
        destination = request.url.params.get("destination")
        with self.lock:
            items = [
                self._item_body(item)
                for item in self.items.values()
                if destination is None or item.batch.get("destination") == destination
            ]
        return self.captures.response("rec_queue_list_all_by_destination.json", body=items)

    def _get_item(self, request: httpx.Request, item_id: str) -> httpx.Response:
        self._log(request)
        self._raise_before(self._fault("poll"), request)
        with self.lock:
            item = self.items.get(int(item_id))
            if item is None:
                missing = self.captures.body("queue_item_get_missing.json")
                missing["detail"] = f"Queue item with id {item_id} not found in queue default"
                return self.captures.response("queue_item_get_missing.json", body=missing)
            item.polls += 1
            if item.status not in _TERMINAL and item.script and not self.runs_queue:
                self._advance(item, item.script.pop(0) if len(item.script) > 1 else item.script[0])
            answer = self.captures.response(
                "queue_item_blank_completed.json", body=self._item_body(item)
            )
            if self.run_after_polls is not None and item.polls >= self.run_after_polls:
                self._start_running(item)
            return answer

    def _start_running(self, item: FakeItem) -> None:
        """Run a pending item by itself on a thread (once; the lock held)."""
        if item.status == "pending" and not item.running:
            item.running = True
            runner = threading.Thread(target=self._run, args=(item,), daemon=True)
            self.runners.append(runner)
            runner.start()

    def _cancel(self, request: httpx.Request, item_id: str) -> httpx.Response:
        self._log(request)
        with self.lock:
            item = self.items[int(item_id)]
            if self.complete_on_cancel:
                self._advance(item, "completed")
            # InvokeAI leaves a finished item as it is.
            if item.status not in ("completed", "failed", "canceled"):
                item.status = "canceled"
                self.canceled.append(item.item_id)
                self._emit_status(item)
            return self.captures.response(
                "queue_item_cancel_pending.json", body=self._item_body(item)
            )

    def _image(self, request: httpx.Request, name: str) -> httpx.Response:
        self._log(request)
        fault = self._fault("download")
        self._raise_before(fault, request)
        with self.lock:
            data = self.images.get(name)
        if data is None:
            return self.captures.response("image_full_missing.json")
        headers = dict(self.captures.record("image_full_blank.json")["headers"])
        headers["content-length"] = str(len(data))
        if fault == "truncated":
            return httpx.Response(
                200, content=data[: len(data) // 2], headers={"content-type": "image/png"}
            )
        if self.take_fault("image_500"):  # an uncaught error: Starlette's own answer
            return httpx.Response(
                500,
                text="Internal Server Error",
                headers={"content-type": "text/plain; charset=utf-8"},
            )
        if self.take_fault("image_drop"):
            raise httpx.RemoteProtocolError(DISCONNECTED, request=request)
        if self.take_fault("image_truncated"):  # the full length announced, half sent
            return httpx.Response(200, headers=headers, stream=CutShort(data))
        return httpx.Response(200, content=data, headers=headers)

    # -- running items -------------------------------------------------------------------

    def _advance(self, item: FakeItem, status: str) -> None:
        before = item.status
        self._set_status(item, status)
        if item.status != before:
            self._emit_status(item)
            if item.status == "completed" and self.take_fault("prune_after_finish"):
                self.prune()  # as a /prune sent right after the item finished

    def _set_status(self, item: FakeItem, status: str) -> None:
        if status != "completed":
            item.status = status
            return
        missing = self._unknown_model(item.batch["graph"])
        if missing is not None:
            item.status = "failed"
            item.error = ("Exception", f"Unknown model: {missing}")
            return
        item.status = "completed"
        graph = item.batch["graph"]
        for node_id in graph["nodes"]:
            if node_id not in item.outputs:
                self._make_image(item, node_id)

    def _make_image(self, item: FakeItem, node_id: str) -> dict[str, Any] | None:
        """Save the image node ``node_id`` makes, if it makes one; its result's fields."""
        graph = item.batch["graph"]
        node = graph["nodes"][node_id]
        output = self.schema.node_schemas[node["type"]]["output"]["$ref"]
        if not output.endswith("/ImageOutput"):
            return None
        width, height = image_size(graph, node_id)
        name = f"{uuid.uuid4()}.png"
        with self.lock:
            item.outputs[node_id] = (name, (width, height))
            self.images[name] = self._png(width, height, graph, node.get("metadata"))
        return {"image": {"image_name": name}, "width": width, "height": height}

    def _emit_status(self, item: FakeItem) -> None:
        """Push the item's new status (none for ``pending``: the server sends none)."""
        if self.sio is None or item.status == "pending":
            return
        if self.drop_instead_of == item.status:
            self.drop_instead_of = None
            self.sio.drop()
            return
        error = item.error if item.status == "failed" else None
        self.sio.emit(
            "queue_item_status_changed", status_changed(item.ids, item.status, error=error)
        )
        if item.status == "in_progress" and self.take_fault("events_drop"):
            self.sio.drop()

    def _emit_batch_enqueued(self, item: FakeItem) -> None:
        if self.sio is None:
            return
        data = self.sio.rec.payload("batch_enqueued")
        data.update(batch_id=item.batch_id, origin=item.batch.get("origin"))
        self.sio.emit("batch_enqueued", data)

    def _run(self, item: FakeItem, seconds: float = 0.0) -> None:
        """Run the item as the server does, pushing its events as they happen; it takes
        ``seconds``. A restart meanwhile (the server died) ends it where it is."""
        with self.lock:
            generation = self.generation
            self._advance(item, "in_progress")
        graph = item.batch["graph"]
        missing = self._unknown_model(graph)
        for node_id, node in graph["nodes"].items():
            is_loader = node["type"].endswith("model_loader")
            if missing is not None and not is_loader:
                continue
            self._emit(
                "invocation_started",
                invocation_event("invocation_started", item.ids, node_id, node),
            )
            if missing is not None:  # the loader fails, as on the real server
                with self.lock:
                    self._advance(item, "completed")
                error = item.error
                event = invocation_event("invocation_error", item.ids, node_id, node, error=error)
                self._emit("invocation_error", event)
                return
            if node["type"] == "denoise_latents":
                steps = int(node["steps"])
                for step in range(steps + 1):
                    event = invocation_event(
                        "invocation_progress", item.ids, node_id, node,
                        message="Denoising", percentage=step / steps,
                    )  # fmt: skip
                    self._emit("invocation_progress", event)
            if seconds and node_id == output_node(graph):
                time.sleep(seconds)
            with self.lock:
                if self.generation != generation or item.status != "in_progress":
                    return  # restarted (the process died), or canceled: nothing more
                made = self._make_image(item, node_id)
            result = None
            if made is not None:
                event = invocation_event("invocation_progress", item.ids, node_id, node)
                self._emit("invocation_progress", event)  # "Saving image", as recorded
                result = {**recording().payload("invocation_complete")["result"], **made}
            self._emit(
                "invocation_complete",
                invocation_event("invocation_complete", item.ids, node_id, node, result=result),
            )
        with self.lock:
            if self.generation == generation and item.status == "in_progress":
                self._advance(item, "completed")

    def _emit(self, name: str, data: dict[str, Any]) -> None:
        if self.sio is not None:
            self.sio.emit(name, data)

    def _unknown_model(self, graph: dict[str, Any]) -> str | None:
        keys = {m["key"] for m in self.models}
        for node in graph["nodes"].values():
            model = node.get("model")
            loader = node["type"].endswith("model_loader") and isinstance(model, dict)
            if loader and model.get("key") not in keys:
                return str(model.get("key"))
        return None

    def _png(self, width: int, height: int, graph: dict[str, Any], metadata: Any = None) -> bytes:
        if (width, height) == (1080, 1920) and metadata is None:
            return self.captures.bytes("blank_full.png")  # what the server sent for this size
        info = PngImagePlugin.PngInfo()
        if metadata is not None:  # a node's metadata, as the server writes it
            info.add_text("invokeai_metadata", json.dumps(metadata))
        info.add_text("invokeai_graph", json.dumps(graph))
        buf = io.BytesIO()
        Image.new("RGB", (width, height), (30, 144, 255)).save(buf, "PNG", pnginfo=info)
        return buf.getvalue()

    def _item_body(self, item: FakeItem) -> dict[str, Any]:
        return item_body(self.captures, item)
