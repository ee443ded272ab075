"""Workflows as data: ComfyUI's standard text-to-image workflow, and reading a template
file into API-format nodes (checked, so that a bad file is a :class:`ConfigError`)."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from degrees37_imagegen.errors import ConfigError

__all__ = ["BUILTIN_DEFAULTS", "builtin_workflow", "check_api_format", "is_link", "load_workflow"]

#: What the built-in workflow uses for a setting that is not set.
BUILTIN_DEFAULTS: dict[str, Any] = {
    "checkpoint": "v1-5-pruned-emaonly.safetensors",
    "steps": 20,
    "cfg": 7.0,
    "sampler": "euler",
    "scheduler": "normal",
}

_KEY_TEMPLATE = "workflow_template"


def is_link(value: Any) -> bool:
    """Whether an input value is a link ``[node_id, output_index]`` to another node."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def builtin_workflow() -> dict[str, Any]:
    """ComfyUI's standard text-to-image workflow in API format (as ``Export (API)`` writes
    it): checkpoint loader, positive and negative text encoders, empty latent, KSampler,
    VAE decode, save."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 0,
                "steps": BUILTIN_DEFAULTS["steps"],
                "cfg": BUILTIN_DEFAULTS["cfg"],
                "sampler_name": BUILTIN_DEFAULTS["sampler"],
                "scheduler": BUILTIN_DEFAULTS["scheduler"],
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": BUILTIN_DEFAULTS["checkpoint"]},
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "", "clip": ["4", 1]},
            "_meta": {"title": "positive"},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "", "clip": ["4", 1]},
            "_meta": {"title": "negative"},
        },
        "8": {
            "class_type": "VAEDecode",
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
            "_meta": {"title": "VAE Decode"},
        },
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "imagegen", "images": ["8", 0]},
            "_meta": {"title": "Save Image"},
        },
    }


def load_workflow(value: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Read a workflow from a JSON file (or take it as given); return it and its name.

    Raises :class:`ConfigError` (key ``workflow_template``) for a missing file, bad JSON or
    a workflow that is not in API format.
    """
    if isinstance(value, Mapping):
        return check_api_format(copy.deepcopy(dict(value)), "the workflow template"), "inline"
    path = Path(value).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"workflow file not found: {path}", key=_KEY_TEMPLATE) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", key=_KEY_TEMPLATE) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            key=_KEY_TEMPLATE,
        ) from None
    return check_api_format(data, str(path)), path.name


def check_api_format(data: Any, source: str) -> dict[str, Any]:
    """``data`` as API-format nodes (id -> node with ``class_type`` and ``inputs``); a saved
    ``POST /prompt`` body is unwrapped. Raises :class:`ConfigError` naming ``source``."""
    if isinstance(data, Mapping) and isinstance(data.get("nodes"), list):
        raise ConfigError(
            f"{source} is a UI-format workflow (as the web UI saves it), but the API needs "
            "the API format: in ComfyUI use Workflow > Export (API)",
            key=_KEY_TEMPLATE,
        )
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("prompt"), Mapping)
        and "class_type" not in data["prompt"]
    ):
        data = data["prompt"]  # a saved POST /prompt body: {"prompt": {...}, "client_id": ...}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source} is not an API-format workflow (expected a JSON object of nodes, "
            f"got {type(data).__name__})",
            key=_KEY_TEMPLATE,
        )
    if not data:
        raise ConfigError(f"{source} has no nodes", key=_KEY_TEMPLATE)
    nodes: dict[str, Any] = {}
    for node_id, node in data.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            raise ConfigError(
                f"{source}: node {node_id!r} has no class_type, so this is not an API-format "
                "workflow (export it with Workflow > Export (API))",
                key=_KEY_TEMPLATE,
            )
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            raise ConfigError(
                f"{source}: node {node_id} ({node['class_type']}) has inputs that are not an "
                "object",
                key=_KEY_TEMPLATE,
            )
        nodes[str(node_id)] = {**node, "inputs": dict(inputs)}
    for node_id, node in nodes.items():
        for name, value in node["inputs"].items():
            if is_link(value) and str(value[0]) not in nodes:
                raise ConfigError(
                    f"{source}: input {name!r} of node {node_id} ({node['class_type']}) is "
                    f"linked to node {value[0]}, which is not in the workflow",
                    key=_KEY_TEMPLATE,
                )
    return nodes
