"""lazy_module: a module imported when one of its attributes is first read."""

from __future__ import annotations

import sys

import pytest

from degrees37_imagegen._lazy import lazy_module


def test_imported_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    colorsys = lazy_module("colorsys")
    assert "colorsys" not in sys.modules
    assert colorsys.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert sys.modules["colorsys"].rgb_to_hsv is colorsys.rgb_to_hsv


def test_an_imported_module_is_itself() -> None:
    import json

    assert lazy_module("json") is json


def test_a_missing_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        lazy_module("colorsys").no_such_thing  # noqa: B018
