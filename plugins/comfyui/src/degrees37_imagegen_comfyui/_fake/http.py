"""The fake ComfyUI's HTTP side: its routes, its faults, and the upgrade to a WebSocket."""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request
from websockets.server import ServerProtocol

from degrees37_imagegen.testing._wsfake import ServerSocket

from .common import TEXT_500, Recorded, load_capture

if TYPE_CHECKING:
    from .server import FakeComfyUI


class _Socket(ServerSocket):
    """One accepted WebSocket of the fake ComfyUI."""

    def serve(self) -> None:
        """Read the client's frames until it closes (answering pings and the close)."""
        while self.frames():  # what the client sends (feature_flags...) is ignored
            pass


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
                stats = load_capture("get_system_stats.json", fake.captures)
                body = stats["response"]["body"]["json"]
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
        if fake.take_fault("view_500", filename):
            self._reply(500, TEXT_500)
            return
        if fake.take_fault("view_drop", filename):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fake.take_fault("view_truncated", filename):
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
        workflow = body.get("prompt") if isinstance(body, dict) else None
        subject = json.dumps(workflow, sort_keys=True) if workflow is not None else None
        if request.path == "/prompt" and fake.take_fault("post_drop", subject):
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if request.path == "/prompt" and fake.take_fault("post_500", subject):
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
