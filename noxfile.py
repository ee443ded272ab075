"""Developer tasks: ``nox -s tests lint typecheck build`` (``nox -l`` lists them)."""

from __future__ import annotations

import pathlib
import shutil

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
def build(session: nox.Session) -> None:
    """Wheels and sdists of all four distributions into dist/."""
    session.install("build>=1.2")
    dist = pathlib.Path("dist")
    shutil.rmtree(dist, ignore_errors=True)
    for project in DISTRIBUTIONS:
        session.run("python", "-m", "build", "--outdir", str(dist), project)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmark in benchmarks/ and print its figures."""
    session.install("-r", "requirements-test.txt")
    for script in sorted(pathlib.Path("benchmarks").glob("*.py")):
        session.run("python", str(script))
