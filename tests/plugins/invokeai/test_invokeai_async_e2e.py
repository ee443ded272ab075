"""The async driver against a real InvokeAI 6 named by ``IMAGEGEN_INVOKEAI_URL`` (skipped
otherwise): ``IMAGEGEN_INVOKEAI_URL=http://127.0.0.1:9090 python3 -m pytest
tests/plugins/invokeai -m e2e -k async -v -s``. Model-free graphs, as in
``test_invokeai_e2e.py``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from test_invokeai_e2e import BLANK, BOARD, SLOW, ours_on_server, say, wait_until_idle

from degrees37_imagegen import JobCanceledError, Progress, read_png_text, verify_image
from degrees37_imagegen_invokeai import InvokeAIGenerator

URL = os.environ.get("IMAGEGEN_INVOKEAI_URL", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not URL, reason="IMAGEGEN_INVOKEAI_URL is not set"),
]


def make(**settings) -> InvokeAIGenerator:
    return InvokeAIGenerator({"base_url": URL, **settings}, name="invokeai-e2e")


@pytest.fixture
def server():
    with httpx.Client(base_url=URL, timeout=30) as client:
        yield client


def test_async_model_free_image_on_the_board_with_events(tmp_path):
    seen: list[Progress] = []

    async def main() -> tuple[str, bool]:
        async with make(graph_template=BLANK, board_name=BOARD) as gen:
            job = await gen.asubmit("async blank", width=320, height=200, on_progress=seen.append)
            await job.wait(timeout=120)
            await job.save(tmp_path / "a.png")
            return job.id, bool(gen._adriver and gen._adriver.live)

    job_id, live = asyncio.run(main())
    assert verify_image(tmp_path / "a.png") == ("PNG", (320, 200))
    assert read_png_text(tmp_path / "a.png")["imagegen:prompt"] == "async blank"
    assert live  # socket.io's AsyncClient connected and subscribed
    say(f"async item {job_id}: 320x200 saved; events live; stages {[p.stage for p in seen]}")


def test_async_twenty_at_once_without_a_thread_each(tmp_path):
    async def main() -> tuple[list[str], int, int, float]:
        async with make(graph_template=BLANK) as gen:
            await gen.agenerate_image("warm up", width=64, height=64)
            before = threading.active_count()
            peak = before
            started = time.perf_counter()

            async def one(i: int) -> str:
                nonlocal peak
                image_id = await gen.agenerate_image(f"p{i}", width=64, height=64)
                peak = max(peak, threading.active_count())
                await gen.adownload_image(image_id, tmp_path / f"{i}.png")
                return image_id

            ids = await asyncio.gather(*(one(i) for i in range(20)))
            return list(ids), before, peak, time.perf_counter() - started

    ids, before, peak, took = asyncio.run(main())
    say(f"20 concurrent agenerate_image: {took:.2f}s, threads {before} -> peak {peak}")
    assert len(set(ids)) == 20
    assert peak <= before + 2
    assert len(list(tmp_path.glob("*.png"))) == 20


def test_async_submit_while_busy_then_cancel_queued_and_running(server):
    wait_until_idle(server)

    async def main() -> list[tuple[str, str]]:
        async with make(graph_template=SLOW) as slow_gen, make(graph_template=BLANK) as quick:
            t0 = time.perf_counter()
            running = await slow_gen.asubmit("running")
            queued = await quick.asubmit("queued", width=256, height=256)
            assert time.perf_counter() - t0 < 2.0  # accepted, not made
            end = time.monotonic() + 30
            while await running.refresh() != "running" and time.monotonic() < end:
                await asyncio.sleep(0.05)
            assert (running.status, await queued.refresh()) == ("running", "queued")
            assert await queued.cancel() is True
            assert await running.cancel() is True
            with pytest.raises(JobCanceledError):
                await running.wait()
            found = []
            for job in (queued, running):
                items = ours_on_server(server, job.ref.data["destination"])
                assert [(i["item_id"], i["status"]) for i in items] == [(int(job.id), "canceled")]
                found.append((job.id, items[0]["status"]))
            return found

    found = asyncio.run(main())
    busy = wait_until_idle(server)
    say(f"async cancel of queued and running jobs: {found}; idle {busy:.1f}s later")


def test_async_job_attached_in_another_process(tmp_path):
    async def submit() -> str:
        async with make(graph_template=BLANK, board_name=BOARD) as gen:
            job = await gen.asubmit("attached elsewhere", width=640, height=360, seed=11)
            return json.dumps(job.to_dict())

    saved = asyncio.run(submit())
    out = tmp_path / "attached.png"
    code = (
        "import asyncio, json, sys; from degrees37_imagegen_invokeai import InvokeAIGenerator\n"
        "async def main():\n"
        f"    gen = InvokeAIGenerator({{'base_url': {URL!r}, 'graph_template': "
        f"json.loads(sys.argv[3]), 'board_name': {BOARD!r}}}, name='invokeai-e2e')\n"
        "    async with gen:\n"
        "        job = await gen.aattach(json.loads(sys.argv[1]))\n"
        "        await job.wait(timeout=120)\n"
        "        print(await job.save(sys.argv[2]))\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, saved, str(out), json.dumps(BLANK)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert verify_image(out)[1] == (640, 360)
    say(f"attached and saved by another process (async): {proc.stdout.strip()}")
