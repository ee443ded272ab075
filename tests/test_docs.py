"""The documentation's Python code runs, so that it cannot rot.

The conventions (also in docs/contributing.md):

- a ```python block runs, in order with the page's other blocks, in an empty working
  folder holding a configuration where the mock generator is the default;
- a block whose first line is ``# file: PATH`` is a file of the page's example package: the
  page's files are written into one folder (``__init__.py`` added where missing), its
  ``tests/test_*.py`` run with pytest, and everything passes ``mypy --strict``;
- a block right after ``<!-- not-run: REASON -->`` is not run; the reason is required.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>.*?)\s*-->")
FILE = re.compile(r"#\s*file:\s*(?P<path>\S+)")

#: What the page's blocks find in their working folder.
CONFIG = """\
default_generator: mock
generators:
  mock:
    delay: 0
  gpus:
    class: mock
    delay: 0
"""


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int
    lang: str
    code: str
    not_run: str | None

    @property
    def file(self) -> str | None:
        match = FILE.fullmatch(self.code.splitlines()[0].strip()) if self.code else None
        return match["path"] if match else None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the not-run reason given just before it."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```(\S*)", lines[i])
        if not fence:
            i += 1
            continue
        lang = fence.group(2)
        before = next((s for s in reversed(lines[:i]) if s.strip()), "")
        marker = NOT_RUN.search(before)
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith("```"):
            i += 1
        code = textwrap.dedent("\n".join(lines[start:i]))
        found.append(Block(page, start, lang, code, marker["reason"] if marker else None))
        i += 1
    return found


def python_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang in ("python", "py")]


PAGES_WITH_CODE = [p for p in [*PAGES, ROOT / "README.md"] if python_blocks(p)]
PAGES_WITH_FILES = [p for p in PAGES_WITH_CODE if any(b.file for b in python_blocks(p))]


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def test_every_not_run_marker_gives_a_reason() -> None:
    for page in [*PAGES, ROOT / "README.md"]:
        for block in python_blocks(page):
            if block.not_run is not None:
                assert len(block.not_run) >= 10, f"{block}: say why the block is not run"


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=_id)
def test_page_code_runs(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runnable = [b for b in python_blocks(page) if b.not_run is None and not b.file]
    if not runnable:
        pytest.skip("only example-package files or blocks marked not-run")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "generators.yaml").write_text(CONFIG, encoding="utf-8")
    shutil.copy(DOCS / "examples" / "book.yaml", tmp_path / "book.yaml")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in runnable:
        code = compile(block.code, str(block), "exec")
        try:
            exec(code, namespace)  # the documentation's own examples
        except Exception as exc:
            pytest.fail(f"{block}: {type(exc).__name__}: {exc}")
    capsys.readouterr()


def _write_package(page: Path, folder: Path) -> list[Path]:
    written = []
    for block in python_blocks(page):
        if block.file and block.not_run is None:
            path = folder / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code + "\n", encoding="utf-8")
            written.append(path)
    for path in written:
        parent = path.parent
        if parent != folder and parent.name != "tests" and not (parent / "__init__.py").exists():
            (parent / "__init__.py").write_text("", encoding="utf-8")
    return written


@pytest.mark.parametrize("page", PAGES_WITH_FILES, ids=_id)
def test_example_package_tests_pass(page: Path, tmp_path: Path) -> None:
    written = _write_package(page, tmp_path)
    assert any(p.name.startswith("test_") for p in written), f"{_id(page)}: no test file"
    # Only our pytest plugin: the example needs no other, and loading every plugin
    # installed here (hypothesis...) triples the time of the run.
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-p",
            "degrees37_imagegen.testing.pytest_plugin",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "tests"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout, result.stdout
    # The one skip allowed: the in-process example has no server to find its jobs on.
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("does not implement find_job" in line for line in skips), result.stdout
    assert len(skips) <= 1, result.stdout


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
@pytest.mark.parametrize("page", PAGES_WITH_FILES, ids=_id)
def test_example_package_passes_mypy_strict(
    page: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    written = _write_package(page, tmp_path)
    cache = request.config.cache.mkdir("mypy-docs") if request.config.cache else tmp_path / ".c"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(cache),
            *[str(p.relative_to(tmp_path)) for p in written],
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_site_shows_every_page() -> None:
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [str(p.relative_to(DOCS)) for p in PAGES if str(p.relative_to(DOCS)) not in mkdocs]
    assert not missing, f"pages missing from the nav of mkdocs.yml: {missing}"


def test_the_api_reference_shows_the_main_names() -> None:
    reference = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "reference").glob("*.md"))
    for name in (
        "degrees37_imagegen.base.BaseImageGenerator",
        "degrees37_imagegen.job.ImageJob",
        "degrees37_imagegen.registry.GeneratorRegistry",
        "degrees37_imagegen.testing.contract.GeneratorContract",
    ):
        assert f"::: {name}" in reference, name
