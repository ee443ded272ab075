"""Input images and LoRAs in the core: checked before anything is sent, stored by reference
(JSON-safe jobs), uploaded once per content; the CLI and jobs-file options."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from degrees37_imagegen import InvalidRequestError
from degrees37_imagegen.batch.jobs import JobsFileError, load_jobs
from degrees37_imagegen.cli import app
from degrees37_imagegen.health import check_generator
from degrees37_imagegen.images import (
    UploadCache,
    load_image,
    parse_loras,
    prepare_image_options,
    store_image,
)
from degrees37_imagegen_mock import MockGenerator

runner = CliRunner()


def png(color: tuple[int, int, int] = (1, 2, 3), size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMAGEGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "inputs"


def test_an_image_is_read_from_a_path_bytes_or_pil(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(png())
    from_path = load_image(path)
    assert (from_path.width, from_path.height, from_path.format) == (8, 6, "PNG")
    assert load_image(png()).sha256 == from_path.sha256
    assert load_image(Image.open(path)).sha256 == from_path.sha256  # re-encoded, same pixels
    assert from_path.filename == from_path.sha256[:32] + ".png"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("missing.png", "init_image: no such file: missing.png"),
        (b"", "init_image: 0 bytes is empty (0 bytes), not an image"),
        (b"plain text", "init_image: 10 bytes is not an image"),
        (png()[:40], "init_image: 40 bytes is not"),
        (3, "init_image must be a path, bytes or a PIL image, got int"),
    ],
    ids=["missing", "empty", "text", "truncated", "number"],
)
def test_a_bad_image_is_one_line(value: object, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        load_image(value)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_folder_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="is a folder, not an image"):
        load_image(tmp_path)


def test_bytes_and_pil_images_are_stored_by_content_hash(cache: Path, tmp_path: Path) -> None:
    ref = store_image(png())
    assert Path(ref).parent == cache
    assert Path(ref).read_bytes() == png()
    assert store_image(Image.open(io.BytesIO(png()))) == ref  # same content, same file
    path = tmp_path / "x.png"
    path.write_bytes(png())
    assert store_image(path) == str(path.resolve())  # a path stays where it is


def test_options_become_json() -> None:
    options = prepare_image_options(
        {"init_image": png(), "images": {"mask": png((0, 0, 0))}, "strength": 1, "loras": "x:0.5"}
    )
    assert json.loads(json.dumps(options)) == options
    assert options["strength"] == 1.0
    assert options["loras"] == [{"name": "x", "weight": 0.5}]
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(InvalidRequestError, match="strength must be a number from 0 to 1"):
            prepare_image_options({"strength": bad})
    with pytest.raises(InvalidRequestError, match=r"images\.mask: 0 bytes is empty"):
        prepare_image_options({"images": {"mask": b""}})


def test_loras_are_parsed() -> None:
    assert parse_loras(["a:0.8", "b", {"name": "c", "weight": 2}, "d:e"]) == [
        {"name": "a", "weight": 0.8},
        {"name": "b", "weight": 1.0},
        {"name": "c", "weight": 2.0},
        {"name": "d:e", "weight": 1.0},
    ]
    assert parse_loras(None) == []
    for bad in ([":0.5"], [{"weight": 1}], [{"name": "a", "weight": "x"}], 5, ["a:inf"]):
        with pytest.raises(InvalidRequestError, match="loras"):
            parse_loras(bad)


def test_the_upload_cache_uploads_one_content_once_across_threads() -> None:
    cache = UploadCache()
    uploads: list[str] = []
    gate = threading.Barrier(8)

    def upload(image: object) -> str:
        uploads.append("x")
        return f"name-{len(uploads)}"

    def use() -> None:
        gate.wait()
        cache.name(load_image(png()), upload)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert uploads == ["x"]
    assert cache.name(load_image(png((9, 9, 9))), upload) == "name-2"
    cache.forget(load_image(png()))
    assert cache.name(load_image(png()), upload) == "name-3"


def test_submit_stores_the_image_and_the_job_saves_as_json() -> None:
    with MockGenerator({"delay": 0}) as gen:
        job = gen.submit("x", width=64, height=64, init_image=png(), strength=0.5)
        data = json.loads(json.dumps(job.to_dict()))
        assert Path(data["request"]["options"]["init_image"]).read_bytes() == png()
        with pytest.raises(InvalidRequestError, match="init_image: 0 bytes is empty"):
            gen.submit("x", init_image=b"")


def test_the_base_generator_cannot_list() -> None:
    with MockGenerator({"delay": 0}) as gen, pytest.raises(Exception, match="cannot list loras"):
        gen.list_models("loras")


def test_check_is_ready_only_when_the_generator_can_make_an_image() -> None:
    class Missing(MockGenerator):
        def check_ready(self) -> str | None:
            return "the server has no model"

    with MockGenerator({"delay": 0}) as gen:
        assert check_generator(gen) == (True, "ready")
    with Missing({"delay": 0}) as gen:
        assert check_generator(gen) == (False, "the server has no model")


def test_jobs_files_read_images_relative_to_themselves(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "a.png").write_bytes(png())
    jobs_file = tmp_path / "book.yaml"
    jobs_file.write_text(
        "defaults: {strength: 0.4, loras: ['ink:0.5']}\n"
        "jobs:\n"
        "  - {prompt: one, init_image: refs/a.png, images: {mask: refs/a.png}}\n",
        encoding="utf-8",
    )
    [job] = load_jobs(jobs_file)
    assert job.extra["init_image"] == str(tmp_path / "refs" / "a.png")
    assert job.extra["images"] == {"mask": str(tmp_path / "refs" / "a.png")}
    assert job.extra["loras"] == [{"name": "ink", "weight": 0.5}]
    jobs_file.write_text(
        "- {prompt: one, init_image: refs/none.png}\n- {prompt: two, strength: 2}\n",
        encoding="utf-8",
    )
    with pytest.raises(JobsFileError) as caught:
        load_jobs(jobs_file)
    text = str(caught.value)
    assert "init_image: no such file: " in text
    assert "strength must be a number from 0 to 1" in text


def test_cli_generate_with_an_init_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.png").write_bytes(png())
    result = runner.invoke(
        app,
        ["generate", "x", "-g", "mock", "-W", "64", "-H", "64", "--init-image", "in.png",
         "--strength", "0.3", "--lora", "ink:0.5", "-o", "out.png"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "is empty (0 bytes)"), (b"text", "is not an image")],
    ids=["missing", "empty", "not-an-image"],
)
def test_cli_a_bad_init_image_is_exit_2_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes | None, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "in.png").write_bytes(content)
    result = runner.invoke(app, ["generate", "x", "-g", "mock", "--init-image", "in.png"])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("x*.png"))


def test_cli_models_of_a_generator_that_cannot_list() -> None:
    result = runner.invoke(app, ["models", "-g", "mock", "--kind", "samplers"])
    assert result.exit_code == 1
    assert "cannot list samplers: not supported" in result.stderr
