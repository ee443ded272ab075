"""What the fake ComfyUI's parts share: the shipped captures and the small records."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = [
    "CAPTURES",
    "EMPTY_IMAGE_TEMPLATE",
    "TEXT_500",
    "CaptureFolder",
    "Item",
    "NodeError",
    "Recorded",
    "is_link",
    "load_capture",
    "ms",
]

#: A folder of captures: a directory, or the package data shipped with the plugin.
CaptureFolder = Union[Path, "Traversable"]

#: The captures the fake reads, recorded from a real ComfyUI 0.3.64 (package data).
CAPTURES: CaptureFolder = resources.files("degrees37_imagegen_comfyui") / "_captures"

#: EmptyImage into SaveImage, with width, height and colour as placeholders.
EMPTY_IMAGE_TEMPLATE: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {
            "width": "{{width}}",
            "height": "{{height}}",
            "batch_size": 1,
            "color": "{{color}}",
        },
        "_meta": {"title": "EmptyImage"},
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "imagegen_test"},
        "_meta": {"title": "Save Image"},
    },
}


TEXT_500 = "500 Internal Server Error\n\nServer got itself in trouble"


def load_capture(name: str, folder: CaptureFolder = CAPTURES) -> Any:
    """A capture file (JSON) from ``folder``: by default the ones shipped with the plugin."""
    return json.loads((folder / name).read_text(encoding="utf-8"))


def ms() -> int:
    """Now, in milliseconds (ComfyUI's timestamps)."""
    return int(time.time() * 1000)


def is_link(value: Any) -> bool:
    """Whether an input is a link ``[node_id, output_index]``."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


class NodeError(Exception):
    """A node failed while running (becomes ``execution_error``)."""

    def __init__(self, exception_type: str, message: str, traceback: list[str]) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message
        self.traceback = traceback


@dataclass
class Recorded:
    """One HTTP request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class Item:
    """One queued prompt: ``[number, prompt_id, prompt, extra_data, outputs]`` on the wire."""

    number: int
    prompt_id: str
    prompt: dict[str, Any]
    extra: dict[str, Any]
    outputs: list[str]

    def wire(self) -> list[Any]:
        """The item as ``/queue`` and ``/history`` show it."""
        return [self.number, self.prompt_id, self.prompt, self.extra, self.outputs]
