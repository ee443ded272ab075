from __future__ import annotations

import subprocess
import sys
import types

import pytest

import degrees37_imagegen


def test_every_public_name_resolves_and_none_is_a_module() -> None:
    for name in degrees37_imagegen.__all__:
        value = getattr(degrees37_imagegen, name)
        assert not isinstance(value, types.ModuleType), name


def test_import_is_light() -> None:
    code = (
        "import sys, degrees37_imagegen, degrees37_imagegen.cli;"
        "heavy = ('yaml', 'tenacity', 'PIL', 'httpx', 'pluggy');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="nope"):
        degrees37_imagegen.nope  # type: ignore[attr-defined]  # noqa: B018
