"""End-to-end tests against a real ComfyUI named by ``IMAGEGEN_COMFYUI_URL`` (skipped otherwise).

Start one as ``docs/generators/comfyui.md`` says, then::

    IMAGEGEN_COMFYUI_URL=http://127.0.0.1:8188 python3 -m pytest tests/plugins/comfyui -m e2e -v -s

No model weights are needed: EmptyImage -> SaveImage makes real images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from comfyui_fake import load_capture
from PIL import Image

from degrees37_imagegen import (
    GeneratorTimeoutError,
    JobCanceledError,
    Progress,
    generate_to_file,
    read_png_text,
)
from degrees37_imagegen_comfyui import ComfyUIGenerator, ComfyUIValidationError

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
    assert text["imagegen:seed"] == "not used"  # the template has no place for a seed

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


def long_workflow(colour: int | None = None) -> dict[str, Any]:
    """The captured long prompt (about 6 s of blurring here), with a fresh colour."""
    workflow: dict[str, Any] = load_capture("q1_post_long.json")["request"]["body"]["json"][
        "prompt"
    ]
    workflow["1"]["inputs"]["color"] = uuid.uuid4().int & 0xFFFFFF if colour is None else colour
    return workflow


def blur_chain(colour: int, *, blurs: int = 16, size: int = 512) -> dict[str, Any]:
    """EmptyImage -> ``blurs`` short ImageBlur nodes -> SaveImage: several seconds of work
    made of short nodes (an interrupt takes effect when the running node ends; 512x512
    takes about 0.6 s a node on a 2-core CPU). Submit it with ``width=height=size``: the
    generator puts the request's size into EmptyImage."""
    workflow: dict[str, Any] = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": colour},
        }
    }
    for k in range(blurs):
        workflow[str(10 + k)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [str(9 + k) if k else "1", 0], "blur_radius": 31, "sigma": 10.0},
        }
    workflow["99"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [str(9 + blurs), 0], "filename_prefix": "imagegen_e2e_chain"},
    }
    return workflow


def fresh_template() -> dict[str, Any]:
    """TEMPLATE with a colour unique to this run (so that nothing comes from the cache)."""
    node = {
        **TEMPLATE["1"],
        "inputs": {**TEMPLATE["1"]["inputs"], "color": uuid.uuid4().int & 0xFFFFFF},
    }
    return {**TEMPLATE, "1": node}


def wait_for_running(client: httpx.Client, prompt_id: str | None = None) -> None:
    for _ in range(200):
        running = client.get("/queue").json()["queue_running"]
        if running and (prompt_id is None or running[0][1] == prompt_id):
            return
        time.sleep(0.05)
    raise AssertionError("nothing started running")


def ids_on_server(client: httpx.Client) -> set[str]:
    queue = client.get("/queue").json()
    return {item[1] for item in queue["queue_running"] + queue["queue_pending"]}


def test_timeout_interrupts_our_running_prompt_and_deletes_our_pending_one(
    generators: list[ComfyUIGenerator],
) -> None:
    running = make(generators, workflow_template=long_workflow(), timeout=1.5, poll_interval=0.5)
    pending = make(generators, workflow_template=fresh_template(), timeout=0.5, poll_interval=0.2)
    errors: dict[str, BaseException] = {}

    def run(name: str, generator: ComfyUIGenerator, size: tuple[int, int]) -> None:
        try:
            generator.generate_image("x", width=size[0], height=size[1])
        except BaseException as exc:
            errors[name] = exc

    first = threading.Thread(target=run, args=("running", running, (1080, 1920)))
    first.start()
    with httpx.Client(base_url=URL, timeout=10) as client:
        wait_for_running(client)
        running_id = client.get("/queue").json()["queue_running"][0][1]
        run("pending", pending, (64, 64))
        first.join(60)
        for name in ("running", "pending"):
            error = errors[name]
            assert isinstance(error, GeneratorTimeoutError), error
            print(f"\n  {name}: {error}")
        for _ in range(200):  # the interrupt takes effect when the running node ends
            history = client.get(f"/history/{running_id}").json()
            if history:
                break
            time.sleep(0.1)
        status = history[running_id]["status"]
        print(
            f"  running prompt's history: {status['status_str']}, "
            f"{[m[0] for m in status['messages']]}"
        )
        assert status["messages"][-1][0] == "execution_interrupted"
        assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_submit_returns_while_the_server_is_busy(generators: list[ComfyUIGenerator]) -> None:
    busy = make(generators, workflow_template=blur_chain(uuid.uuid4().int & 0xFFFFFF))
    quick = make(generators, workflow_template=fresh_template())
    blocker = busy.submit("x", width=512, height=512)
    started = time.monotonic()
    job = quick.submit("y", width=64, height=64)
    took = time.monotonic() - started
    print(f"\n  submit took {took:.3f}s; the job is {job.refresh()} behind {blocker.refresh()}")
    assert took < 1.0
    assert job.status == "queued"
    assert blocker.status == "running"
    assert job.wait(timeout=60).status == "done"
    assert blocker.refresh() == "done"  # ran first, in the order of submission


ATTACH_SCRIPT = """
import json, sys
from degrees37_imagegen_comfyui import ComfyUIGenerator
config, saved, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
generator = ComfyUIGenerator(config, name="e2e")
job = generator.attach(saved)
status = job.status
job.wait(timeout=120)
print(status, job.save(out), job.info.server)
"""


def test_a_saved_job_is_finished_by_another_process(
    generators: list[ComfyUIGenerator], tmp_path: Path
) -> None:
    colour = uuid.uuid4().int & 0xFFFFFF
    workflow = blur_chain(colour)
    config = {"server_address": URL, "timeout": 120, "workflow_template": workflow}
    generator = ComfyUIGenerator(config, name="e2e")
    generators.append(generator)
    job = generator.submit("x", width=512, height=512)
    saved = json.dumps(job.to_dict())
    generator.close()
    out = tmp_path / "from_another_process.png"
    done = subprocess.run(
        [sys.executable, "-c", ATTACH_SCRIPT, json.dumps(config), saved, str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(f"\n  other process: {done.stdout.strip()} {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] in ("queued", "running")  # attached before it finished
    with Image.open(out) as image:
        assert image.size == (512, 512)
        pixel = image.convert("RGB").getpixel((256, 256))
    want = ((colour >> 16) & 255, (colour >> 8) & 255, colour & 255)
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, want))  # blurring rounds a little


def test_cancel_queued_and_running_jobs_leaves_nothing_of_ours(
    generators: list[ComfyUIGenerator],
) -> None:
    ours = make(generators, workflow_template=blur_chain(uuid.uuid4().int & 0xFFFFFF))
    queued_template = fresh_template()
    queued_maker = make(generators, workflow_template=queued_template)
    with httpx.Client(base_url=URL, timeout=10) as client:
        running_job = ours.submit("x", width=512, height=512)
        wait_for_running(client, running_job.id)
        queued_job = queued_maker.submit("y", width=64, height=64)
        # Another client's prompt, queued behind ours: never to be touched.
        other = client.post(
            "/prompt",
            json={"prompt": blur_chain(uuid.uuid4().int & 0xFFFFFF), "client_id": "someone-else"},
        ).json()["prompt_id"]
        assert queued_job.refresh() == "queued"
        assert queued_job.cancel() is True
        assert running_job.cancel() is True
        with pytest.raises(JobCanceledError):
            running_job.wait()
        time.sleep(3)
        left = ids_on_server(client)
        history = client.get(f"/history/{running_job.id}").json()
        messages = [m[0] for m in history[running_job.id]["status"]["messages"]] if history else []
        print(
            f"\n  3 s after canceling: on the server {sorted(left)}; ours were "
            f"{queued_job.id} (queued), {running_job.id} (running, ended with {messages[-1:]}); "
            f"the other client's {other}"
        )
        assert queued_job.id not in left
        assert running_job.id not in left
        assert messages[-1] == "execution_interrupted"
        assert client.get(f"/history/{queued_job.id}").json() == {}
        assert other in left  # the other client's prompt is still there, running or queued
        for _ in range(300):  # let it finish: it must succeed, not be interrupted
            entry = client.get(f"/history/{other}").json()
            if entry:
                break
            time.sleep(0.1)
        assert entry[other]["status"]["status_str"] == "success"


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
            for watch in list(generator._watches.values()):  # cut the TCP connection
                if watch.socket is not None:
                    watch.socket.socket.shutdown(2)

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


def test_a_job_saved_before_sending_is_found_by_its_key(
    generators: list[ComfyUIGenerator], template_path: Path
) -> None:
    """ComfyUI keeps the prompt id we choose (the request's key): a job journaled before it
    was sent is found in /queue or /history by a fresh generator, never sent again."""
    saved: list[dict[str, Any]] = []
    job = make(generators, workflow_template=str(template_path)).submit(
        "x", width=64, height=64, on_sending=saved.append
    )
    assert saved[0]["id"] is None
    assert job.id == saved[0]["request"]["key"]
    again = make(generators, workflow_template=str(template_path)).attach(saved[0])
    again.wait(timeout=60)
    print(f"\n  saved before sending, found by key: {again.id} ({again.status})")
    assert again.id == job.id
    assert again.status == "done"
