"""``degrees37_imagegen_comfyui.testing``, used as a user would: no helper from tests/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

import degrees37_imagegen_comfyui
from degrees37_imagegen import GeneratorError
from degrees37_imagegen_comfyui import ComfyUIGenerator
from degrees37_imagegen_comfyui import testing as comfy_testing
from degrees37_imagegen_comfyui.testing import EMPTY_IMAGE_TEMPLATE, FakeComfyUI, running_fake


def test_a_generator_submits_waits_and_saves(tmp_path: Path) -> None:
    template = tmp_path / "flat.json"
    template.write_text(json.dumps(EMPTY_IMAGE_TEMPLATE), encoding="utf-8")
    with running_fake() as fake:
        config = {
            "server_address": fake.url,
            "workflow_template": str(template),
            "values": {"color": 0x2266AA},
        }
        with ComfyUIGenerator(config) as generator:
            job = generator.submit("ignored", width=72, height=128, seed=7)
            job.wait(timeout=10).save(tmp_path / "flat.png")
        (post,) = fake.posts()
    with Image.open(tmp_path / "flat.png") as image:
        assert image.size == (72, 128)
        assert image.getpixel((0, 0))[:3] == (0x22, 0x66, 0xAA)
    assert post.body["prompt"]["1"]["inputs"]["width"] == 72


def test_a_fault_switch_reaches_the_user(tmp_path: Path) -> None:
    fake = FakeComfyUI(faults={"view_500": 1}).start()
    try:
        config = {
            "server_address": fake.url,
            "workflow_template": EMPTY_IMAGE_TEMPLATE,
            "values": {"color": 0},
        }
        with ComfyUIGenerator(config) as generator:
            job = generator.submit("x", width=64, height=64).wait(timeout=10)
            with pytest.raises(GeneratorError, match="HTTP 500"):
                job.save(tmp_path / "x.png")
    finally:
        fake.stop()
    assert not (tmp_path / "x.png").exists()
    assert fake.counters["fault:view_500"] == 1


def test_the_captures_are_package_data_not_the_tests() -> None:
    package = Path(degrees37_imagegen_comfyui.__file__).parent
    assert Path(str(comfy_testing.CAPTURES)) == package / "_captures"
    shipped = sorted(p.name for p in (package / "_captures").iterdir())
    assert shipped == [
        "binary_legacy_01.bin",
        "exec_error_imagescaleby_history.json",
        "get_system_stats.json",
        "object_info_trimmed.json",
    ]
    assert "EmptyImage" in FakeComfyUI().object_info


def test_every_public_name_is_there() -> None:
    for name in comfy_testing.__all__:
        assert getattr(comfy_testing, name) is not None
