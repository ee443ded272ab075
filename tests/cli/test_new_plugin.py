"""``imagegen new-plugin``: the package it writes installs, lists, generates, passes its own
tests and ``mypy --strict`` as written, and its tests catch a broken seed."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from degrees37_imagegen import verify_image
from degrees37_imagegen.cli import app
from degrees37_imagegen.cli.new_plugin import FILES, plugin_names

runner = CliRunner()


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """The package that `imagegen new-plugin echo --dir tmp_path` writes."""
    result = runner.invoke(app, ["new-plugin", "echo", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    root = tmp_path / "imagegen-echo"
    assert f"created {root}/" in result.stdout
    return root


@pytest.fixture
def installed(package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The package "installed" the way pip leaves it: its source on the path and a
    .dist-info folder whose entry_points.txt comes from the generated pyproject.toml."""
    site = tmp_path / "site"
    info = site / "imagegen_echo-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: imagegen-echo\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(_entry_points(package / "pyproject.toml"))
    src = package / "src"
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(src), str(site), *sys.path]))
    yield package
    for name in [m for m in sys.modules if m.startswith("imagegen_echo")]:
        del sys.modules[name]


def _entry_points(pyproject: Path) -> str:
    """The entry_points.txt that pip writes for ``pyproject``'s entry points."""
    text = pyproject.read_text()
    section = text.split('[project.entry-points."degrees37.generators"]\n', 1)[1]
    line = section.splitlines()[0]
    return "[degrees37.generators]\n" + line.replace('"', "") + "\n"


def test_writes_every_file(package: Path) -> None:
    written = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file())
    assert written == sorted(path.format(package="imagegen_echo") for path in FILES)
    for path in package.rglob("*"):
        if path.is_file():
            assert "{{" not in path.read_text().replace("${{ matrix", ""), path
    pyproject = (package / "pyproject.toml").read_text()
    assert 'build-backend = "hatchling.build"' in pyproject
    assert 'echo = "imagegen_echo.plugin"' in pyproject


def test_lists_and_generates(installed: Path, tmp_path: Path) -> None:
    listed = runner.invoke(app, ["plugins", "--json"])
    assert listed.exit_code == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["echo"]["status"] == "ok"
    assert plugins["echo"]["distribution"] == "imagegen-echo"
    out = tmp_path / "x.png"
    made = runner.invoke(
        app, ["generate", "x", "-g", "echo", "-W", "64", "-H", "32", "-o", str(out)]
    )
    assert made.exit_code == 0, made.stderr
    assert verify_image(out) == ("PNG", (64, 32))


def _pytest(package: Path) -> subprocess.CompletedProcess[str]:
    # Only our pytest plugin: loading every plugin installed here (hypothesis...) triples
    # the time of this run, and the generated tests need no other.
    env = {
        **os.environ,
        "PYTHONPATH": str(package / "src"),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    plugin = "degrees37_imagegen.testing.pytest_plugin"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            plugin,
            str(package),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=package,
        check=False,
    )


def test_its_tests_pass_and_catch_a_broken_seed(package: Path) -> None:
    result = _pytest(package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout
    # Break the seed handling as a plugin author might: the contract says what it expects.
    generator = package / "src" / "imagegen_echo" / "generator.py"
    source = generator.read_text()
    assert "{request.seed}" in source
    generator.write_text(source.replace("{request.seed}", "{uuid.uuid4()}"))
    broken = _pytest(package)
    assert broken.returncode == 1, broken.stdout
    assert "must give the same image (the generator must pass the seed" in broken.stdout


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_passes_mypy_strict(package: Path, request: pytest.FixtureRequest) -> None:
    cache = request.config.cache.mkdir("mypy-new-plugin") if request.config.cache else None
    args = ["--strict", "src", "tests"] + (["--cache-dir", str(cache)] if cache else [])
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        capture_output=True,
        text=True,
        cwd=package,
        env={**os.environ, "MYPYPATH": str(package / "src")},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "dist", "package_name", "class_name"),
    [
        ("echo", "imagegen-echo", "imagegen_echo", "EchoGenerator"),
        ("my-server", "imagegen-my-server", "imagegen_my_server", "MyServerGenerator"),
        ("gpu_farm2", "imagegen-gpu-farm2", "imagegen_gpu_farm2", "GpuFarm2Generator"),
    ],
)
def test_names(name: str, dist: str, package_name: str, class_name: str) -> None:
    names = plugin_names(name)
    assert (names.dist, names.package, names.class_name) == (dist, package_name, class_name)


@pytest.mark.parametrize("name", ["Echo", "2d", "my server", "x!", "echo-", "a..b", ""])
def test_a_bad_name_is_one_line_and_exit_2(name: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["new-plugin", name, "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") or "Missing argument" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites(package: Path, tmp_path: Path) -> None:
    before = (package / "src" / "imagegen_echo" / "generator.py").read_text()
    result = runner.invoke(app, ["new-plugin", "echo", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "exists and is not an empty folder" in result.stderr
    assert (package / "src" / "imagegen_echo" / "generator.py").read_text() == before
