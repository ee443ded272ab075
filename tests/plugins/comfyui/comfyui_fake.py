"""The tests' fake ComfyUI: :mod:`degrees37_imagegen_comfyui.testing`, reading every
capture (``scripted_posts`` included) from ``captures/`` beside this file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from degrees37_imagegen_comfyui import testing as _testing
from degrees37_imagegen_comfyui._fake.http import _Handler, _Socket
from degrees37_imagegen_comfyui.testing import (
    EMPTY_IMAGE_TEMPLATE,
    TEXT_500,
    CaptureFolder,
    Item,
    NodeError,
    Recorded,
)

__all__ = [
    "CAPTURES",
    "EMPTY_IMAGE_TEMPLATE",
    "TEXT_500",
    "FakeComfyUI",
    "Item",
    "NodeError",
    "Recorded",
    "_Handler",
    "_Socket",
    "load_capture",
]

CAPTURES = Path(__file__).parent / "captures"


def load_capture(name: str) -> Any:
    """A capture file from ``captures/`` (JSON)."""
    return _testing.load_capture(name, CAPTURES)


@dataclass
class FakeComfyUI(_testing.FakeComfyUI):
    """The fake, with the tests' captures."""

    captures: CaptureFolder = CAPTURES
