"""invokeai generator for degrees37-imagegen."""

from __future__ import annotations

__all__ = ["InvokeAIGenerator"]


def __getattr__(name: str) -> object:
    # Importing the package stays cheap: the generator (and httpx) load on first use.
    if name == "InvokeAIGenerator":
        from .generator import InvokeAIGenerator

        return InvokeAIGenerator
    raise AttributeError(name)
