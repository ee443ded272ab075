"""Input images, img2img and LoRAs on ComfyUI, offline: uploads answered as the real server
does, every prompt checked against the real ``/object_info`` entries (``comfyui_uploads``)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from comfyui_uploads import ComfyUIModels
from PIL import Image

from degrees37_imagegen import ConfigError, InvalidRequestError
from degrees37_imagegen_comfyui.generator import ComfyUIGenerator

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"

INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "example.png"},
          "_meta": {"title": "init_image"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
}  # fmt: skip


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_CACHE_DIR", str(tmp_path / "cache"))


def generator(server: ComfyUIModels, **settings: Any) -> ComfyUIGenerator:
    return ComfyUIGenerator(
        {"server_address": "comfy.invalid", **settings}, name="comfy", transport=server.transport()
    )


def test_builtin_img2img_is_comfyuis_graph() -> None:
    server = ComfyUIModels(checkpoints=[CHECKPOINT])
    with generator(server) as gen:
        job = gen.submit("a fox", width=520, height=512, init_image=png(), strength=0.55)
    [prompt] = server.prompts
    assert server.errors(prompt) == []
    [upload] = server.uploads
    load = next(n for n in prompt.values() if n["class_type"] == "LoadImage")
    assert load["inputs"]["image"] == upload["name"] == upload["filename"]
    scale = prompt[load_consumer(prompt, "ImageScale")]
    assert (scale["inputs"]["width"], scale["inputs"]["height"]) == (520, 512)
    encode = next(i for i, n in prompt.items() if n["class_type"] == "VAEEncode")
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["latent_image"] == [encode, 0]
    assert sampler["inputs"]["denoise"] == 0.55
    assert "EmptyLatentImage" not in {n["class_type"] for n in prompt.values()}
    options = json.loads(json.dumps(job.to_dict()))["request"]["options"]
    assert Path(options["init_image"]).read_bytes() == upload["data"]


def load_consumer(prompt: dict[str, Any], class_type: str) -> str:
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


def test_img2img_strength_defaults_to_075_and_txt2img_is_unchanged() -> None:
    server = ComfyUIModels(checkpoints=[CHECKPOINT])
    with generator(server) as gen:
        gen.submit("a fox", width=512, height=512, init_image=png())
        gen.submit("a fox", width=512, height=512)
    img2img, txt2img = server.prompts
    assert img2img["3"]["inputs"]["denoise"] == 0.75
    assert txt2img["3"]["inputs"]["denoise"] == 1.0
    assert txt2img["3"]["inputs"]["latent_image"] == ["5", 0]
    assert server.errors(txt2img) == []


def test_loras_chain_after_the_checkpoint() -> None:
    server = ComfyUIModels(checkpoints=[CHECKPOINT], loras=["detail.safetensors", "ink.pt"])
    with generator(server, loras=["detail:0.8"]) as gen:
        gen.submit(
            "a fox", width=512, height=512, init_image=png(), loras=["detail:0.8", "ink.pt:0.3"]
        )
        gen.submit("a fox", width=512, height=512)  # the setting's
    prompt, default = server.prompts
    assert server.errors(prompt) == []
    lora1 = next(
        i for i, n in prompt.items() if n["inputs"].get("lora_name") == "detail.safetensors"
    )
    lora2 = next(i for i, n in prompt.items() if n["inputs"].get("lora_name") == "ink.pt")
    assert prompt[lora1]["inputs"]["model"] == ["4", 0]
    assert prompt[lora2]["inputs"]["clip"] == [lora1, 1]
    assert prompt[lora2]["inputs"]["strength_model"] == 0.3
    assert prompt["3"]["inputs"]["model"] == [lora2, 0]
    assert prompt["6"]["inputs"]["clip"] == prompt["7"]["inputs"]["clip"] == [lora2, 1]
    assert prompt["11"]["inputs"]["vae"] == ["4", 2]  # the VAE stays the checkpoint's
    assert server.errors(default) == []
    assert [
        n["inputs"]["lora_name"] for n in default.values() if n["class_type"] == "LoraLoader"
    ] == ["detail.safetensors"]


def test_an_unknown_lora_is_named_with_what_the_server_has_before_anything_is_sent() -> None:
    server = ComfyUIModels(checkpoints=[CHECKPOINT], loras=["detail.safetensors"])
    with generator(server) as gen, pytest.raises(InvalidRequestError) as caught:
        gen.submit("a fox", init_image=png(), loras=["nope:0.5"])
    assert str(caught.value) == "loras: ComfyUI has no LoRA 'nope'; its LoRAs: detail.safetensors"
    assert server.uploads == []
    assert server.prompts == []


def test_a_bad_lora_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="loras"):
        generator(ComfyUIModels(), loras=[{"weight": 1}])


@pytest.mark.parametrize(
    ("mapping", "workflow"),
    [
        (None, INVERT),
        ({"init_image": "1.image"}, {**INVERT, "1": {**INVERT["1"], "_meta": {"title": "x"}}}),
        (None, {**INVERT, "1": {"class_type": "LoadImage", "inputs": {"image": "{{init_image}}"}}}),
    ],
    ids=["title", "mapping", "placeholder"],
)
def test_a_template_takes_init_image(mapping: Any, workflow: dict[str, Any]) -> None:
    server = ComfyUIModels()
    with generator(server, workflow_template=workflow, mapping=mapping) as gen:
        gen.submit("x", init_image=png())
        gen.submit("x", init_image=png())  # the same image: uploaded once
    assert len(server.uploads) == 1
    for prompt in server.prompts:
        assert server.errors(prompt) == []
        assert prompt["1"]["inputs"]["image"] == server.uploads[0]["name"]


def test_named_images_and_images_without_a_place() -> None:
    workflow = {
        **INVERT,
        "4": {"class_type": "LoadImage", "inputs": {"image": "example.png"},
              "_meta": {"title": "mask"}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "m"}},
    }  # fmt: skip
    server = ComfyUIModels()
    with generator(server, workflow_template=workflow) as gen:
        gen.submit("x", init_image=png(), images={"mask": png((0, 0, 0))})
        with pytest.raises(InvalidRequestError, match="no place for the image logo"):
            gen.submit("x", images={"logo": png()})
    [prompt] = server.prompts
    assert server.errors(prompt) == []
    assert prompt["4"]["inputs"]["image"] == server.uploads[1]["name"]
    assert len(server.uploads) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "init_image: no such file: "),
        (b"", "is empty (0 bytes), not an image"),
        (b"GIF89a but not really", "is not"),
    ],
    ids=["missing", "empty", "not-an-image"],
)
def test_a_bad_image_is_one_line_before_anything_is_sent(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "in.png"
    if content is not None:
        path.write_bytes(content)
    server = ComfyUIModels()
    with (
        generator(server, workflow_template=INVERT) as gen,
        pytest.raises(InvalidRequestError) as caught,
    ):
        gen.submit("x", init_image=path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert server.calls == []


def test_list_models_and_check() -> None:
    server = ComfyUIModels(loras=["detail.safetensors"])
    with generator(server) as gen:
        assert "euler_ancestral" in gen.list_models("samplers")
        assert "karras" in gen.list_models("schedulers")
        assert gen.list_models("models") == []
        assert gen.list_models("loras") == ["detail.safetensors"]
        assert gen.check_ready() == (
            "ComfyUI at http://comfy.invalid:8188 has no checkpoints (models/checkpoints is "
            f"empty); the workflow needs {CHECKPOINT!r}"
        )
        server.checkpoints = ["other.safetensors"]
        assert gen.check_ready() == (
            f"ComfyUI has no checkpoint {CHECKPOINT!r}; it has: other.safetensors"
        )
        server.checkpoints.append(CHECKPOINT)
        assert gen.check_ready() is None
        with pytest.raises(InvalidRequestError, match="unknown kind 'nope'"):
            gen.list_models("nope")
    with generator(server, workflow_template=INVERT) as gen:
        assert gen.check_ready() is None  # needs no checkpoint
