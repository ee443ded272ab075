"""The pluggy hook specification that generator plugins implement.

A plugin is a module (or object) named by an entry point in the ``degrees37.generators``
group. It implements :func:`register_generators`::

    from degrees37_imagegen import hookimpl

    @hookimpl
    def register_generators(register):
        register("echo", "my_package.generator:EchoGenerator")

Registering a ``"module:Class"`` string instead of the class keeps start-up fast: the module
is imported only when the generator is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Union

import pluggy

if TYPE_CHECKING:
    from .base import BaseImageGenerator

__all__ = ["PROJECT_NAME", "GeneratorTarget", "Register", "hookimpl", "hookspec"]

PROJECT_NAME = "degrees37"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
#: Marks a plugin's implementation of a hook: ``@hookimpl def register_generators(register)``.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: A generator class, or the ``"package.module:ClassName"`` path to import it from lazily.
GeneratorTarget = Union["type[BaseImageGenerator]", str]


class Register(Protocol):
    """The callback a plugin receives: ``register(name, generator)``."""

    def __call__(self, name: str, generator: GeneratorTarget) -> None:
        """Register ``generator`` (a class or a ``"module:Class"`` path) as ``name``."""


@hookspec
def register_generators(register: Register) -> None:
    """Register the generators this plugin provides.

    Called once for each plugin when a :class:`~degrees37_imagegen.GeneratorRegistry` first
    needs to know what is installed. Call ``register(name, generator)`` once per generator,
    where ``generator`` is a :class:`~degrees37_imagegen.BaseImageGenerator` subclass or a
    ``"module:ClassName"`` string that is imported only when the generator is first used.
    Returns nothing; an exception marks the plugin as broken without affecting the others.
    """
