"""Sending input images to ComfyUI: ``POST /upload/image`` (multipart, field ``image``).

Each image goes up under a name made from its content hash. ComfyUI keeps the name when a
file of that name with the same bytes is already there (its duplicate check), so an upload
is safe to repeat after a lost answer, and the generator's
:class:`~degrees37_imagegen.images.UploadCache` sends one content once per server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.errors import GeneratorError
from degrees37_imagegen.images import InputImage

from ._api import ComfyUIAPI

__all__ = ["UPLOAD_PATH", "loadimage_value", "upload_image"]

log = logging.getLogger("degrees37_imagegen_comfyui")

#: The upload route.
UPLOAD_PATH = "/upload/image"


def loadimage_value(answer: Mapping[str, Any]) -> str:
    """What a ``LoadImage`` node's ``image`` input takes for an upload's answer
    (``{"name", "subfolder", "type"}``): ``name``, or ``subfolder/name``."""
    name = answer.get("name")
    if not isinstance(name, str) or not name:
        raise GeneratorError(f"POST {UPLOAD_PATH} answered no file name: {dict(answer)!r}")
    subfolder = str(answer.get("subfolder") or "")
    return f"{subfolder}/{name}" if subfolder else name


def upload_image(api: ComfyUIAPI, image: InputImage) -> str:
    """Upload ``image`` into ComfyUI's input folder; the value a ``LoadImage`` node takes."""
    response = api.request(
        "POST",
        UPLOAD_PATH,
        files={"image": (image.filename, image.data, image.mime)},
        data={"type": "input"},
    )
    try:
        answer = response.json()
    except ValueError:
        raise GeneratorError(f"POST {UPLOAD_PATH} answered no JSON", work="unknown") from None
    if not isinstance(answer, Mapping):
        raise GeneratorError(f"POST {UPLOAD_PATH} answered {answer!r}", work="unknown")
    value = loadimage_value(answer)
    log.info("uploaded %s to ComfyUI as %s", image.source, value)
    return value
