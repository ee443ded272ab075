from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from degrees37_imagegen import SYSTEM_CLOCK, ImageJob, read_png_text, verify_image
from degrees37_imagegen.cli import app
from degrees37_imagegen_mock import MockGenerator

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_generate_writes_the_image_and_prints_where(in_tmp: Path) -> None:
    code, out, err = invoke(
        "generate",
        "a lighthouse at dusk",
        "-W",
        "320",
        "-H",
        "480",
        "--seed",
        "3",
        "-o",
        "out/l.png",
    )
    assert code == 0, err
    assert out.strip() == "out/l.png"
    text = read_png_text(in_tmp / "out" / "l.png")
    assert text["imagegen:prompt"] == "a lighthouse at dusk"
    assert text["imagegen:seed"] == "3"


def test_default_output_never_overwrites(in_tmp: Path) -> None:
    assert (
        invoke("generate", "A cat, at night!", "-W", "64", "-H", "64")[1].strip()
        == "a-cat-at-night.png"
    )
    assert (
        invoke("generate", "A cat, at night!", "-W", "64", "-H", "64")[1].strip()
        == "a-cat-at-night-2.png"
    )


def test_unknown_generator_is_one_line_and_exit_2(in_tmp: Path) -> None:
    code, out, err = invoke("generate", "x", "--generator", "nope")
    assert code == 2
    assert err == "error: unknown generator 'nope'; available: comfyui, invokeai, mock\n"
    assert "Traceback" not in out + err


@pytest.mark.parametrize(("opt", "value"), [("--width", "0"), ("--height", "99999")])
def test_invalid_size_exit_2(in_tmp: Path, opt: str, value: str) -> None:
    code, _, err = invoke("generate", "x", opt, value)
    assert code == 2
    assert err.startswith("error: ")
    assert err.count("\n") == 1


def test_bad_config_exit_2(in_tmp: Path) -> None:
    Path("bad.yaml").write_text("generators:\n  mock:\n    delay: ${MISSING_DELAY}\n")
    code, _, err = invoke("generate", "x", "--config", "bad.yaml")
    assert code == 2
    assert err == (
        "error: bad.yaml:3: generators.mock.delay: environment variable MISSING_DELAY is not set"
        " (give a default with ${MISSING_DELAY:-value})\n"
    )


def test_bad_setting_exit_2(in_tmp: Path) -> None:
    Path("bad.yaml").write_text("generators:\n  mock:\n    placeholder_style: fancy\n")
    code, _, err = invoke("generate", "x", "-c", "bad.yaml")
    assert code == 2
    assert "bad.yaml:3: generators.mock.placeholder_style: unknown style 'fancy'" in err


def test_generation_failure_exit_1(in_tmp: Path) -> None:
    Path("f.yaml").write_text("generators:\n  flaky:\n    class: mock\n    fail_rate: 1\n")
    code, _, err = invoke("generate", "x", "-c", "f.yaml", "-g", "flaky", "-o", "x.png")
    assert code == 1
    last = err.splitlines()[-1]  # after the progress lines of the failed job
    assert last.startswith("error: generator 'flaky': simulated generation failure")
    assert err.count("error:") == 1
    assert not Path("x.png").exists()


def test_unknown_setting_warns_on_one_line(in_tmp: Path) -> None:
    Path("w.yaml").write_text("generators:\n  mock:\n    dealy: 1\n")
    code, _, err = invoke("generate", "x", "-c", "w.yaml", "-W", "32", "-H", "32", "-o", "w.png")
    assert code == 0
    assert "warning: w.yaml: generator 'mock': unknown setting 'dealy' is ignored" in err


def test_testing_env_selects_mock(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("c.yaml").write_text("default_generator: invokeai\n")
    monkeypatch.setenv("TESTING", "true")
    code, _, err = invoke("generate", "x", "-c", "c.yaml", "-W", "32", "-H", "32", "-o", "t.png")
    assert code == 0, err
    assert read_png_text(Path("t.png"))["imagegen:generator"] == "mock"


def test_debug_shows_traceback(in_tmp: Path) -> None:
    code, _, err = invoke("--debug", "generate", "x", "-g", "nope")
    assert code == 2
    assert "Traceback" in err


def test_debug_log_lines_hide_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from degrees37_imagegen.cli import _errors

    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        _errors.setup(True)
        logging.getLogger("httpx").info(
            "HTTP Request: %s %s", "GET", "http://u:pa55word@h:1/x?api_key=k3y"
        )
    finally:
        _errors.setup(False)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
    err = capsys.readouterr().err
    assert "HTTP Request: GET http://u:***@h:1/x?api_key=***" in err
    assert "pa55word" not in err
    assert "k3y" not in err


def test_param_passes_typed_keyword_arguments(in_tmp: Path) -> None:
    code, _, err = invoke(
        "generate", "x", "-W", "64", "-H", "64", "-o", "p.png", "--param", "placeholder_style=debug"
    )
    assert code == 0, err
    assert read_png_text(Path("p.png"))["imagegen:placeholder_style"] == "debug"


def test_bad_param_exit_2(in_tmp: Path) -> None:
    code, _, err = invoke("generate", "x", "--param", "novalue")
    assert code == 2
    assert err == "error: --param 'novalue': expected KEY=VALUE, e.g. steps=30\n"


def test_parse_params_types() -> None:
    from degrees37_imagegen.cli.generate import parse_params

    assert parse_params(["steps=30", "cfg=7.5", "hires=true", "name=a b", "c=0xFF", "e="]) == {
        "steps": 30,
        "cfg": 7.5,
        "hires": True,
        "name": "a b",
        "c": 255,
        "e": "",
    }


@pytest.mark.parametrize("output", ["file/a.png", "picture.gif"])
def test_unwritable_output_is_one_line_and_exit_2(in_tmp: Path, output: str) -> None:
    Path("file").write_text("x")
    code, out, err = invoke("generate", "x", "-W", "32", "-H", "32", "-o", output)
    assert code == 2
    assert err.startswith(f"error: cannot write {output}: ")
    assert err.count("\n") == 1
    assert "Traceback" not in out + err


def test_output_folder_gets_a_named_image_inside(in_tmp: Path) -> None:
    Path("folder").mkdir()
    code, out, _ = invoke("generate", "a red fox", "-W", "32", "-H", "32", "-o", "folder")
    assert code == 0
    assert out.strip() == str(Path("folder") / "a-red-fox.png")
    assert verify_image(Path("folder") / "a-red-fox.png") == ("PNG", (32, 32))


@pytest.mark.parametrize(("name", "fmt"), [("fox.jpg", "JPEG"), ("fox.webp", "WEBP")])
def test_the_extension_names_the_format(in_tmp: Path, name: str, fmt: str) -> None:
    code, _, _ = invoke("generate", "a red fox", "-W", "32", "-H", "32", "-o", name)
    assert code == 0
    assert verify_image(name)[0] == fmt


@pytest.mark.parametrize("keep_queued", [False, True])
def test_ctrl_c_cancels_the_job_on_the_server(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch, keep_queued: bool
) -> None:
    (in_tmp / "generators.yaml").write_text(
        "generators:\n  slow:\n    class: mock\n    delay: 30\n", encoding="utf-8"
    )
    jobs: list[ImageJob] = []
    real_submit = MockGenerator.submit

    def submit(self: MockGenerator, *args: Any, **kwargs: Any) -> ImageJob:
        jobs.append(real_submit(self, *args, **kwargs))
        return jobs[-1]

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the job waits on the (mock) server

    monkeypatch.setattr(MockGenerator, "submit", submit)
    monkeypatch.setattr(SYSTEM_CLOCK, "sleep", interrupt)
    extra = ["--keep-queued"] if keep_queued else []
    code, _, err = invoke("generate", "x", "-c", "generators.yaml", "-g", "slow", *extra)
    assert code == 130
    assert "Traceback" not in err
    (job,) = jobs
    if keep_queued:
        assert f"left job {job.id} on slow (--keep-queued)" in err
        assert not job.done  # left on the server
    else:
        assert f"canceled job {job.id} on slow" in err
        assert job.status == "canceled"
    assert list(in_tmp.glob("*.png")) == []


def test_an_unknown_param_is_one_warning_line_and_the_image_is_made(in_tmp: Path) -> None:
    code, out, err = invoke("generate", "x", "-W", "64", "-H", "64", "--param", "stpes=30")
    assert code == 0, err
    assert out.strip() == "x.png"
    assert err.splitlines()[0] == (
        "warning: generator 'mock': unknown option 'stpes' ignored (it knows: images, "
        "init_image, loras, placeholder_style, strength, timeout)"
    )
    code, _, err = invoke("generate", "x", "-W", "64", "-H", "64", "-p", "placeholder_style=debug")
    assert code == 0, err
    assert "warning" not in err
