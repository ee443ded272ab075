"""A ComfyUI behind ``httpx.MockTransport`` for input images, LoRAs and model lists.

It answers from the recorded exchanges (``upload_image_*.json``, ``get_models*.json``,
``ok_512x512_post_prompt.json``) and checks every submitted prompt against the real
``/object_info`` entries (``object_info_img2img.json``), as ComfyUI's ``validate_prompt``
does: known class, required inputs present, links to existing nodes whose output type is the
one the input takes, combo values in their list, and a ``LoadImage`` file that was uploaded
("Invalid image file" otherwise). Uploads follow ComfyUI's ``server.py``
(``image_upload``): the multipart field ``image``; a file of the same name and the same
bytes keeps its name, other bytes get ``name (1).ext``.
"""

from __future__ import annotations

import copy
import json
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx

__all__ = ["ComfyUIModels"]

CAPTURES = Path(__file__).parent / "captures"


def _capture(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text(encoding="utf-8"))


def _answer(name: str, body: Any = None, status: int | None = None) -> httpx.Response:
    response = _capture(name)["response"]
    content = response["body"].get("json") if body is None else body
    return httpx.Response(status or response["status"], json=content)


class ComfyUIModels:
    """The server: ``files`` (input folder), ``uploads`` made, ``prompts`` accepted."""

    def __init__(self, loras: list[str] | None = None, checkpoints: list[str] | None = None):
        info = _capture("object_info_img2img.json")
        info.pop("_note", None)
        self.object_info: dict[str, Any] = info
        self.loras = list(loras or [])
        self.checkpoints = list(checkpoints or [])
        self.files: dict[str, bytes] = {}
        self.uploads: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def info(self, class_type: str) -> dict[str, Any]:
        entry = copy.deepcopy(self.object_info[class_type])
        required = entry["input"]["required"]
        if "lora_name" in required:
            required["lora_name"][0] = list(self.loras)
        if "ckpt_name" in required:
            required["ckpt_name"][0] = list(self.checkpoints)
        if class_type == "LoadImage":
            required["image"][0] = sorted(self.files)
        return entry

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if request.method == "POST" and path == "/upload/image":
            return self._upload(request)
        if path == "/models":
            return _answer("get_models.json")
        if path == "/models/checkpoints":
            return _answer("get_models_checkpoints.json", body=list(self.checkpoints))
        if path == "/models/loras":
            return _answer("get_models_checkpoints.json", body=list(self.loras))
        if path.startswith("/object_info/"):
            name = path.rsplit("/", 1)[-1]
            return httpx.Response(
                200, json={name: self.info(name)} if name in self.object_info else {}
            )
        if request.method == "POST" and path == "/prompt":
            return self._prompt(json.loads(request.content))
        return httpx.Response(404, text="404: Not Found")

    def _upload(self, request: httpx.Request) -> httpx.Response:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + request.content)
        parts = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        image = parts.get("image")
        if image is None:
            return httpx.Response(400)  # as upload_image_no_file.json
        filename = str(image.get_filename())
        data = image.get_payload(decode=True) or b""
        name, n = filename, 1
        stem, dot, ext = filename.rpartition(".")
        while name in self.files and self.files[name] != data:
            name = f"{stem} ({n}){dot}{ext}"
            n += 1
        self.files[name] = data
        self.uploads.append({"filename": filename, "name": name, "data": data})
        body = _capture("upload_image_new.json")["response"]["body"]["json"]
        return _answer("upload_image_new.json", body={**body, "name": name})

    def errors(self, prompt: dict[str, Any]) -> list[str]:
        """What ComfyUI's validation would say about ``prompt`` (``[]``: it is valid)."""
        out: list[str] = []
        for node_id, node in prompt.items():
            class_type = node.get("class_type")
            if class_type not in self.object_info:
                out.append(f"{node_id}: unknown class {class_type}")
                continue
            spec = self.info(class_type)["input"]
            options = {**spec.get("optional", {}), **spec["required"]}
            inputs = node.get("inputs", {})
            out += [f"{node_id}.{n}: missing" for n in spec["required"] if n not in inputs]
            for name, value in inputs.items():
                config = options.get(name)
                if config is None:
                    continue
                kind = config[0]
                if isinstance(value, list):
                    source = prompt.get(str(value[0]))
                    if source is None:
                        out.append(f"{node_id}.{name}: link to missing node {value[0]}")
                        continue
                    outputs = self.object_info[source["class_type"]]["output"]
                    if outputs[value[1]] != kind:
                        out.append(f"{node_id}.{name}: {outputs[value[1]]} is not {kind}")
                elif isinstance(kind, list) and value not in kind:
                    out.append(f"{node_id}.{name}: {value!r} not in {kind!r}")
                elif kind == "FLOAT" and not (config[1]["min"] <= value <= config[1]["max"]):
                    out.append(f"{node_id}.{name}: {value} out of range")
        return out

    def _prompt(self, body: dict[str, Any]) -> httpx.Response:
        prompt = body["prompt"]
        self.prompts.append(prompt)
        errors = self.errors(prompt)
        if errors:
            return httpx.Response(400, json={"error": {"type": "x", "message": "; ".join(errors),
                                                       "details": "", "extra_info": {}},
                                             "node_errors": {}})  # fmt: skip
        answer = _capture("ok_512x512_post_prompt.json")["response"]["body"]["json"]
        return httpx.Response(200, json={**answer, "prompt_id": body.get("prompt_id")})
