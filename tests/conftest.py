"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every test starts without the variables that steer config and plugin loading, and
    with a user config folder that is empty, so the developer's own files never leak in."""
    for var in ("TESTING", "IMAGEGEN_CONFIG", "IMAGEGEN_PLUGINS", "IMAGEGEN_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in an empty working folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a YAML config (dedented) and return its path."""

    def write(text: str, name: str = "generators.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def make_plugin_dist(
    site: Path,
    dist_name: str,
    module: str,
    source: str,
    entry_point: str | None = None,
    version: str = "1.0",
) -> Path:
    """Install a tiny plugin distribution into the folder ``site`` the way pip would: the
    module plus a ``.dist-info`` folder whose ``entry_points.txt`` names it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    ep_name = entry_point or dist_name
    (info / "entry_points.txt").write_text(
        f"[degrees37.generators]\n{ep_name} = {module}\n", encoding="utf-8"
    )
    (info / "RECORD").write_text("", encoding="utf-8")
    return site


ECHO_PLUGIN = '''
    """A third-party plugin, as someone else would publish it."""
    from pathlib import Path

    from degrees37_imagegen import BaseImageGenerator, hookimpl, write_image_atomically


    class EchoGenerator(BaseImageGenerator):
        default_settings = {"colour": "teal"}

        def test_connection(self):
            return True

        def generate_image(self, prompt, negative_prompt="", width=1080, height=1920, seed=-1,
                           **kw):
            self.validate_dimensions(width, height)
            self._size = (width, height)
            return "echo-1"

        def download_image(self, image_id, output_path):
            import io
            from PIL import Image
            buf = io.BytesIO()
            Image.new("RGB", self._size, self.config["colour"]).save(buf, "PNG")
            write_image_atomically(output_path, buf.getvalue())
            return True


    @hookimpl
    def register_generators(register):
        register("echo", EchoGenerator)
'''

BROKEN_PLUGIN = """
    raise RuntimeError("this plugin is broken on purpose")
"""


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder with a working third-party plugin (``echo``) and a broken one, on
    ``sys.path`` and ``PYTHONPATH`` (for subprocesses)."""
    site = tmp_path / "site"
    make_plugin_dist(site, "imagegen-echo", "imagegen_echo", ECHO_PLUGIN, entry_point="echo")
    make_plugin_dist(
        site, "imagegen-broken", "imagegen_broken", BROKEN_PLUGIN, entry_point="broken"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *sys.path]))
    yield site
    for mod in ("imagegen_echo", "imagegen_broken"):
        sys.modules.pop(mod, None)
