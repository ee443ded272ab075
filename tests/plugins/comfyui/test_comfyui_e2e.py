"""End-to-end tests against a real ComfyUI named by ``IMAGEGEN_COMFYUI_URL`` (skipped otherwise).

Start one as ``docs/generators/comfyui.md`` says, then::

    IMAGEGEN_COMFYUI_URL=http://127.0.0.1:8188 python3 -m pytest tests/plugins/comfyui -m e2e -v -s

No model weights are needed: EmptyImage -> SaveImage makes real images.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from comfyui_fake import load_capture
from PIL import Image

from degrees37_imagegen import Progress, generate_to_file, read_png_text
from degrees37_imagegen_comfyui import (
    ComfyUIGenerator,
    ComfyUITimeoutError,
    ComfyUIValidationError,
)

URL = os.environ.get("IMAGEGEN_COMFYUI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="set IMAGEGEN_COMFYUI_URL to run against a real ComfyUI"),
]

# width, height and colour mapped three ways: a placeholder, a node title and a node id (the
# last two in the mapping setting).
TEMPLATE: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": "{{width}}", "height": 64, "batch_size": 1, "color": 0},
        "_meta": {"title": "canvas"},
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "imagegen_e2e"},
    },
}


@pytest.fixture
def template_path(tmp_path: Path) -> Path:
    path = tmp_path / "empty_image.json"
    path.write_text(json.dumps(TEMPLATE), encoding="utf-8")
    return path


@pytest.fixture
def generators() -> Iterator[list[ComfyUIGenerator]]:
    made: list[ComfyUIGenerator] = []
    yield made
    for generator in made:
        generator.close()


def make(made: list[ComfyUIGenerator], **settings: Any) -> ComfyUIGenerator:
    generator = ComfyUIGenerator({"server_address": URL, "timeout": 120, **settings}, name="e2e")
    made.append(generator)
    return generator


def test_empty_image_template_makes_a_real_image_of_the_requested_size(
    generators: list[ComfyUIGenerator], template_path: Path, tmp_path: Path
) -> None:
    generator = make(
        generators,
        workflow_template=str(template_path),
        mapping={"height": "canvas.height", "color": "1.color"},
    )
    assert generator.test_connection()
    seen: list[Progress] = []
    # A colour unique to this run, so that ComfyUI cannot serve it from its cache.
    colour = uuid.uuid4().int & 0xFFFFFF
    result = generate_to_file(
        generator,
        tmp_path / "real.png",
        "a flat colour",
        width=333,
        height=222,
        seed=7,
        color=colour,
        on_progress=seen.append,
    )
    with Image.open(result.path) as image:
        size, pixel = image.size, image.convert("RGB").getpixel((0, 0))
    text = read_png_text(result.path)
    print(f"\n  image {result.image_id}: {result.path.name} {size} colour {pixel}")
    print(f"  ComfyUI's own metadata kept: {sorted(k for k in text if ':' not in k)}")
    print(f"  our metadata: imagegen:width={text['imagegen:width']} seed={text['imagegen:seed']}")
    print(f"  progress: {[(p.stage, p.node or p.message) for p in seen]}")
    assert size == (333, 222)
    assert pixel == ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
    assert "prompt" in text  # ComfyUI's SaveImage writes the prompt; we keep it
    assert text["imagegen:seed"] == "7"

    # The identical request again: ComfyUI serves it from cache with the old file name.
    again = generator.generate_image("a flat colour", width=333, height=222, color=colour)
    assert again is not None
    assert again != result.image_id
    files = [i["filename"] for i in generator.output_images(again)]
    info = generator.image_info(again)
    print(
        f"  cached resubmission {again}: files {files}, cached={info and info.extra.get('cached')}"
    )
    generator.download_image(again, tmp_path / "again.png")
    with Image.open(tmp_path / "again.png") as image:
        assert image.size == (333, 222)


def test_builtin_workflow_reports_the_missing_checkpoint(
    generators: list[ComfyUIGenerator],
) -> None:
    generator = make(generators)
    with pytest.raises(ComfyUIValidationError) as info:
        generator.generate_image("a lighthouse at dusk", width=512, height=512)
    print(f"\n  {type(info.value).__name__}: {info.value}")
    assert "ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in [" in str(info.value)
    assert "CheckpointLoaderSimple" in str(info.value)


def test_timeout_interrupts_our_running_prompt_and_deletes_our_pending_one(
    generators: list[ComfyUIGenerator],
) -> None:
    # The captured long prompt (about 6 s of blurring here), with a fresh colour each run.
    workflow = load_capture("q1_post_long.json")["request"]["body"]["json"]["prompt"]
    workflow["1"]["inputs"]["color"] = uuid.uuid4().int & 0xFFFFFF
    running = make(generators, workflow_template=workflow, timeout=1.5, poll_interval=0.5)
    pending_template = {
        **TEMPLATE,
        "1": {
            **TEMPLATE["1"],
            "inputs": {**TEMPLATE["1"]["inputs"], "color": uuid.uuid4().int & 0xFFFFFF},
        },
    }
    pending = make(generators, workflow_template=pending_template, timeout=0.5, poll_interval=0.2)
    errors: dict[str, BaseException] = {}

    def run(name: str, generator: ComfyUIGenerator, size: tuple[int, int]) -> None:
        try:
            generator.generate_image("x", width=size[0], height=size[1])
        except BaseException as exc:
            errors[name] = exc

    first = threading.Thread(target=run, args=("running", running, (1080, 1920)))
    first.start()
    with httpx.Client(base_url=URL, timeout=10) as client:
        for _ in range(100):  # wait until the long one runs
            if client.get("/queue").json()["queue_running"]:
                break
            threading.Event().wait(0.05)
        run("pending", pending, (64, 64))
        first.join(60)
        for name in ("running", "pending"):
            error = errors[name]
            assert isinstance(error, ComfyUITimeoutError), error
            print(f"\n  {name}: {error}")
        assert errors["running"].action == "interrupted"  # type: ignore[attr-defined]
        assert errors["pending"].action == "deleted"  # type: ignore[attr-defined]
        prompt_id = errors["running"].prompt_id  # type: ignore[attr-defined]
        for _ in range(200):  # the interrupt takes effect when the running node ends
            history = client.get(f"/history/{prompt_id}").json()
            if history:
                break
            threading.Event().wait(0.1)
        status = history[prompt_id]["status"]
        print(
            f"  running prompt's history: {status['status_str']}, "
            f"{[m[0] for m in status['messages']]}"
        )
        assert status["messages"][-1][0] == "execution_interrupted"
        pending_id = errors["pending"].prompt_id  # type: ignore[attr-defined]
        assert client.get(f"/history/{pending_id}").json() == {}
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_socket_dropped_mid_prompt_reconnects_without_resubmitting(
    generators: list[ComfyUIGenerator], tmp_path: Path
) -> None:
    workflow = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1080, "height": 1920, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "3": {
            "class_type": "ImageBlur",
            "inputs": {"image": ["2", 0], "blur_radius": 31, "sigma": 10.0},
        },
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "imagegen_e2e_drop"},
        },
    }
    generator = make(generators, workflow_template=workflow, mapping={"color": "1.color"})
    seen: list[Progress] = []
    dropped = threading.Event()

    def drop_on_first_blur(progress: Progress) -> None:
        seen.append(progress)
        if progress.node == "2 ImageBlur" and not dropped.is_set():
            dropped.set()
            for socket in list(generator._sockets):  # cut the TCP connection under it
                socket.socket.shutdown(2)

    colour = uuid.uuid4().int & 0xFFFFFF
    image_id = generator.generate_image(
        "x", width=1080, height=1920, color=colour, on_progress=drop_on_first_blur
    )
    assert dropped.is_set()
    assert image_id is not None
    generator.download_image(image_id, tmp_path / "after_drop.png")
    with Image.open(tmp_path / "after_drop.png") as image:
        size = image.size
    nodes = [p.node for p in seen if p.node]
    print(f"\n  prompt {image_id} finished after the drop: {size}; nodes seen {nodes}")
    assert size == (1080, 1920)
    with httpx.Client(base_url=URL, timeout=10) as client:
        history = client.get("/history", params={"max_items": 20}).json()
    same = [
        key
        for key, entry in history.items()
        if entry["prompt"][2].get("1", {}).get("inputs", {}).get("color") == colour
    ]
    assert same == [image_id]  # submitted once
