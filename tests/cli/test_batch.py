from __future__ import annotations

import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from degrees37_imagegen import (
    BaseImageGenerator,
    GeneratorConnectionError,
    GeneratorRegistry,
    ImageInfo,
    read_png_text,
    write_image_atomically,
)
from degrees37_imagegen.cli import app

# The module, not the command function that 'degrees37_imagegen.cli' exports as 'batch'.
batch_cli = importlib.import_module("degrees37_imagegen.cli.batch")

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def jobs_file(folder: Path, n: int, name: str = "book.yaml", **defaults: object) -> Path:
    data = {
        "defaults": {"width": 64, "height": 96, **defaults},
        "jobs": [{"prompt": f"scene {i}: the keeper climbs"} for i in range(1, n + 1)],
    }
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png") if p.name != "contact_sheet.png")


def test_a_book_of_25_at_1080x1920_with_the_mock(in_tmp: Path) -> None:
    jobs = [{"prompt": f"scene {i}: the lighthouse keeper at dawn"} for i in range(1, 26)]
    (in_tmp / "book.yaml").write_text(
        yaml.safe_dump({"defaults": {"width": 1080, "height": 1920}, "jobs": jobs}),
        encoding="utf-8",
    )
    code, out, err = invoke("batch", "book.yaml", "--generator", "mock")
    assert code == 0, err
    assert out == ""
    files = pngs(in_tmp / "book")
    assert len(files) == 25
    assert files[0] == "001-scene-1-the-lighthouse-keeper-at-dawn.png"
    with Image.open(in_tmp / "book" / files[0]) as img:
        assert img.size == (1080, 1920)
    text = read_png_text(in_tmp / "book" / files[0])
    assert text["imagegen:prompt"] == "scene 1: the lighthouse keeper at dawn"
    assert text["imagegen:generator"] == "mock"
    lines = (in_tmp / "book" / "manifest.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["status"] != "submitted" for line in lines) == 25
    assert "25 images: 25 done, 0 failed, 0 skipped in " in err
    assert "[25/25] done" in err


def test_rerun_skips_what_is_there_and_makes_the_rest(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 6)
    assert invoke("batch", str(path), "--out", "out")[0] == 0
    for name in pngs(in_tmp / "out")[:2]:
        (in_tmp / "out" / name).unlink()
    code, _, err = invoke("batch", str(path), "--out", "out")
    assert code == 0
    assert "6 images: 2 done, 0 failed, 4 skipped in " in err
    code, _, err = invoke("batch", str(path), "--out", "out", "--force")
    assert "6 images: 6 done, 0 failed, 0 skipped in " in err


def test_bad_jobs_are_all_reported_and_nothing_is_made(in_tmp: Path) -> None:
    (in_tmp / "jobs.yaml").write_text(
        textwrap.dedent(
            """
            - prompt: fine
            - width: 10
            - prompt: x
              width: wide
            - prompt: y
              generator: nope
            """
        ).lstrip(),
        encoding="utf-8",
    )
    code, out, err = invoke("batch", "jobs.yaml")
    assert code == 2
    assert out == ""
    assert err.splitlines() == [
        "error: jobs.yaml: job 2 (line 2): missing 'prompt'",
        "error: jobs.yaml: job 3 (line 3): 'width' must be a whole number of pixels, "
        "got 'wide' (str)",
        "error: jobs.yaml: job 4 (line 5): unknown generator 'nope'; available: comfyui, "
        "invokeai, mock",
        "3 problems in jobs.yaml; nothing was generated",
    ]
    assert not (in_tmp / "jobs").exists()


def test_unknown_generator_and_refused_size_are_found_before_anything_runs(
    in_tmp: Path,
) -> None:
    (in_tmp / "jobs.jsonl").write_text(
        '{"prompt": "a"}\n{"prompt": "b", "generator": "nope"}\n{"prompt": "c", "width": 20000}\n',
        encoding="utf-8",
    )
    code, _, err = invoke("batch", "jobs.jsonl", "-g", "mock")
    assert code == 2
    lines = err.splitlines()
    assert lines[0].startswith("error: jobs.jsonl: job 2 (line 2): unknown generator 'nope'")
    assert lines[1] == "error: jobs.jsonl: job 3 (line 3): width 20000 is larger than 16384 pixels"
    assert lines[2] == "2 problems in jobs.jsonl; nothing was generated"
    assert not (in_tmp / "jobs").exists()


def test_failures_are_summarised_and_exit_1(in_tmp: Path) -> None:
    (in_tmp / "generators.yaml").write_text(
        "generators:\n  broken:\n    class: mock\n    fail_rate: 1\n", encoding="utf-8"
    )
    (in_tmp / "jobs.csv").write_text(
        "prompt,width,height,generator\ngood,32,32,\nbad,32,32,broken\nalso good,32,32,\n",
        encoding="utf-8",
    )
    code, _, err = invoke("batch", "jobs.csv", "-c", "generators.yaml", "-g", "mock")
    assert code == 1
    assert "3 images: 2 done, 1 failed (see below), 0 skipped in " in err
    assert (
        "  failed: job 2 (line 3) 002-bad.png: generator 'broken': simulated generation "
        "failure (fail_rate=1)" in err.splitlines()
    )
    assert pngs(in_tmp / "jobs") == ["001-good.png", "003-also-good.png"]


def test_json_output(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 3)
    code, out, err = invoke("batch", str(path), "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4
    assert {line["status"] for line in lines[:3]} == {"done"}
    assert all(Path(line["path"]).is_file() for line in lines[:3])
    assert lines[3]["summary"]["done"] == 3
    assert lines[3]["summary"]["failures"] == []


def test_shards_share_one_folder_and_cover_every_job(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 7)
    for k in (1, 2, 3):
        code, _, err = invoke("batch", str(path), "--out", "shared", "--shard", f"{k}/3")
        assert code == 0, err
    assert len(pngs(in_tmp / "shared")) == 7
    manifests = sorted(p.name for p in (in_tmp / "shared").glob("manifest*.jsonl"))
    assert manifests == ["manifest-1-of-3.jsonl", "manifest-2-of-3.jsonl", "manifest-3-of-3.jsonl"]
    indexes = [
        json.loads(line)["job"]
        for name in manifests
        for line in (in_tmp / "shared" / name).read_text().splitlines()
        if json.loads(line)["status"] != "submitted"  # the journal's records
    ]
    assert sorted(indexes) == list(range(1, 8))


@pytest.mark.parametrize("value", ["0/2", "2", "x/y"])
def test_bad_shard_is_a_usage_error(in_tmp: Path, value: str) -> None:
    path = jobs_file(in_tmp, 2)
    code, _, err = invoke("batch", str(path), "--shard", value)
    assert code == 2
    assert "K/N" in err


def test_contact_sheet(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 5)
    code, _, err = invoke("batch", str(path), "--contact-sheet")
    assert code == 0, err
    sheet = in_tmp / "book" / "contact_sheet.png"
    with Image.open(sheet) as img:
        assert img.width > 0
    assert f"contact sheet: {Path('book') / 'contact_sheet.png'}" in err


def test_dry_run_makes_nothing(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 2)
    code, out, _ = invoke("batch", str(path), "--dry-run")
    assert code == 0
    assert out.splitlines()[0].startswith(
        f"make  {Path('book') / '001-scene-1-the-keeper-climbs.png'}"
    )
    assert not (in_tmp / "book").exists()


def test_empty_and_missing_jobs_files(in_tmp: Path) -> None:
    (in_tmp / "empty.yaml").write_text("", encoding="utf-8")
    assert invoke("batch", "empty.yaml") == (2, "", "error: empty.yaml: no jobs\n")
    code, _, err = invoke("batch", "missing.yaml")
    assert code == 2
    assert err.splitlines()[0] == "error: missing.yaml: jobs file not found"


def test_help_lists_the_options() -> None:
    code, out, _ = invoke("batch", "--help")
    assert code == 0
    for option in ("--out", "--generator", "--concurrency", "--force", "--shard", "--json"):
        assert option in out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("keep_queued", [False, True])
def test_ctrl_c_cancels_our_jobs_and_a_rerun_makes_the_rest(
    in_tmp: Path, keep_queued: bool
) -> None:
    (in_tmp / "generators.yaml").write_text(
        "generators:\n  slow:\n    class: mock\n    delay: 0.3\n", encoding="utf-8"
    )
    path = jobs_file(in_tmp, 12)
    command = [
        sys.executable,
        "-c",
        "from degrees37_imagegen.cli import main; main()",
        "batch",
        str(path),
        "-c",
        "generators.yaml",
        "-g",
        "slow",
        "-j",
        "1",
        *(["--keep-queued"] if keep_queued else []),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "] done" in line:
            break
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 130, err
    # The signal comes as one job ends: the next one may or may not be on the server yet.
    if keep_queued:
        assert re.search(r"interrupted: no new job starts; waiting for [01] job\(s\)", err), err
    else:  # the running job is canceled on its server, not waited for
        assert re.search(r"interrupted: canceled [01] job\(s\) of ours on the servers", err), err
    assert "run the same command again to make the rest" in err
    made = pngs(in_tmp / "book")
    assert 1 <= len(made) < 12
    assert [p.name for p in (in_tmp / "book").iterdir() if p.name.startswith(".")] == []
    for name in made:  # whole images only
        with Image.open(in_tmp / "book" / name) as img:
            img.verify()
    code, _, err = invoke("batch", str(path), "-c", "generators.yaml", "-g", "mock")
    assert code == 0
    assert f"12 images: {12 - len(made)} done, 0 failed, {len(made)} skipped in " in err


class Flaky(BaseImageGenerator):
    """Answers unless its url is 'down'; makes small grey images."""

    default_settings: ClassVar[dict[str, Any]] = {"url": "up"}
    server_setting: ClassVar[str] = "url"

    def test_connection(self) -> bool:
        return self.config["url"] != "down"

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        if self.config["url"] == "down":
            raise GeneratorConnectionError("connection refused")
        image_id = f"{self.config['url']}-{prompt}"
        self.record_image(ImageInfo(image_id, self.name, prompt, negative_prompt, width, height, 1))
        return image_id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        info = self.image_info(image_id)
        assert info is not None
        buffer = io.BytesIO()
        Image.new("RGB", (info.width, info.height), "grey").save(buffer, "PNG")
        write_image_atomically(output_path, buffer.getvalue())
        return True


@pytest.fixture
def flaky_registry(monkeypatch: pytest.MonkeyPatch) -> GeneratorRegistry:
    registry = GeneratorRegistry(
        {
            "generators": {
                "gpus": {"class": "flaky", "servers": ["up1", "down", "up2"]},
                "dead": {"class": "flaky", "url": "down"},
            }
        },
        discover=False,
    )
    registry.register("flaky", Flaky)
    monkeypatch.setattr(batch_cli, "_registry", lambda config: registry)
    return registry


@pytest.mark.parametrize("driver", ["threads", "async"])  # asked in threads, or on a loop
def test_a_server_that_does_not_answer_stops_the_batch_at_once(
    in_tmp: Path, flaky_registry: GeneratorRegistry, driver: str
) -> None:
    path = jobs_file(in_tmp, 3)
    code, _, err = invoke("batch", str(path), "-g", "dead", "--driver", driver)
    assert code == 1
    assert err.splitlines() == [
        "error: generator 'dead' is not ready (its server does not answer); nothing was generated"
    ]
    assert not (in_tmp / "book").exists()


@pytest.mark.parametrize("driver", ["threads", "async"])
def test_a_pool_leaves_out_a_server_that_does_not_answer(
    in_tmp: Path, flaky_registry: GeneratorRegistry, driver: str
) -> None:
    path = jobs_file(in_tmp, 8)
    code, out, err = invoke("batch", str(path), "-g", "gpus", "--json", "--driver", driver)
    assert code == 0, err
    assert err.splitlines() == ["warning: pool 'gpus': down is out of rotation (not ready)"]
    records = [json.loads(line) for line in out.splitlines()[:-1]]
    assert len(records) == 8
    assert {r["server"] for r in records} == {"up1", "up2"}
    assert all(r["attempts"] == 1 for r in records)


def test_an_output_folder_that_cannot_be_made(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 1)
    (in_tmp / "taken").write_text("a file, not a folder", encoding="utf-8")
    code, _, err = invoke("batch", str(path), "--out", "taken")
    assert code == 2
    assert err.startswith("error: cannot create the output folder taken: ")


def test_an_unknown_job_key_is_one_warning_before_the_run(in_tmp: Path) -> None:
    path = jobs_file(in_tmp, 3, stpes=30)
    code, _, err = invoke("batch", str(path))
    assert code == 0, err
    lines = err.splitlines()
    assert lines[0] == (
        f"warning: {path}: job 1 (line 6): generator 'mock' does not know option 'stpes'; "
        "it is ignored (and 2 more job(s))"
    )
    assert sum("stpes" in line for line in lines) == 1
    assert len(pngs(in_tmp / "book")) == 3
