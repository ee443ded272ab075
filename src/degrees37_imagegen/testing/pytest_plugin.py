"""The pytest plugin of degrees37-imagegen, loaded by pytest through the ``pytest11`` entry
point: fixtures for tests of generator plugins and of code that uses generators.

- ``fake_clock``: a :class:`~degrees37_imagegen.testing.FakeClock`;
- ``fake_generator``: a :class:`~degrees37_imagegen.testing.FakeGenerator` on that clock;
- ``imagegen_registry``: a :class:`~degrees37_imagegen.GeneratorRegistry` that ignores
  installed plugins and config files and knows ``fake``; ``register`` yours on it.

The contract suite itself needs no fixture: subclass
:class:`~degrees37_imagegen.testing.GeneratorContract`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ..registry import GeneratorRegistry
    from ._clock import FakeClock
    from .fake import FakeGenerator

__all__ = ["fake_clock", "fake_generator", "imagegen_registry"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock whose ``sleep`` returns at once and moves time on."""
    from ._clock import FakeClock

    return FakeClock()


@pytest.fixture
def fake_generator(fake_clock: FakeClock) -> FakeGenerator:
    """A :class:`FakeGenerator` named ``fake``, on :func:`fake_clock`."""
    from .fake import FakeGenerator

    return FakeGenerator(name="fake", clock=fake_clock)


@pytest.fixture
def imagegen_registry() -> GeneratorRegistry:
    """A registry without installed plugins or config files, with ``fake`` registered."""
    from ..registry import GeneratorRegistry

    registry = GeneratorRegistry({"generators": {}}, discover=False)
    registry.register("fake", "degrees37_imagegen.testing.fake:FakeGenerator")
    return registry
