"""Every command-line mistake is one ``error:`` line on stderr and exit 2 (no usage box)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from degrees37_imagegen import __version__
from degrees37_imagegen.cli import _errors, app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="imagegen")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["generate", "x", "-W", "abc"], "error: --width/-W: 'abc' is not a whole number"),
        (["generate", "x", "--height", "1.5"], "error: --height/-H: '1.5' is not a whole number"),
        (["generate", "x", "--strength", "lots"], "error: --strength: 'lots' is not a number"),
        (
            ["batch", "f.jsonl", "--concurrency", "0"],
            "error: --concurrency/-j: must be at least 1, got 0",
        ),
        (
            ["batch", "f.jsonl", "--shard", "3/2"],
            "error: --shard: shard must be K/N with 1 <= K <= N, got '3/2'",
        ),
        (
            ["batch", "f.jsonl", "--shard", "half"],
            "error: --shard: shard must look like K/N (e.g. 1/3), got 'half'",
        ),
        (["frob"], "error: no such command 'frob' (see 'imagegen --help')"),
        (["--frob"], "error: no such option: --frob (see 'imagegen --help')"),
        (
            ["generate", "x", "--frob"],
            "error: no such option: --frob (see 'imagegen generate --help')",
        ),
        (["generate"], "error: missing argument 'PROMPT' (see 'imagegen generate --help')"),
        (["batch"], "error: missing argument 'JOBS' (see 'imagegen batch --help')"),
        (["generate", "x", "-W"], "error: option '-W' requires an argument"),
    ],
)
def test_a_mistake_is_one_error_line_and_exit_2(in_tmp: Path, args: list[str], line: str) -> None:
    code, out, err = invoke(*args)
    assert (code, out, err) == (2, "", line + "\n")


def test_help_and_version_are_unchanged() -> None:
    code, out, err = invoke("generate", "--help")
    assert code == 0, err
    assert out.startswith("Usage: imagegen generate [OPTIONS] PROMPT")
    assert "--width" in out
    assert invoke("--version") == (0, f"imagegen {__version__}\n", "")


def test_bare_imagegen_still_shows_the_help() -> None:
    code, out, err = invoke()
    assert code == 2
    assert "Usage: imagegen [OPTIONS] COMMAND [ARGS]..." in out + err
    assert "error:" not in out + err


def test_without_standalone_mode_click_errors_reach_the_caller() -> None:
    from typer.main import get_command

    command = get_command(app)
    with pytest.raises(Exception, match="No such command") as info:
        command.main(["frob"], prog_name="imagegen", standalone_mode=False)
    assert type(info.value).__name__ == "UsageError"


@pytest.mark.parametrize("raised", [KeyboardInterrupt, typer.Abort])
def test_ctrl_c_outside_a_command_exits_130(
    monkeypatch: pytest.MonkeyPatch, raised: type[BaseException]
) -> None:
    def interrupted(debug: bool) -> None:
        raise raised()

    monkeypatch.setattr(_errors, "setup", interrupted)  # runs before any command
    code, out, err = invoke("plugins")
    assert code == 130
    assert "Traceback" not in out + err
