"""ComfyUI generator for degrees37-imagegen.

``ComfyUIGenerator`` is imported on first use, so that importing this package (which the
plugin entry point does) stays cheap; the errors are light and imported at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import (
    ComfyUIExecutionError,
    ComfyUIInterruptedError,
    ComfyUIServerError,
    ComfyUITimeoutError,
    ComfyUIValidationError,
)

if TYPE_CHECKING:
    from .generator import ComfyUIGenerator

__all__ = [
    "ComfyUIExecutionError",
    "ComfyUIGenerator",
    "ComfyUIInterruptedError",
    "ComfyUIServerError",
    "ComfyUITimeoutError",
    "ComfyUIValidationError",
]


def __getattr__(name: str) -> object:
    # The generator (with httpx and websockets) loads on first use.
    if name == "ComfyUIGenerator":
        from .generator import ComfyUIGenerator

        return ComfyUIGenerator
    raise AttributeError(name)
