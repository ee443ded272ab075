"""Developer tasks: ``nox -s tests lint typecheck docs build`` (``nox -l`` lists them)."""

from __future__ import annotations

import pathlib
import re
import shutil
import sys

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DISTRIBUTIONS = [".", "plugins/mock", "plugins/invokeai", "plugins/comfyui"]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test-suite (pass pytest options after --)."""
    session.install("-r", "requirements-test.txt")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy, strict, on the core and the plugins."""
    session.install("-r", "requirements-test.txt", "mypy>=1.10", "types-PyYAML")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs, Material, mkdocstrings), built with --strict: a
    warning (a broken link, a page missing from the nav, a bad docstring) fails it."""
    session.install("mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")
    site = pathlib.Path(session.create_tmp()) / "site"
    session.run("mkdocs", "build", "--strict", "--site-dir", str(site), *session.posargs)
    session.log(f"site built in {site}")


#: What each wheel must do in a fresh virtual environment, with nothing else installed.
SMOKE = {
    "degrees37_imagegen": (
        "import degrees37_imagegen, degrees37_imagegen.testing, degrees37_imagegen.cli;"
        "from importlib.resources import files;"
        "t = files('degrees37_imagegen').joinpath('templates').joinpath('plugin');"
        "assert t.joinpath('generator.py.tmpl').is_file(), 'plugin template missing';"
        "assert 'pytest' not in __import__('sys').modules"
    ),
    "degrees37_imagegen_mock": "from degrees37_imagegen_mock.generator import MockGenerator",
    "degrees37_imagegen_invokeai": (
        "from degrees37_imagegen_invokeai.generator import InvokeAIGenerator"
    ),
    "degrees37_imagegen_comfyui": (
        "from degrees37_imagegen_comfyui.generator import ComfyUIGenerator"
    ),
}


@nox.session
def build(session: nox.Session) -> None:
    """Wheels and sdists of all four distributions into dist/, checked with twine, and each
    wheel installed into a fresh virtual environment (with the core's wheel from dist/)."""
    session.install("build>=1.2", "twine>=5")
    dist = pathlib.Path("dist")
    shutil.rmtree(dist, ignore_errors=True)
    for project in DISTRIBUTIONS:
        session.run("python", "-m", "build", "--outdir", str(dist), project)
    files = sorted(str(p) for p in dist.iterdir())
    session.run("twine", "check", "--strict", *files)
    version = _version()
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != len(DISTRIBUTIONS) or any(f"-{version}-" not in w.name for w in wheels):
        session.error(f"expected {len(DISTRIBUTIONS)} wheels of version {version}: {wheels}")
    core = next(w for w in wheels if w.name.startswith("degrees37_imagegen-"))
    tmp = pathlib.Path(session.create_tmp())
    for wheel in wheels:
        package = wheel.name.split("-")[0]
        venv = tmp / f"venv-{package}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        python = str(venv / ("Scripts" if sys.platform == "win32" else "bin") / "python")
        session.run(python, "-m", "pip", "install", "--quiet", str(core), str(wheel), external=True)
        session.run(python, "-m", "pip", "check", external=True)
        session.run(python, "-c", SMOKE[package], external=True)
        session.log(f"{wheel.name}: installs and imports in a fresh venv")


@nox.session(venv_backend="none")
def bump(session: nox.Session) -> None:
    """Set the version of all four distributions: ``nox -s bump -- 0.2.0``.

    Writes ``__version__`` (the one source the four pyproject.toml files read) and the pins
    between the distributions; then move CHANGELOG.md's Unreleased notes under it.
    """
    if len(session.posargs) != 1 or not re.fullmatch(r"\d+\.\d+\.\d+\S*", session.posargs[0]):
        session.error("usage: nox -s bump -- X.Y.Z")
    new = session.posargs[0]
    _sub(VERSION_FILE, r'__version__ = "[^"]+"', f'__version__ = "{new}"')
    _sub(pathlib.Path("pyproject.toml"), r"(degrees37-imagegen-\w+)==[^\"]+", rf"\1=={new}")
    for project in DISTRIBUTIONS[1:]:
        path = pathlib.Path(project) / "pyproject.toml"
        _sub(path, r'"degrees37-imagegen>=[^"]+"', f'"degrees37-imagegen>={new}"')
    session.log(f"version {new}; now edit CHANGELOG.md")


#: The one source of the version of all four distributions.
VERSION_FILE = pathlib.Path("src/degrees37_imagegen/__init__.py")


def _version() -> str:
    found = re.search(r'__version__ = "([^"]+)"', VERSION_FILE.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(f"no __version__ in {VERSION_FILE}")
    return found.group(1)


def _sub(path: pathlib.Path, pattern: str, replacement: str) -> None:
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text)
    if not count:
        raise RuntimeError(f"{path}: nothing matches {pattern}")
    path.write_text(new, encoding="utf-8")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print its figures."""
    session.install("-r", "requirements-test.txt")
    for script in sorted(pathlib.Path("benchmarks").glob("*.py")):
        session.run("python", str(script))
