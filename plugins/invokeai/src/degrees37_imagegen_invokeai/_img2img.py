"""Image-to-image, as InvokeAI's web UI builds it, and input images in graph templates.

The built-in graphs become image-to-image the way the web UI's ``addImageToImage`` does it:
the uploaded image is resized to the generated size (``img_resize``), encoded by the model's
VAE (``i2l``, image to latents) into the latents the denoiser starts from, and the denoiser
starts at ``denoising_start = 1 - strength`` (strength 1 regenerates everything, 0 keeps
the image). No I/O here.

In a graph template an image field receives an uploaded image where it holds a placeholder:
``"image": "{{init_image}}"`` (the field becomes ``{"image_name": ...}``) or
``"image": {"image_name": "{{init_image}}"}``. Any name works, so a template with a mask or a
reference image takes it from the ``images`` option.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "INIT_IMAGE",
    "add_image_to_image",
    "fill_images",
    "image_placeholders",
]

#: The placeholder (and option) naming the image img2img starts from.
INIT_IMAGE = "init_image"

_WHOLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_RESIZE = "init_image_resize"
_I2L = "init_image_i2l"
_DENOISE = "denoise_latents"


def _edge(source: str, source_field: str, destination: str, destination_field: str) -> Any:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def _loader(graph: Mapping[str, Any]) -> str:
    for node_id, node in graph["nodes"].items():
        if node.get("type") in ("sdxl_model_loader", "main_model_loader"):
            return str(node_id)
    raise ValueError("the graph has no model loader")


def add_image_to_image(
    graph: dict[str, Any],
    image_name: str,
    strength: float,
    width: int,
    height: int,
    *,
    fp32: bool = False,
) -> None:
    """Make a built-in text-to-image ``graph`` start from image ``image_name``; in place."""
    nodes = graph["nodes"]
    loader = _loader(graph)
    nodes[_RESIZE] = {
        "id": _RESIZE,
        "type": "img_resize",
        "is_intermediate": True,
        "use_cache": True,
        "image": {"image_name": image_name},
        "width": width,
        "height": height,
        "resample_mode": "lanczos",
    }
    nodes[_I2L] = {
        "id": _I2L,
        "type": "i2l",
        "is_intermediate": True,
        "use_cache": True,
        "fp32": fp32,
    }
    denoise = nodes[_DENOISE]
    denoise["denoising_start"] = round(1.0 - strength, 6)
    denoise["denoising_end"] = 1
    graph["edges"].extend(
        [
            _edge(_RESIZE, "image", _I2L, "image"),
            _edge(loader, "vae", _I2L, "vae"),
            _edge(_I2L, "latents", _DENOISE, "latents"),
        ]
    )
    metadata = nodes.get("core_metadata")
    if metadata is not None:
        sdxl = str(metadata.get("generation_mode", "")).startswith("sdxl")
        metadata["generation_mode"] = "sdxl_img2img" if sdxl else "img2img"
        metadata["strength"] = strength
        metadata["init_image"] = image_name


def image_placeholders(graph: Any, key: str | None = None) -> set[str]:
    """The placeholders of ``graph`` that stand for images: a whole ``"{{name}}"`` that is
    the value of an ``image_name`` key, or of an image field (``image``, ``mask``,
    ``*_image``), and ``{{init_image}}`` wherever it is whole."""
    found: set[str] = set()
    if isinstance(graph, str):
        whole = _WHOLE.fullmatch(graph.strip())
        if whole and (whole.group(1) == INIT_IMAGE or _is_image_key(key)):
            found.add(whole.group(1))
    elif isinstance(graph, Mapping):
        for name, value in graph.items():
            found |= image_placeholders(value, str(name))
    elif isinstance(graph, list):
        for value in graph:
            found |= image_placeholders(value, key)
    return found


def _is_image_key(key: str | None) -> bool:
    if key is None:
        return False
    return key in ("image", "image_name", "mask", "images") or key.endswith("_image")


def fill_images(graph: Any, names: Mapping[str, str], key: str | None = None) -> Any:
    """A copy of ``graph`` with image placeholders replaced by InvokeAI image names:
    ``{"image_name": name}`` for an image field, the bare name under ``image_name``."""
    if isinstance(graph, str):
        whole = _WHOLE.fullmatch(graph.strip())
        if whole and whole.group(1) in names:
            name = names[whole.group(1)]
            return name if key == "image_name" else {"image_name": name}
        return graph
    if isinstance(graph, Mapping):
        return {k: fill_images(v, names, str(k)) for k, v in graph.items()}
    if isinstance(graph, list):
        return [fill_images(v, names, key) for v in graph]
    return copy.deepcopy(graph)
