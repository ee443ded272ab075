"""Input images, img2img and LoRAs against a real InvokeAI 6 (``IMAGEGEN_INVOKEAI_URL``).

No model weights are needed: templates run the uploaded image through model-free nodes,
and the built-in img2img graph is proven valid by the server accepting it and failing the
item only for the missing model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

import degrees37_imagegen_invokeai._inventory as invokeai_module  # where uploads are made
from degrees37_imagegen import InvalidRequestError
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai.errors import QueueItemError

URL = os.environ.get("IMAGEGEN_INVOKEAI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="IMAGEGEN_INVOKEAI_URL is not set"),
]

MISSING_MODEL = {
    "key": "00000000-0000-0000-0000-0000000000a1",
    "hash": "blake3:deadbeef",
    "name": "missing-sdxl",
    "base": "sdxl",
    "type": "main",
}

RESIZE = {
    "id": "e2e-resize",
    "nodes": {
        "resize": {"id": "resize", "type": "img_resize", "image": "{{init_image}}",
                   "width": "{{width}}", "height": "{{height}}", "resample_mode": "nearest"},
    },
    "edges": [],
}  # fmt: skip

BLUR = {
    "id": "e2e-blur",
    "nodes": {
        "blur": {"id": "blur", "type": "img_blur", "image": {"image_name": "{{init_image}}"},
                 "radius": 2, "blur_type": "gaussian"},
    },
    "edges": [],
}  # fmt: skip


def pattern(size: tuple[int, int] = (40, 30)) -> Image.Image:
    image = Image.new("RGB", size)
    for y in range(size[1]):
        for x in range(size[0]):
            image.putpixel((x, y), ((x * 7) % 256, (y * 11) % 256, (x * y) % 256))
    return image


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_CACHE_DIR", str(tmp_path / "cache"))


def test_a_template_resizes_the_uploaded_image_once_uploaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    real_upload = invokeai_module.upload_image

    def counting(api: Any, image: Any, retrying: Any, generator: Any) -> str:
        sent.append(image.sha256)
        return real_upload(api, image, retrying, generator)

    monkeypatch.setattr(invokeai_module, "upload_image", counting)
    source = pattern()
    with InvokeAIGenerator({"base_url": URL, "graph_template": RESIZE}) as gen:
        gen.submit("x", width=80, height=60, init_image=source).wait(timeout=60).save(
            tmp_path / "a.png"
        )
        gen.submit("x", width=120, height=90, init_image=source).wait(timeout=60).save(
            tmp_path / "b.png"
        )
    for name, size in (("a.png", (80, 60)), ("b.png", (120, 90))):
        out = Image.open(tmp_path / name).convert("RGB")
        assert out.size == size
        expected = source.resize(size, Image.Resampling.NEAREST)
        assert ImageChops.difference(out, expected).getbbox() is None
    assert len(sent) == 1  # the same image, sent twice: uploaded once


def test_a_rerun_finds_the_upload_on_the_server_by_its_hash(tmp_path: Path) -> None:
    """Two generators (as two runs of a batch would be) and one input image: the second
    finds the first's upload by the hash in its metadata, and the server holds it once."""
    import secrets

    import httpx

    from degrees37_imagegen.images import load_image
    from degrees37_imagegen_invokeai._upload import upload_image

    source = pattern()
    source.putpixel((0, 0), tuple(secrets.token_bytes(3)))  # content new to the server
    image = load_image(source)
    names = []
    for _ in range(2):
        with InvokeAIGenerator({"base_url": URL, "graph_template": RESIZE}) as gen:
            names.append(upload_image(gen._api, image, gen.retrying, gen.name))
            gen.submit("x", width=40, height=30, init_image=source).wait(timeout=60).save(
                tmp_path / f"{len(names)}.png"
            )
    search = {"search_term": image.sha256, "is_intermediate": "true", "limit": "10"}
    held = httpx.get(f"{URL}/api/v1/images/", params=search, timeout=10).json()
    print(f"\n    the same input from two generators: {names}; on the server: {held['total']}")
    assert names[0] == names[1]
    assert held["total"] == 1


def test_a_template_blurs_the_image_by_image_name(tmp_path: Path) -> None:
    source = pattern()
    with InvokeAIGenerator({"base_url": URL, "graph_template": BLUR}) as gen:
        gen.submit("x", width=40, height=30, init_image=source).wait(timeout=60).save(
            tmp_path / "blur.png"
        )
    out = Image.open(tmp_path / "blur.png").convert("RGB")
    assert out.size == source.size
    assert ImageChops.difference(out, source).getbbox() is not None  # it was blurred


def test_the_builtin_img2img_graph_fails_only_for_the_missing_model() -> None:
    with InvokeAIGenerator({"base_url": URL, "default_model": MISSING_MODEL}) as gen:
        job = gen.submit("a fox", width=512, height=512, init_image=pattern(), strength=0.6)
        with pytest.raises(QueueItemError) as caught:
            job.wait(timeout=120)
        assert gen.check_ready() == (
            f"InvokeAI has no model with key {MISSING_MODEL['key']!r} (missing-sdxl)"
        )
    assert caught.value.error_message == f"Unknown model: {MISSING_MODEL['key']}"


def test_an_unknown_lora_is_named_before_anything_is_queued() -> None:
    with InvokeAIGenerator({"base_url": URL, "default_model": MISSING_MODEL}) as gen:
        with pytest.raises(InvalidRequestError) as caught:
            gen.submit("a fox", width=512, height=512, loras=["detail:0.8"])
        assert (
            str(caught.value) == "loras: InvokeAI has no sdxl LoRA 'detail'; its sdxl LoRAs: none"
        )


def test_check_says_why_without_a_model() -> None:
    with InvokeAIGenerator({"base_url": URL}) as gen:
        reason = gen.check_ready()
    assert reason is not None
    assert "InvokeAI has no SDXL or SD 1.x model" in reason
