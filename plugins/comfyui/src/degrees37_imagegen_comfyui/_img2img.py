"""Image-to-image, input images and LoRAs in ComfyUI workflows, with no I/O.

The built-in workflow becomes image-to-image as ComfyUI's own img2img example does it:
``LoadImage`` (titled ``init_image``) -> ``ImageScale`` to the requested size -> ``VAEEncode``
-> the KSampler's ``latent_image``, with ``denoise`` = strength.

A template receives an uploaded image in a node titled after it (``init_image``, or a name
from the ``images`` option) that has an ``image`` input, where the ``mapping`` setting puts
that name, or where an input holds its ``{{placeholder}}``.

LoRAs are a chain of ``LoraLoader`` nodes after the workflow's checkpoint loader: everything
that used the checkpoint's model and CLIP uses the last LoRA's instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from degrees37_imagegen.errors import InvalidRequestError

from ._workflow import builtin_workflow, is_link

__all__ = [
    "IMG2IMG_MAPPING",
    "add_lora_chain",
    "builtin_img2img_workflow",
    "combo_options",
    "fill_titled_images",
    "match_lora",
    "norm_title",
    "resolve_loras",
    "titled_image_nodes",
]

#: Where the built-in image-to-image workflow takes the image and the strength.
IMG2IMG_MAPPING: dict[str, Any] = {
    "init_image": "10.image",
    "strength": "3.denoise",
    "width": "12.width",
    "height": "12.height",
}


def builtin_img2img_workflow() -> dict[str, Any]:
    """The built-in text-to-image workflow, starting from an image instead of noise."""
    workflow = builtin_workflow()
    del workflow["5"]  # the empty latent
    workflow["10"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "init_image"},
    }
    workflow["12"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["10", 0],
            "upscale_method": "lanczos",
            "width": 512,
            "height": 512,
            "crop": "center",
        },
        "_meta": {"title": "Upscale Image"},
    }
    workflow["11"] = {
        "class_type": "VAEEncode",
        "inputs": {"pixels": ["12", 0], "vae": ["4", 2]},
        "_meta": {"title": "VAE Encode"},
    }
    workflow["3"]["inputs"]["latent_image"] = ["11", 0]
    return workflow


def combo_options(info: Mapping[str, Any], input_name: str) -> list[str]:
    """The choices of a combo input in an ``/object_info`` entry (either layout: a list
    first, or ``["COMBO", {"options": [...]}]``)."""
    inputs = info.get("input", {}) if isinstance(info, Mapping) else {}
    spec = {**inputs.get("optional", {}), **inputs.get("required", {})}.get(input_name)
    if not isinstance(spec, list) or not spec:
        return []
    if isinstance(spec[0], list):
        return [str(n) for n in spec[0]]
    if len(spec) > 1 and isinstance(spec[1], Mapping):
        return [str(n) for n in spec[1].get("options", [])]
    return []


def norm_title(title: str) -> str:
    """A node title as titles are compared: lower case, ``_`` for spaces and dashes."""
    return re.sub(r"[\s\-]+", "_", title.strip().lower())


def titled_image_nodes(nodes: Mapping[str, Any]) -> dict[str, list[str]]:
    """Image inputs named by node titles: normalised title -> ids of the nodes so titled
    that have a literal ``image`` input (``LoadImage`` and the like)."""
    found: dict[str, list[str]] = {}
    for node_id, node in nodes.items():
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, Mapping) else None
        image = node.get("inputs", {}).get("image")
        if isinstance(title, str) and isinstance(image, str):
            found.setdefault(norm_title(title), []).append(str(node_id))
    return found


def fill_titled_images(
    workflow: dict[str, Any], titled: Mapping[str, Sequence[str]], names: Mapping[str, str]
) -> set[str]:
    """Put each uploaded image (``names``: name -> ``LoadImage`` value) into the nodes
    titled after it; in place. Returns the names that found a node."""
    used: set[str] = set()
    for name, value in names.items():
        for node_id in titled.get(norm_title(name), ()):
            workflow[node_id]["inputs"]["image"] = value
            used.add(name)
    return used


def match_lora(name: str, available: Sequence[str]) -> str | None:
    """The server's LoRA file for ``name``: the exact file name, else the one whose name
    without folder and extension is ``name`` (any case)."""
    if name in available:
        return name
    wanted = name.casefold()
    for candidate in available:
        stem = candidate.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if wanted in (candidate.casefold(), stem.casefold()):
            return candidate
    return None


def resolve_loras(
    wanted: Sequence[Mapping[str, Any]], available: Sequence[str]
) -> list[tuple[str, float]]:
    """``(file name, weight)`` for each wanted LoRA; an unknown one is an
    :class:`InvalidRequestError` naming it and listing the server's LoRAs."""
    out: list[tuple[str, float]] = []
    for item in wanted:
        found = match_lora(str(item["name"]), available)
        if found is None:
            have = ", ".join(available) or "none"
            raise InvalidRequestError(
                f"loras: ComfyUI has no LoRA {item['name']!r}; its LoRAs: {have}"
            )
        out.append((found, float(item["weight"])))
    return out


def add_lora_chain(workflow: dict[str, Any], loras: Sequence[tuple[str, float]]) -> None:
    """Chain ``LoraLoader`` nodes after the workflow's checkpoint loader; in place."""
    if not loras:
        return
    loaders = [
        node_id
        for node_id, node in workflow.items()
        if isinstance(node.get("inputs", {}).get("ckpt_name"), str)
    ]
    if len(loaders) != 1:
        raise InvalidRequestError(
            "loras: the workflow needs exactly one checkpoint loader to chain LoRAs after "
            f"(it has {len(loaders)}); put LoraLoader nodes in the template instead"
        )
    checkpoint = loaders[0]
    model, clip = [checkpoint, 0], [checkpoint, 1]
    users = [
        (node, name, value)
        for node in workflow.values()
        for name, value in node.get("inputs", {}).items()
        if is_link(value) and str(value[0]) == checkpoint and value[1] in (0, 1)
    ]
    for i, (lora_name, weight) in enumerate(loras, 1):
        node_id = f"lora_{i}"
        while node_id in workflow:
            node_id += "_"
        workflow[node_id] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": copy.copy(model),
                "clip": copy.copy(clip),
                "lora_name": lora_name,
                "strength_model": weight,
                "strength_clip": weight,
            },
            "_meta": {"title": f"LoRA {lora_name}"},
        }
        model, clip = [node_id, 0], [node_id, 1]
    for node, name, value in users:
        node["inputs"][name] = list(model if value[1] == 0 else clip)
