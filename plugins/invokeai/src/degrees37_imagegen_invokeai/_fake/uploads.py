"""The fake InvokeAI's ``POST /api/v1/images/upload``, answering as InvokeAI 6.14.2 does.

From the recorded answers (``image_upload*.json``) and InvokeAI's router
(``invokeai/app/api/routers/images.py``, ``upload_image``): both query parameters are
required (422 otherwise); a part whose content type is not ``image/*`` is refused with 415
``Not an image``; bytes PIL cannot open with 415 ``Failed to read image``; otherwise 201
with the new image's DTO and a ``location`` header. Every upload makes a new image, even of
the same bytes.
"""

from __future__ import annotations

import io
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

if TYPE_CHECKING:
    from .server import FakeInvokeAI

__all__ = ["answer_upload", "uploads_of"]


def uploads_of(fake: FakeInvokeAI) -> list[dict[str, Any]]:
    """The uploads ``fake`` accepted: ``{image_name, data, filename, params}``."""
    return fake.uploads


def _parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts[str(name)] = (part.get_filename(), part.get_content_type(), data)
    return parts


def answer_upload(fake: FakeInvokeAI, request: httpx.Request) -> httpx.Response:
    """The answer of the real server to ``request``; accepted images go to ``fake.images``."""
    fake._log(request)
    params = request.url.params
    if "image_category" not in params or "is_intermediate" not in params:
        return fake.captures.response("image_upload_missing_params.json")
    parts = _parts(request)
    if "file" not in parts:
        return fake.captures.response("image_upload_missing_params.json")
    filename, content_type, data = parts["file"]
    if not content_type.startswith("image"):
        return fake.captures.response("image_upload_not_image.json")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
    except Exception:  # what InvokeAI does: any failure to read is a 415
        return fake.captures.response("image_upload_garbage_as_png.json")
    name = f"{uuid.uuid4()}.png"
    body = fake.captures.body("image_upload.json")
    body.update(
        image_name=name,
        image_url=f"api/v1/images/i/{name}/full",
        thumbnail_url=f"api/v1/images/i/{name}/thumbnail",
        width=width,
        height=height,
        is_intermediate=params["is_intermediate"] == "true",
        image_category=params["image_category"],
    )
    with fake.lock:
        fake.images[name] = data
        uploads_of(fake).append(
            {"image_name": name, "data": data, "filename": filename, "params": dict(params)}
        )
    return fake.captures.response("image_upload.json", body=body)
