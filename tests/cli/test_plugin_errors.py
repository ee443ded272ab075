"""A plugin's own exception, and a plugin that failed to load, as the user sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from degrees37_imagegen import BaseImageGenerator, GeneratorRegistry
from degrees37_imagegen.cli import app
from degrees37_imagegen.errors import PluginError

runner = CliRunner()

TEAL = "generators:\n  teal:\n    class: echo\n    colour: notacolour\n  b:\n    class: broken\n"


def _record_modules(site: Path) -> None:
    """Fill in RECORD as pip would, so that a module is traced back to its distribution."""
    for info in site.glob("*.dist-info"):
        module = "imagegen_echo" if "echo" in info.name else "imagegen_broken"
        (info / "RECORD").write_text(f"{module}.py,,\n", encoding="utf-8")


def test_plugin_exception_is_one_line_exit_1(plugin_site: Path, in_tmp: Path) -> None:
    _record_modules(plugin_site)
    Path("c.yaml").write_text(TEAL)
    result = runner.invoke(
        app, ["generate", "x", "-c", "c.yaml", "-g", "teal", "-W", "8", "-H", "8", "-o", "a.png"]
    )
    assert result.exit_code == 1
    # Progress lines ("teal: submitted ...") may come first; the error is one line, the last.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.stderr.splitlines()[-1] == errors[0]
    assert errors == [
        "error: generator 'teal' (imagegen-echo 1.0) failed: "
        "ValueError: unknown color specifier: 'notacolour'"
    ]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(plugin_site: Path, in_tmp: Path) -> None:
    Path("c.yaml").write_text(TEAL)
    result = runner.invoke(
        app,
        ["--debug", "generate", "x", "-c", "c.yaml", "-g", "teal", "-W", "8", "-H", "8"],
    )
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: generator 'teal'")


class FussyGenerator(BaseImageGenerator):
    """A plugin whose own code fails while the generator is made."""

    def validate_config(self) -> None:
        raise KeyError("size")

    def test_connection(self) -> bool:
        return True

    def generate_image(self, prompt: str, *args: Any, **kwargs: Any) -> str:
        return "never"

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        return False


def test_exception_while_making_the_generator_is_one_line() -> None:
    registry = GeneratorRegistry({"generators": {}}, discover=False)
    registry.register("fussy", FussyGenerator)
    with pytest.raises(PluginError) as caught:
        registry.get_generator("fussy")
    message = str(caught.value)
    assert message.startswith("generator 'fussy' (")
    assert message.endswith(") failed: KeyError: 'size'")
    assert isinstance(caught.value.__cause__, KeyError)


def test_broken_plugin_says_why(plugin_site: Path, in_tmp: Path) -> None:
    result = runner.invoke(app, ["generate", "x", "-g", "broken"])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: generator plugin 'broken' (imagegen-broken 1.0) is installed but failed to "
        "load: RuntimeError: this plugin is broken on purpose"
    ]
    assert "unknown generator" not in result.stderr


def test_entry_backed_by_a_broken_plugin_says_why(plugin_site: Path, in_tmp: Path) -> None:
    Path("c.yaml").write_text(TEAL)
    result = runner.invoke(app, ["generate", "x", "-c", "c.yaml", "-g", "b"])
    assert result.exit_code == 2
    assert (
        "error: c.yaml:6: generators.b.class: generator plugin 'broken' (imagegen-broken 1.0) "
        "is installed but failed to load: RuntimeError" in result.stderr
    )


def test_disabled_plugin_says_so(plugin_site: Path, in_tmp: Path) -> None:
    result = runner.invoke(app, ["generate", "x", "-g", "echo"], env={"IMAGEGEN_PLUGINS": "mock"})
    assert result.exit_code == 2
    assert "generator plugin 'echo' (imagegen-echo 1.0) is installed but disabled" in (
        result.stderr
    )


def test_any_other_exception_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from degrees37_imagegen.cli._errors import cli_errors

    with pytest.raises(typer.Exit) as caught, cli_errors():
        raise TypeError("unsupported operand")
    assert caught.value.exit_code == 1
    assert capsys.readouterr().err == (
        "error: TypeError: unsupported operand (imagegen --debug ... shows the traceback)\n"
    )
    with pytest.raises(typer.Exit) as passed, cli_errors():
        raise typer.Exit(3)  # the command line's own flow goes through untouched
    assert passed.value.exit_code == 3
