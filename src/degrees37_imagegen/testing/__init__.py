"""Test helpers for generator plugins and for code that uses generators.

- :class:`GeneratorContract`: subclass it in a plugin's tests to check what every generator
  owes the core (sizes, seeds, jobs that serialise and re-attach, cancel, whole-or-nothing
  saves, error types, threads, secrets);
- :class:`FakeGenerator`: a generator for your own tests, with scripted failures and a record
  of its calls; :class:`FakeClock`: time that passes only when someone waits.

Importing this package does not import pytest. pytest loads
:mod:`degrees37_imagegen.testing.pytest_plugin` by itself (an entry point in the ``pytest11``
group), which adds the fixtures ``fake_clock``, ``fake_generator`` and ``imagegen_registry``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._clock import FakeClock
    from .contract import GeneratorContract, expect
    from .fake import FakeCall, FakeGenerator

__all__ = ["FakeCall", "FakeClock", "FakeGenerator", "GeneratorContract", "expect"]

_LAZY = {
    "FakeClock": "._clock",
    "GeneratorContract": ".contract",
    "expect": ".contract",
    "FakeCall": ".fake",
    "FakeGenerator": ".fake",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the pytest plugin (loaded by every pytest run in the environment) stays
    # cheap: Pillow and the core's generator code load only when a test uses them.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
