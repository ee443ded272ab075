"""Input images, img2img and model lists against a real ComfyUI (``IMAGEGEN_COMFYUI_URL``).

No model weights are needed: the input image goes through model-free nodes, and the
built-in img2img workflow is proven valid by the server refusing it only for the missing
checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops
from typer.testing import CliRunner

import degrees37_imagegen_comfyui._inventory as comfy_module  # where uploads are made
from degrees37_imagegen.cli import app
from degrees37_imagegen_comfyui._errors import ComfyUIValidationError
from degrees37_imagegen_comfyui.generator import ComfyUIGenerator

URL = os.environ.get("IMAGEGEN_COMFYUI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="set IMAGEGEN_COMFYUI_URL to run against a real ComfyUI"),
]

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"},
          "_meta": {"title": "init_image"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e2e_inv"}},
}  # fmt: skip


def pattern(size: tuple[int, int] = (37, 23)) -> Image.Image:
    """An image whose inversion is exact in ComfyUI's float32 (channels 0 or 255 only:
    mid values come back 1 lower, as its SaveImage truncates instead of rounding)."""
    image = Image.new("RGB", size)
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (255, 255, 0)]
    for y in range(size[1]):
        for x in range(size[0]):
            image.putpixel((x, y), colors[(x // 3 + y // 2) % len(colors)])
    return image


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_CACHE_DIR", str(tmp_path / "cache"))


def test_loadimage_invert_save_inverts_the_input_pixel_for_pixel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[Any] = []
    real_upload = comfy_module.upload_image

    def counting(api: Any, image: Any) -> str:
        sent.append(image.sha256)
        return real_upload(api, image)

    monkeypatch.setattr(comfy_module, "upload_image", counting)
    source = pattern()
    with ComfyUIGenerator({"server_address": URL, "workflow_template": INVERT}) as gen:
        gen.submit("invert", init_image=source).wait(timeout=120).save(tmp_path / "a.png")
        gen.submit("invert", seed=1, init_image=source).wait(timeout=120).save(tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        out = Image.open(tmp_path / name).convert("RGB")
        assert out.size == source.size
        assert ImageChops.difference(out, ImageChops.invert(source)).getbbox() is None
    assert len(sent) == 1  # the same image, sent twice: uploaded once


def test_the_builtin_img2img_workflow_fails_only_for_the_missing_checkpoint() -> None:
    with ComfyUIGenerator({"server_address": URL}) as gen:
        with pytest.raises(ComfyUIValidationError) as caught:
            gen.submit("a fox", width=512, height=512, init_image=pattern(), strength=0.5)
        assert gen.check_ready() is not None
    errors = caught.value.node_errors
    assert list(errors) == ["4"]  # only the checkpoint loader; LoadImage, VAEEncode... pass
    [error] = errors["4"]["errors"]
    assert error["type"] == "value_not_in_list"
    assert error["details"].startswith("ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in")


def test_imagegen_models_and_check(tmp_path: Path) -> None:
    config = tmp_path / "generators.yaml"
    config.write_text(
        f"generators:\n  comfy:\n    class: comfyui\n    server_address: {URL}\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(app, ["models", "-g", "comfy", "--kind", "samplers", "-c", str(config)])
    assert result.exit_code == 0, result.stderr
    assert "euler_ancestral" in result.stdout.splitlines()
    result = runner.invoke(app, ["models", "-g", "comfy", "--json", "-c", str(config)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"generator": "comfy", "kind": "models", "names": []}
    result = runner.invoke(app, ["check", "comfy", "-c", str(config)])
    assert result.exit_code == 1
    assert "not ready" in result.stdout
    assert "has no checkpoints (models/checkpoints is empty)" in result.stdout
