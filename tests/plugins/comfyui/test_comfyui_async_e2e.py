"""The async driver against a real ComfyUI named by ``IMAGEGEN_COMFYUI_URL`` (skipped
otherwise): ``IMAGEGEN_COMFYUI_URL=http://127.0.0.1:8188 python3 -m pytest
tests/plugins/comfyui -m e2e -k async -v -s``. Model-free workflows, as in
``test_comfyui_e2e.py``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from test_comfyui_e2e import blur_chain, fresh_template, ids_on_server, wait_for_running

from degrees37_imagegen import JobCanceledError, read_png_text
from degrees37_imagegen_comfyui import ComfyUIGenerator

URL = os.environ.get("IMAGEGEN_COMFYUI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="set IMAGEGEN_COMFYUI_URL to run against a real ComfyUI"),
]


def make(**settings: Any) -> ComfyUIGenerator:
    return ComfyUIGenerator({"server_address": URL, "timeout": 120, **settings}, name="e2e")


def test_async_generate_and_download_a_real_image(tmp_path: Path) -> None:
    async def main() -> str:
        async with make(workflow_template=fresh_template()) as gen:
            image_id = await gen.agenerate_image("async", width=96, height=64, seed=5)
            await gen.adownload_image(image_id, tmp_path / "a.png")
            return image_id

    image_id = asyncio.run(main())
    with Image.open(tmp_path / "a.png") as image:
        assert image.size == (96, 64)
    assert read_png_text(tmp_path / "a.png")["imagegen:prompt_id"] == image_id
    print(f"\n  async image {image_id}: 96x64 saved with its request in the metadata")


def test_async_twenty_at_once_on_one_socket_without_a_thread_each(tmp_path: Path) -> None:
    async def main() -> tuple[list[str], int, int, float]:
        async with make(workflow_template=fresh_template()) as gen:
            await gen.agenerate_image("warm up", width=64, height=64)
            before = threading.active_count()
            peak = before
            started = time.perf_counter()

            async def one(i: int) -> str:
                nonlocal peak
                image_id = await gen.agenerate_image(f"p{i}", width=64, height=64, seed=i)
                peak = max(peak, threading.active_count())
                await gen.adownload_image(image_id, tmp_path / f"{i}.png")
                return image_id

            ids = await asyncio.gather(*(one(i) for i in range(20)))
            return list(ids), before, peak, time.perf_counter() - started

    ids, before, peak, took = asyncio.run(main())
    print(f"\n  20 concurrent agenerate_image: {took:.2f}s, threads {before} -> peak {peak}")
    assert len(set(ids)) == 20
    assert peak <= before + 2
    assert len(list(tmp_path.glob("*.png"))) == 20


def test_async_submit_while_busy_then_cancel_queued_and_running() -> None:
    async def main() -> tuple[str, str, set[str], list[str]]:
        ours = make(workflow_template=blur_chain(uuid.uuid4().int & 0xFFFFFF))
        quick = make(workflow_template=fresh_template())
        async with ours, quick:
            with httpx.Client(base_url=URL, timeout=10) as client:
                running = await ours.asubmit("x", width=512, height=512)
                await asyncio.to_thread(wait_for_running, client, running.id)
                started = time.monotonic()
                queued = await quick.asubmit("y", width=64, height=64)
                assert time.monotonic() - started < 1.0  # accepted, not made
                assert await queued.refresh() == "queued"
                assert await queued.cancel() is True
                assert await running.cancel() is True
                with pytest.raises(JobCanceledError):
                    await running.wait()
                await asyncio.sleep(3)
                left = ids_on_server(client)
                history = client.get(f"/history/{running.id}").json()
                messages = [m[0] for m in history[running.id]["status"]["messages"]]
                return queued.id, running.id, left, messages

    queued_id, running_id, left, messages = asyncio.run(main())
    print(f"\n  3 s after async cancel: on the server {sorted(left)}; ours {queued_id} (queued), "
          f"{running_id} (running, ended with {messages[-1:]})")  # fmt: skip
    assert queued_id not in left
    assert running_id not in left
    assert messages[-1] == "execution_interrupted"


ATTACH = """
import asyncio, json, sys
from degrees37_imagegen_comfyui import ComfyUIGenerator
config, saved, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
async def main():
    async with ComfyUIGenerator(config, name="e2e") as generator:
        job = await generator.aattach(saved)
        status = job.status
        await job.wait(timeout=120)
        print(status, await job.save(out))
asyncio.run(main())
"""


def test_async_job_attached_in_another_process(tmp_path: Path) -> None:
    config = {
        "server_address": URL,
        "timeout": 120,
        "workflow_template": blur_chain(uuid.uuid4().int & 0xFFFFFF, blurs=4),
    }

    async def submit() -> str:
        async with ComfyUIGenerator(config, name="e2e") as gen:
            job = await gen.asubmit("x", width=512, height=512)
            return json.dumps(job.to_dict())

    saved = asyncio.run(submit())
    out = tmp_path / "other.png"
    done = subprocess.run(
        [sys.executable, "-c", ATTACH, json.dumps(config), saved, str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(f"\n  other process (async): {done.stdout.strip()} {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    with Image.open(out) as image:
        assert image.size == (512, 512)
