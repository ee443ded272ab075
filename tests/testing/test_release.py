"""Releases: one version for the four distributions, and pins between them that agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import degrees37_imagegen

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT, *(ROOT / "plugins" / name for name in ("mock", "invokeai", "comfyui"))]
VERSION = degrees37_imagegen.__version__


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_the_version_comes_from_the_core(project: Path) -> None:
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in data["project"], "the version is dynamic: written in one place"
    assert data["project"]["dynamic"] == ["version"]
    source = project / data["tool"]["hatch"]["version"]["path"]
    assert source.resolve() == ROOT / "src" / "degrees37_imagegen" / "__init__.py"


def test_the_pins_between_distributions_match_the_version() -> None:
    text = "\n".join((p / "pyproject.toml").read_text(encoding="utf-8") for p in PROJECTS)
    pins = re.findall(r'"degrees37-imagegen(?:-\w+)?(?:==|>=)([^",;\]]+)"', text)
    assert len(pins) >= 9
    assert set(pins) == {VERSION}, f"pins {sorted(set(pins))} differ from {VERSION}"


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert f"## [{VERSION}]" in text or "## [Unreleased]" in text
    for heading in re.findall(r"^### (.+)$", text, re.M):
        assert heading in {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
