"""Entry point of the mock plugin: registers the generator lazily (no heavy imports here)."""

from __future__ import annotations

from degrees37_imagegen import hookimpl
from degrees37_imagegen.hookspecs import Register


@hookimpl
def register_generators(register: Register) -> None:
    """Register ``mock`` (imported only when first used)."""
    register("mock", "degrees37_imagegen_mock.generator:MockGenerator")
