"""The mock generator for degrees37-imagegen: real, legible placeholder images, no server."""

from __future__ import annotations

__all__ = ["MockGenerator", "STYLES", "render_placeholder"]


def __getattr__(name: str) -> object:
    # Importing the package stays cheap: Pillow loads only when the generator is used.
    if name == "MockGenerator":
        from .generator import MockGenerator

        return MockGenerator
    if name in {"STYLES", "render_placeholder"}:
        from . import drawing

        return getattr(drawing, name)
    raise AttributeError(name)
