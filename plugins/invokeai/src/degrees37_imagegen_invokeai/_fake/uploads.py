"""The fake InvokeAI's ``POST /api/v1/images/upload``, answering as InvokeAI 6.14.2 does.

From the recorded answers (``image_upload*.json``) and InvokeAI's router
(``invokeai/app/api/routers/images.py``, ``upload_image``): both query parameters are
required (422 otherwise); a part whose content type is not ``image/*`` is refused with 415
``Not an image``; bytes PIL cannot open with 415 ``Failed to read image``; otherwise 201
with the new image's DTO and a ``location`` header. Every upload makes a new image, even of
the same bytes. Its ``metadata`` form field (a JSON object) is kept, as the server keeps it:
``GET /api/v1/images/?search_term=`` finds the uploads whose metadata holds the term, newest
first (InvokeAI's ``images.metadata LIKE %term%``; ``rec_images_search_*.json``), and
``GET /api/v1/images/i/{name}/metadata`` answers it (``rec_image_metadata_*.json``).
"""

from __future__ import annotations

import io
import json
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

if TYPE_CHECKING:
    from .server import FakeInvokeAI

__all__ = ["answer_image_metadata", "answer_image_search", "answer_upload", "uploads_of"]


def uploads_of(fake: FakeInvokeAI) -> list[dict[str, Any]]:
    """The uploads ``fake`` accepted: ``{image_name, data, filename, params, metadata,
    dto}``, oldest first."""
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
    """The answer of the real server to ``request``; accepted images go to ``fake.images``.

    Faults of kind ``upload`` (:meth:`FakeInvokeAI.add_fault`) apply: ``connect``,
    ``dropped`` (never handled) and ``lost`` (stored, the answer lost)."""
    fake._log(request)
    fault = fake._fault("upload")
    fake._raise_before(fault, request)
    response = _upload(fake, request)
    fake._raise_after(fault, request)
    return response


def _upload(fake: FakeInvokeAI, request: httpx.Request) -> httpx.Response:
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
    metadata = _metadata(parts)
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
            {
                "image_name": name,
                "data": data,
                "filename": filename,
                "params": dict(params),
                "metadata": metadata,
                "dto": body,
            }
        )
    return fake.captures.response("image_upload.json", body=body)


def _metadata(parts: dict[str, tuple[str | None, str, bytes]]) -> Any:
    """The upload's ``metadata`` field as the server keeps it (a JSON object), else ``None``."""
    if "metadata" not in parts:
        return None
    try:
        value = json.loads(parts["metadata"][2])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def answer_image_search(fake: FakeInvokeAI, request: httpx.Request) -> httpx.Response:
    """``GET /api/v1/images/``: the uploads whose metadata holds ``search_term``, filtered
    by ``is_intermediate`` and ``categories``, newest first, paged by ``offset``/``limit``."""
    fake._log(request)
    params = request.url.params
    term = params.get("search_term", "").lower()
    intermediate = params.get("is_intermediate")
    categories = params.get_list("categories")
    with fake.lock:
        found = [
            u["dto"]
            for u in reversed(uploads_of(fake))
            if term in json.dumps(u["metadata"]).lower()
            and (intermediate is None or u["dto"]["is_intermediate"] == (intermediate == "true"))
            and (not categories or u["dto"]["image_category"] in categories)
            and u["image_name"] in fake.images
        ]
    offset, limit = int(params.get("offset", 0)), int(params.get("limit", 10))
    body: dict[str, Any] = {"limit": limit, "offset": offset, "total": len(found)}
    body["items"] = found[offset : offset + limit]
    return fake.captures.response("rec_images_search_found.json", body=body)


def answer_image_metadata(fake: FakeInvokeAI, request: httpx.Request, name: str) -> httpx.Response:
    """``GET /api/v1/images/i/{name}/metadata``: an upload's metadata (JSON ``null`` when it
    had none), 404 for an image the server does not have."""
    fake._log(request)
    with fake.lock:
        if name not in fake.images:
            return fake.captures.response("rec_image_metadata_missing.json")
        kept = next((u["metadata"] for u in uploads_of(fake) if u["image_name"] == name), None)
    return httpx.Response(
        200, content=json.dumps(kept).encode(), headers={"content-type": "application/json"}
    )
