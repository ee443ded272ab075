"""InvokeAI's native async driver: the same behaviours as the sync one (submit, wait, save,
attach, cancel only ours, errors), on the fake InvokeAI; events over socket.io's
``AsyncClient`` on the fake socket.io endpoint."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

import httpx
import pytest
from invokeai_fake import CAPTURES, QUEUE, model_record
from PIL import Image

from degrees37_imagegen import GeneratorConnectionError, Progress, read_png_text
from degrees37_imagegen.aio import is_native
from degrees37_imagegen.errors import JobCanceledError
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai.errors import InvokeAIRequestError, QueueItemError

SDXL_KEY = "5b5a8c1e-0000-4000-8000-00000000sdxl"
ENQUEUE = f"{QUEUE}/enqueue_batch"


@pytest.fixture
def sdxl(fake):
    fake.models = [model_record("sdxl-base", "sdxl", key=SDXL_KEY)]
    return fake


def enqueue_as_another_client(fake, blank_template) -> int:
    body = {
        "prepend": False,
        "batch": {"graph": blank_template, "runs": 1, "origin": "canvas", "destination": "gallery"},
    }
    body["batch"]["graph"]["nodes"]["blank"].update(width=64, height=64)
    with httpx.Client(base_url=fake.base_url, transport=fake.transport) as client:
        answer = client.post(ENQUEUE, json=body)
    return int(answer.json()["item_ids"][0])


def test_invokeai_has_native_async_steps(sdxl, make_generator):
    assert is_native(make_generator(default_model="sdxl-base"))


def test_asubmit_returns_while_pending_then_wait_and_save(sdxl, make_generator, tmp_path):
    fake = sdxl
    fake.script = ["pending"]

    async def main() -> None:
        async with make_generator(default_model="sdxl-base") as gen:
            job = await gen.asubmit("a lighthouse", width=1080, height=1920, seed=7)
            assert (job.id, job.status, job.done) == ("1", "queued", False)
            assert fake.items[1].status == "pending"
            fake.items[1].script = ["in_progress", "completed"]
            await job.wait()
            assert job.info is not None
            assert job.info.seed == 7
            await job.save(tmp_path / "a.png")

    asyncio.run(main())
    with Image.open(tmp_path / "a.png") as img:
        assert img.size == (1080, 1920)  # the SDXL output, fitted
    assert read_png_text(tmp_path / "a.png")["imagegen:seed"] == "7"


def test_saved_job_is_aattached_by_a_new_generator(sdxl, make_generator, tmp_path):
    fake = sdxl
    fake.script = ["pending"]

    async def main() -> None:
        first = make_generator(default_model="sdxl-base")
        job = await first.asubmit("a lighthouse", "blurry", width=1080, height=1920, seed=42)
        saved = json.dumps(job.to_dict())
        await first.aclose()
        fake.items[1].script = ["in_progress", "completed"]
        second = make_generator(default_model="sdxl-base")
        again = await second.aattach(json.loads(saved))
        assert again.id == "1"
        await (await again.wait()).save(tmp_path / "attached.png")

    asyncio.run(main())
    text = read_png_text(tmp_path / "attached.png")
    assert (text["imagegen:seed"], text["imagegen:prompt"]) == ("42", "a lighthouse")
    assert fake.count("POST", ENQUEUE) == 1


def test_agenerate_then_adownload_on_a_new_generator(sdxl, make_generator, tmp_path):
    async def main() -> None:
        gen = make_generator(default_model="sdxl-base")
        image_id = await gen.agenerate_image("a fox", width=1080, height=1920, seed=3)
        other = make_generator(default_model="sdxl-base")
        assert await other.adownload_image(image_id, tmp_path / "fox.png")

    asyncio.run(main())
    assert read_png_text(tmp_path / "fox.png")["imagegen:seed"] == "3"


def test_acancel_pending_and_never_another_clients(sdxl, make_generator, blank_template):
    fake = sdxl
    fake.script = ["pending"]
    other_id = enqueue_as_another_client(fake, blank_template)

    async def main() -> None:
        gen = make_generator(default_model="sdxl-base")
        job = await gen.asubmit("x")
        assert await job.cancel() is True
        assert job.status == "canceled"
        with pytest.raises(JobCanceledError):
            await job.wait()
        assert await job.cancel() is False

    asyncio.run(main())
    assert fake.canceled == [other_id + 1]
    assert fake.items[other_id].status == "pending"


def test_acancel_in_progress_and_finished(sdxl, make_generator):
    fake = sdxl
    fake.script = ["in_progress"]

    async def main() -> None:
        gen = make_generator(default_model="sdxl-base")
        job = await gen.asubmit("x")
        assert await job.refresh() == "running"
        assert await job.cancel() is True
        fake.script = ["pending", "in_progress", "completed"]
        done = await gen.asubmit("y")
        await done.wait()
        assert await done.cancel() is False

    asyncio.run(main())
    assert fake.canceled == [1]


def test_enqueue_errors_say_whether_the_image_may_exist(sdxl, make_generator):
    fake = sdxl

    async def submit(**settings) -> None:
        await make_generator(default_model="sdxl-base", **settings).asubmit("x")

    fake.add_fault("enqueue", *["connect"] * 10)
    with pytest.raises(GeneratorConnectionError) as refused:
        asyncio.run(submit(retries=1))
    assert refused.value.work == "not_sent"
    assert refused.value.generator == "invokeai"
    fake.scripted.clear()
    fake.add_fault("enqueue", "dropped")
    with pytest.raises(GeneratorConnectionError) as dropped:
        asyncio.run(submit())
    assert dropped.value.work == "unknown"
    fake.reject_next_enqueue = "malformed_bad_field_value_noise_width.json"
    with pytest.raises(InvokeAIRequestError) as rejected:
        asyncio.run(submit())
    assert rejected.value.work == "not_sent"


def test_a_failed_item_raises_its_error(sdxl, make_generator):
    missing = {"key": "00000000-0000-0000-0000-000000000000", "hash": "blake3:deadbeef"}

    async def main() -> None:
        gen = make_generator(
            default_model={**missing, "name": "gone", "base": "sdxl", "type": "main"}
        )
        await gen.agenerate_image("x")

    with pytest.raises(QueueItemError) as caught:
        asyncio.run(main())
    assert "Unknown model" in str(caught.value.error_message)


def test_look_ups_are_read_once(sdxl, make_generator):
    async def main() -> None:
        gen = make_generator(default_model="sdxl-base", board_name="book")
        for _ in range(3):
            await gen.agenerate_image("x", width=64, height=64)

    asyncio.run(main())
    assert sdxl.count("GET", "/api/v2/models/") <= 1
    assert sdxl.count("POST", ENQUEUE) == 3


# -- events: one socket.io AsyncClient per generator ------------------------------------


@pytest.fixture
def live(live_fake):
    live_fake.models = [model_record("sdxl-base", "sdxl", key=SDXL_KEY)]
    live_fake.script = ["pending"]
    live_fake.run_after_polls = 0
    return live_fake


def live_generator(live) -> InvokeAIGenerator:
    """A generator of the live fake (its HTTP and its socket)."""
    return InvokeAIGenerator(
        {"base_url": live.base_url, "default_model": "sdxl-base"},
        name="invokeai",
        transport=live.transport,
    )


def test_events_end_the_waits_on_one_socket_without_threads(live, tmp_path):
    seen: list[Progress] = []
    threads: list[int] = []

    async def main() -> None:
        gen = live_generator(live)
        async with gen:
            for i in range(3):
                job = await gen.asubmit(f"p{i}", on_progress=seen.append)
                threads.append(threading.active_count())
                await job.wait(timeout=30)
                await job.save(tmp_path / f"{i}.png")
            assert gen._adriver is not None
            assert gen._adriver.live

    asyncio.run(main())
    live.wait_for_runners()
    assert len(live.sio.live) <= 1
    order = [path for _, path in live.calls]
    assert order.index("subscribe_queue default") < order.index(ENQUEUE)
    assert order.count("subscribe_queue default") == 1  # one socket for every job
    # No item read: the enqueue's answer, then the events said it all (end and image).
    assert [live.count("GET", f"{QUEUE}/i/{i}") for i in live.items] == [0, 0, 0]
    assert any(p.stage == "step" for p in seen)
    assert all((tmp_path / f"{i}.png").exists() for i in range(3))


def recorded_event(name: str, status: str | None = None) -> dict:
    """The first event ``name`` (of ``status``) the real server sent for item 134."""
    frames = json.loads((CAPTURES / "rec_socketio_items.json").read_text())["frames"]
    for frame in frames:
        if frame["dir"] == "recv" and frame["text"].startswith("42"):
            event, data = json.loads(frame["text"][2:])
            if event == name and data.get("item_id") == 134 and data.get("status") == status:
                return dict(data)
    raise AssertionError(f"no recorded {name} {status}")


def test_a_wait_without_news_keeps_the_status_the_events_gave(sdxl, make_generator):
    """After an event said running, a wait that ends without news (its time up, or woken by
    the output node's invocation_complete, which the core does not see) says running still,
    not queued; the events' end then ends the job without a read."""
    sdxl.script = ["pending"]

    async def main() -> None:
        async with make_generator(default_model="sdxl-base") as gen:
            driver = gen._aio()
            driver._live = True  # the socket's events are handed in below, as it would
            job = await gen.asubmit("a lighthouse", width=64, height=64, seed=7)
            ours = {"item_id": int(job.id), "destination": job.ref.data["destination"]}
            running = {**recorded_event("queue_item_status_changed", "in_progress"), **ours}
            await driver._on_event("queue_item_status_changed", running)
            assert (await gen.await_job(job.ref, 0.3)).status == "running"
            assert (await gen.await_job(job.ref, 0.3)).status == "running"  # time up
            complete = {**recorded_event("invocation_complete"), **ours}
            complete["invocation_source_id"] = job.ref.data["output_node"]
            await driver._on_event("invocation_complete", complete)
            assert (await gen.await_job(job.ref, 0.3)).status == "running"
            ended = {**recorded_event("queue_item_status_changed", "completed"), **ours}
            await driver._on_event("queue_item_status_changed", ended)
            done = await gen.await_job(job.ref, 0.3)
            assert (done.status, done.result["image_name"]) == (
                "done",
                complete["result"]["image"]["image_name"],
            )

    asyncio.run(main())
    assert sdxl.count("GET", f"{QUEUE}/i/1") == 0  # the events said it all


def test_waits_on_a_live_socket_are_ended_by_events_not_by_a_timer(live, tmp_path):
    """With the driver's events live, the core's short first waits (0 s, 10 ms, ...) would
    only come back with nothing: a job waited for on that loop waits up to a second, ended
    by its events; a sync caller (another thread) keeps the core's schedule."""
    stages: list[str] = []
    waits: list[float] = []

    async def main() -> None:
        gen = live_generator(live)
        async with gen:
            assert gen.poll_delay(0) == 0.0  # no driver yet: the core's schedule
            job = await gen.asubmit("p", on_progress=lambda p: stages.append(p.stage))
            assert gen.poll_delay(0) == gen.poll_delay(5) == max(1.0, gen.poll_interval)
            assert await asyncio.to_thread(gen.poll_delay, 0) == 0.0
            await_job = gen.await_job

            async def counted(ref: Any, timeout: float) -> Any:
                waits.append(timeout)
                return await await_job(ref, timeout)

            gen.await_job = counted  # type: ignore[method-assign]
            await job.wait(timeout=30)
            await job.save(tmp_path / "p.png")

    asyncio.run(main())
    live.wait_for_runners()
    assert "step" in stages
    # One wait for each change the events bring (running, its steps, done), none on a timer.
    assert waits
    assert min(waits) == 1.0
    assert len(waits) <= len(stages)


def test_a_job_attached_on_a_live_socket_is_read_at_once(live, tmp_path):
    """Its events may be over: the first wait reads the item instead of waiting for them."""

    async def main() -> None:
        settings = {"base_url": live.base_url, "default_model": "sdxl-base"}
        first = InvokeAIGenerator(settings, name="invokeai", transport=live.transport)
        async with first:
            job = await first.asubmit("p")
            await job.wait(timeout=30)
            saved = job.to_dict()
        second = InvokeAIGenerator(settings, name="invokeai", transport=live.transport)
        async with second:
            driver = second._aio()
            assert await driver.ensure_events()
            again = await second.aattach(saved)
            update = await second.await_job(again.ref, 30.0)
            assert update.status == "done"

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 10  # not the 30 s the wait was given
    live.wait_for_runners()


def test_the_enqueue_body_is_sent_as_httpx_encodes_it_with_shared_graphs_made_once():
    """The async driver sends the enqueue's JSON made with each built-in graph's JSON kept
    for the images that share it: the same bytes httpx makes of the body, for every kind
    of plan; graphs that differ (size, board, model, precision) are kept apart, and a
    graph changed after it is built (input image, LoRAs) is encoded whole."""
    from degrees37_imagegen.request import ImageRequest
    from degrees37_imagegen_invokeai._plan import (
        Lookups,
        enqueue_body,
        enqueue_content,
        new_destination,
        plan_image,
    )
    from degrees37_imagegen_invokeai._settings import DEFAULT_SETTINGS

    sdxl, sd1 = model_record("sdxl-base", "sdxl"), model_record("sd15", "sd-1", steps=20)
    lora = {**model_record("ink", "sdxl"), "type": "lora"}
    fp32 = model_record("sdxl-fp32", "sdxl", vae_precision="fp32")
    settings = {**DEFAULT_SETTINGS, "map_sdxl_resolution": False}
    looks = [
        Lookups(model=sdxl),
        Lookups(model=sdxl, board_id="board-1"),
        Lookups(model=sd1),
        Lookups(model=fp32),
        Lookups(model=sdxl, prompts=("a cat, ink", "blurry")),
        Lookups(model=sdxl, images={"init_image": "init.png"}),
        Lookups(model=sdxl, loras=[(lora, 0.75)]),
    ]
    graphs: dict = {}
    for seed, (found, size) in enumerate(itertools.product(looks, [(64, 64), (512, 768)])):
        for prompt in ("a cat", 'a "quoted" cat, ünïcode ✓'):
            request = ImageRequest(prompt=prompt, width=size[0], height=size[1], seed=seed)
            plan = plan_image(request, settings, None, found)
            destination = new_destination(*size, f"key-{seed}")
            expected = httpx.Request("POST", "http://x/", json=enqueue_body(plan, destination))
            assert enqueue_content(plan, destination, graphs) == expected.read()
    # One graph per size, board, model and precision (the preset changes only prompts);
    # none for the plans whose graph is changed after it is built.
    assert len(graphs) == 2 * 4


def test_the_connection_is_tested_on_the_loop_not_in_a_thread(live):
    async def main() -> None:
        gen = live_generator(live)
        async with gen:
            gen.test_connection = lambda: pytest.fail("the sync test ran")
            assert await gen.atest_connection()
            assert gen.server_version
        down = InvokeAIGenerator({"base_url": "http://127.0.0.1:9", "default_model": "x"})
        async with down:
            assert not await down.atest_connection()

    asyncio.run(main())


def test_an_async_image_needs_no_sync_client(live, tmp_path):
    """The model list, the connection test and the image itself: all on the loop's own
    client (a sync client would be a thread's HTTP stack for nothing)."""

    async def main() -> None:
        gen = live_generator(live)
        async with gen:
            assert await gen.atest_connection()
            job = await gen.asubmit("p", width=64, height=64, seed=3)
            await job.save(tmp_path / "a.png")
            assert gen._catalog.models_read
            assert gen._api._client is None

    asyncio.run(main())
    assert (tmp_path / "a.png").stat().st_size > 0
