"""Modules imported when first used: :func:`lazy_module`.

httpx costs ~0.1 s of CPU to import (its command line pulls in rich); a plugin module that
only names it in annotations and ``except`` clauses need not pay that on every ``imagegen``
command that never sends a request (``batch --dry-run``, ``--help``, ``plugins``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(types.ModuleType):
    """Stands for a module; the first read of one of its attributes imports it (under
    Python's import lock, so threads may race to it) and keeps the attribute here."""

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)
        return value


def lazy_module(name: str) -> types.ModuleType:
    """``name``'s module if it is imported already, else a stand-in that imports it when
    one of its attributes is first read. Use it as ``if TYPE_CHECKING: import x`` /
    ``else: x = lazy_module("x")`` so that type checkers see the module itself."""
    return sys.modules.get(name) or _LazyModule(name)
