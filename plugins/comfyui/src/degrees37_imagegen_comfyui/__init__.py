"""comfyui generator for degrees37-imagegen."""

from __future__ import annotations

__all__ = ["ComfyUIGenerator"]


def __getattr__(name: str) -> object:
    # Importing the package stays cheap: the generator (and httpx) load on first use.
    if name == "ComfyUIGenerator":
        from .generator import ComfyUIGenerator

        return ComfyUIGenerator
    raise AttributeError(name)
