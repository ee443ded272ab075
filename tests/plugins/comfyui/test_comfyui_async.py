"""ComfyUI's native async driver: the same behaviours as the sync one (submit, wait, save,
attach, cancel only ours, errors), one WebSocket per generator, no thread per job."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from comfyui_fake import EMPTY_IMAGE_TEMPLATE, FakeComfyUI, load_capture
from PIL import Image

from degrees37_imagegen import (
    AuthenticationError,
    GeneratorConnectionError,
    JobCanceledError,
    Progress,
    read_png_text,
)
from degrees37_imagegen.aio import is_native
from degrees37_imagegen.testing import FakeClock
from degrees37_imagegen_comfyui import ComfyUIGenerator, ComfyUIValidationError

Make = Callable[..., ComfyUIGenerator]


def colour_of(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:
        return tuple(image.convert("RGB").getpixel((0, 0)))


def long_workflow() -> dict[str, Any]:
    workflow: dict[str, Any] = load_capture("q1_post_long.json")["request"]["body"]["json"][
        "prompt"
    ]
    return workflow


def other_client_prompt(fake: FakeComfyUI, workflow: dict[str, Any]) -> str:
    answer = httpx.post(f"{fake.url}/prompt", json={"prompt": workflow, "client_id": "other"})
    return str(answer.json()["prompt_id"])


def coloured(color: int) -> dict[str, Any]:
    return {
        **EMPTY_IMAGE_TEMPLATE,
        "1": {
            **EMPTY_IMAGE_TEMPLATE["1"],
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
    }


def client_threads() -> int:
    """Threads of this process but the fake server's (one per HTTP connection)."""
    return sum("process_request_thread" not in t.name for t in threading.enumerate())


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def test_comfyui_has_native_async_steps(make: Make) -> None:
    assert is_native(make())


def test_asubmit_wait_save_with_progress_on_one_socket(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    seen: list[Progress] = []

    async def main() -> None:
        async with make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0x123456}) as gen:
            jobs = [
                await gen.asubmit("x", width=16, height=16, on_progress=seen.append)
                for _ in range(3)
            ]
            for i, job in enumerate(jobs):
                await job.wait(timeout=10)
                assert job.status == "done"
                await job.save(tmp_path / f"{i}.png")

    asyncio.run(main())
    assert all(colour_of(tmp_path / f"{i}.png") == (0x12, 0x34, 0x56) for i in range(3))
    assert read_png_text(tmp_path / "0.png")["imagegen:generator"] == "comfyui"
    assert len({p.body["client_id"] for p in fake.posts()}) == 1  # one client id: one socket
    assert len(fake.posts()) == 3
    assert any(p.stage == "submitted" for p in seen)


def test_a_finished_prompt_is_read_from_its_messages_not_history(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    async def main() -> None:
        async with make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0xABCDEF}) as gen:
            job = await gen.asubmit("x", width=16, height=16)
            await job.save(tmp_path / "m.png")
            assert job.info is not None
            assert job.info.extra["prompt_id"] == job.id

    asyncio.run(main())
    assert colour_of(tmp_path / "m.png") == (0xAB, 0xCD, 0xEF)
    assert not [r for r in fake.requests if r.path.startswith("/history")]


def test_waits_on_a_read_socket_last_the_poll_interval_ended_by_messages(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    """With the socket read, the core's short first waits (0 s, 10 ms, ...) would only come
    back with nothing: a job waited for on the driver's loop waits the poll interval, ended
    by the prompt's messages; one attached on such a loop is still followed."""
    waits: list[float] = []

    async def main() -> None:
        first = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0}, poll_interval=30)
        assert first.poll_delay(0) == 0.0  # no driver yet: the growing schedule
        async with first:
            job = await first.asubmit("x", width=16, height=16)
            assert first.poll_delay(0) == first.poll_delay(4) == 30.0
            real = first._aio().wait

            async def counted(ref: Any, timeout: float) -> Any:
                waits.append(timeout)
                return await real(ref, timeout)

            first._aio().wait = counted  # type: ignore[method-assign]
            await asyncio.wait_for(job.wait(), 10)  # ended by messages, not after 30 s
            saved = job.to_dict()
        assert await asyncio.to_thread(first.poll_delay, 3) == 0.0225  # not on its loop
        second = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0}, poll_interval=30)
        async with second:
            await second.asubmit("y", width=16, height=16)  # its socket is read now
            attached = await second.aattach(saved)
            await asyncio.wait_for(attached.save(tmp_path / "a.png"), 10)

    asyncio.run(main())
    assert waits
    assert set(waits) == {30.0}
    assert colour_of(tmp_path / "a.png") == (0, 0, 0)


def test_submit_returns_while_pending_then_attach_elsewhere(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    gate = fake.gate("ImageBlur")
    blocker = other_client_prompt(fake, long_workflow())

    async def main() -> None:
        first = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0x00FF00})
        job = await first.asubmit("x", width=16, height=16)
        assert job.status == "queued"
        assert await job.refresh() == "queued"  # behind the other client's prompt
        saved = json.dumps(job.to_dict())
        await first.aclose()
        second = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0})
        attached = await second.aattach(json.loads(saved))
        assert attached.id == job.id
        gate.set()
        await attached.wait(timeout=10)
        await attached.save(tmp_path / "a.png")
        await second.aclose()

    asyncio.run(main())
    assert fake.running is None or fake.running.prompt_id != blocker
    assert colour_of(tmp_path / "a.png") == (0, 255, 0)
    assert len(fake.posts()) == 2  # the other client's and ours, once


def test_acancel_of_a_pending_prompt_deletes_only_it(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    running_other = other_client_prompt(fake, long_workflow())

    async def main() -> None:
        gen = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 1})
        job = await gen.asubmit("x", width=8, height=8)
        pending_other = other_client_prompt(fake, coloured(2))
        assert await job.cancel() is True
        assert job.status == "canceled"
        assert fake.posts("/queue")[-1].body == {"delete": [job.id]}
        assert fake.interrupt_requests == []
        assert set(fake.pending) == {pending_other}
        with pytest.raises(JobCanceledError):
            await job.wait()
        assert await job.cancel() is False
        await gen.aclose()

    asyncio.run(main())
    assert fake.running is not None
    assert fake.running.prompt_id == running_other
    gate.set()


def test_acancel_of_our_running_prompt_interrupts_it_by_id(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")

    async def main() -> None:
        gen = make(workflow_template=long_workflow())
        job = await gen.asubmit("x")
        assert await until(lambda: fake.running is not None)
        assert await job.cancel() is True
        assert fake.interrupt_requests == [job.id]
        assert fake.posts("/queue") == []
        await gen.aclose()

    asyncio.run(main())
    assert fake.wait_until(lambda: len(fake.history) == 1)
    gate.set()


def test_twenty_concurrent_agenerate_image_use_no_thread_each(
    fake: FakeComfyUI, make: Make
) -> None:
    async def main() -> list[str]:
        async with make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 7}) as gen:
            await gen.agenerate_image("warm up", width=8, height=8)
            before = client_threads()
            peak = before

            async def one(i: int) -> str:
                nonlocal peak
                image_id = await gen.agenerate_image(f"p{i}", width=8, height=8)
                peak = max(peak, client_threads())
                return image_id

            ids = await asyncio.gather(*(one(i) for i in range(20)))
            assert peak <= before + 2
            return list(ids)

    ids = asyncio.run(main())
    assert len(set(ids)) == 20
    assert set(ids) <= set(fake.history)


# -- the seams: an httpx transport and a clock (polling), no server, no real waits ---------


class Scripted:
    """A minimal ComfyUI behind ``httpx.MockTransport``: prompts finish after N polls."""

    def __init__(self, polls_to_finish: int = 2) -> None:
        self.polls_to_finish = polls_to_finish
        self.prompts: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.requests: list[httpx.Request] = []
        self.lose_post_answer = False
        self.status_for: dict[str, int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.status_for:
            return httpx.Response(self.status_for[path], text="no")
        if path == "/prompt":
            body = json.loads(request.content)
            self.prompts[body["prompt_id"]] = body
            self.polls[body["prompt_id"]] = 0
            if self.lose_post_answer:
                raise httpx.ReadError("connection reset", request=request)
            return httpx.Response(200, json={"prompt_id": body["prompt_id"], "number": 1})
        if path == "/queue":
            pending = [
                [1, pid, body["prompt"], {"client_id": body["client_id"]}, []]
                for pid, body in self.prompts.items()
                if self.polls[pid] < self.polls_to_finish
            ]
            return httpx.Response(200, json={"queue_running": [], "queue_pending": pending})
        if path.startswith("/history/"):
            pid = path.rsplit("/", 1)[1]
            if pid not in self.prompts:
                return httpx.Response(200, json={})
            self.polls[pid] += 1
            if self.polls[pid] <= self.polls_to_finish:
                return httpx.Response(200, json={})
            entry = {
                "prompt": [1, pid, self.prompts[pid]["prompt"], {}, ["2"]],
                "outputs": {
                    "2": {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}
                },
                "status": {"status_str": "success", "completed": True, "messages": []},
            }
            return httpx.Response(200, json={pid: entry})
        if path == "/view":
            buffer = io.BytesIO()
            Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
            return httpx.Response(200, content=buffer.getvalue())
        return httpx.Response(404, text="404: Not Found")


def scripted(server: Scripted, clock: FakeClock, handler: Any = None) -> ComfyUIGenerator:
    return ComfyUIGenerator(
        {
            "server_address": "comfy.invalid:8188",
            "workflow_template": EMPTY_IMAGE_TEMPLATE,
            "values": {"color": 5},
            "poll_interval": 2.0,
        },
        transport=httpx.MockTransport(handler or server),
        clock=clock,
    )


def test_transport_and_clock_seams_without_waiting(tmp_path: Path) -> None:
    server, clock = Scripted(polls_to_finish=3), FakeClock()

    async def main() -> None:
        async with scripted(server, clock) as gen:
            job = await gen.asubmit("x", width=8, height=8)
            await job.wait(timeout=60)
            await job.save(tmp_path / "s.png")

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 2
    assert colour_of(tmp_path / "s.png") == (1, 2, 3)
    assert clock.sleeps
    assert max(clock.sleeps) <= 2.0


def test_lost_post_answer_is_looked_up_not_resubmitted() -> None:
    server, clock = Scripted(), FakeClock()
    server.lose_post_answer = True

    async def main() -> str:
        return (await scripted(server, clock).asubmit("x", width=8, height=8)).id

    job_id = asyncio.run(main())
    assert list(server.prompts) == [job_id]
    assert len([r for r in server.requests if r.url.path == "/prompt"]) == 1


def test_lost_post_answer_not_found_says_the_work_is_unknown() -> None:
    server, clock = Scripted(), FakeClock()

    def forgetful(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            raise httpx.ReadError("connection reset", request=request)
        return server(request)

    async def main() -> None:
        await scripted(server, clock, forgetful).asubmit("x", width=8, height=8)

    with pytest.raises(GeneratorConnectionError) as info:
        asyncio.run(main())
    assert info.value.work == "unknown"
    assert info.value.generator is not None
    assert len(server.requests) == 2  # looked for it in /queue and /history, never resent


def test_refused_credentials_and_validation_errors() -> None:
    server, clock = Scripted(), FakeClock()
    server.status_for["/prompt"] = 401
    with pytest.raises(AuthenticationError) as auth:
        asyncio.run(scripted(server, clock).agenerate_image("x", width=8, height=8))
    assert (auth.value.status, auth.value.work) == (401, "not_sent")
    capture = load_capture("err_missing_checkpoint.json")["response"]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(capture["status"], json=capture["body"]["json"])
        return httpx.Response(200, json={})

    gen = ComfyUIGenerator(
        {"server_address": "comfy.invalid"}, transport=httpx.MockTransport(handle), clock=clock
    )
    with pytest.raises(ComfyUIValidationError) as info:
        asyncio.run(gen.agenerate_image("x", width=64, height=64))
    assert "\n" not in str(info.value)
    assert info.value.generator == gen.name


def test_the_connection_is_tested_on_the_loop_not_in_a_thread(make: Make) -> None:
    async def main() -> None:
        async with make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0}) as gen:
            gen.test_connection = lambda: pytest.fail("the sync test ran")  # type: ignore[method-assign]
            assert await gen.atest_connection()
        down = ComfyUIGenerator({"server_address": "127.0.0.1:9", "timeout": 5})
        async with down:
            assert not await down.atest_connection()

    asyncio.run(main())


def test_server_down_is_a_connection_error_not_sent() -> None:
    gen = ComfyUIGenerator({"server_address": "127.0.0.1:9", "timeout": 5})
    with pytest.raises(GeneratorConnectionError) as info:
        asyncio.run(gen.agenerate_image("x", width=64, height=64))
    assert info.value.work == "not_sent"


@pytest.mark.parametrize("address", ["comfy.invalid", "https://user:pw@comfy.invalid:9/comfy"])
def test_view_asks_for_the_url_httpx_makes_of_its_query(address: str) -> None:
    """/view's query is written without httpx parsing the whole URL again (the core's
    client): the URL sent is the one httpx makes of the same parameters, for any name."""
    names = ["ComfyUI_00001_.png", "a b+c.png", "ü&x=1%41#?;/.png", ""]
    sent: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request.url)
        return httpx.Response(200, content=b"png")

    gen = ComfyUIGenerator({"server_address": address}, transport=httpx.MockTransport(handle))

    async def main() -> list[httpx.URL]:
        driver = gen.make_async_driver()
        expected = []
        for name in names:
            image = {"filename": name, "subfolder": "sub/d ir", "type": "temp"}
            assert [c async for c in driver.view(image)] == [b"png"]
            params = {"filename": name, "subfolder": "sub/d ir", "type": "temp"}
            expected.append(driver.client.build_request("GET", "/view", params=params).url)
        await driver.aclose()
        return expected

    expected = asyncio.run(main())
    assert sent == expected
    assert [(str(u), u.raw_path) for u in sent] == [(str(u), u.raw_path) for u in expected]
    assert [u.params["filename"] for u in sent] == names
