"""A generator plugin that registers :class:`~degrees37_imagegen.testing.FakeGenerator` as
``fake``: ``registry.register_plugin(degrees37_imagegen.testing.plugin)``, or an entry point
``fake = "degrees37_imagegen.testing.plugin"`` in the ``degrees37.generators`` group of your
test package."""

from __future__ import annotations

from ..hookspecs import Register, hookimpl

__all__ = ["register_generators"]


@hookimpl
def register_generators(register: Register) -> None:
    """Register ``fake`` (imported only when first used)."""
    register("fake", "degrees37_imagegen.testing.fake:FakeGenerator")
