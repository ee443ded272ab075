"""Jobs as handles on ComfyUI: submit, attach elsewhere, cancel only ours; and the seams
(``transport=``, ``clock=``) that let tests run without a server or real waits."""

from __future__ import annotations

import json
import logging
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
    GeneratorError,
    JobCanceledError,
)
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


# -- submit, attach ---------------------------------------------------------------------------


def test_submit_returns_while_the_prompt_is_pending_then_running(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    gate = fake.gate("ImageBlur")
    blocker = other_client_prompt(fake, long_workflow())
    generator = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0x123456})
    started = time.monotonic()
    job = generator.submit("x", width=16, height=16)
    assert time.monotonic() - started < 2
    assert job.status == "queued"
    assert job.refresh() == "queued"  # behind the other client's prompt
    assert fake.running is not None
    assert fake.running.prompt_id == blocker
    gate.set()
    job.wait(timeout=10)
    assert job.status == "done"
    job.save(tmp_path / "a.png")
    assert colour_of(tmp_path / "a.png") == (0x12, 0x34, 0x56)


def test_submit_returns_while_our_prompt_runs(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    job = make(workflow_template=long_workflow()).submit("x")
    assert fake.wait_until(lambda: fake.running is not None)
    assert job.refresh() == "running"
    gate.set()
    assert job.wait(timeout=10).status == "done"


def test_saved_job_is_attached_by_a_new_generator_and_saved(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    gate = fake.gate("ImageBlur")
    template = {
        **long_workflow(),
        "50": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "a"}},
    }
    template["1"] = {**template["1"], "inputs": {**template["1"]["inputs"], "color": "{{color}}"}}
    first = make(workflow_template=template)
    job = first.submit("x", color=0x00FF00)
    saved = json.dumps(job.to_dict())
    first.close()  # the first generator (and its socket) is gone

    second = make(workflow_template=template)
    attached = second.attach(json.loads(saved))
    assert attached.id == job.id
    assert attached.status in ("queued", "running")
    gate.set()
    attached.wait(timeout=10)
    out = attached.save(tmp_path / "attached.png")
    assert colour_of(out) == (0, 255, 0)
    assert len(fake.posts()) == 1
    client_ids = {fake.posts()[0].body["client_id"]}
    assert attached.ref.data["client_id"] in client_ids


def test_download_by_bare_prompt_id_on_a_new_generator(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    first = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0xFF0000})
    image_id = first.generate_image("a red square", width=24, height=12)
    assert image_id is not None
    second = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0})
    assert second.download_image(image_id, tmp_path / "r.png")
    assert colour_of(tmp_path / "r.png") == (255, 0, 0)
    job = second.job(image_id)
    assert (job.request.width, job.request.height) == (24, 12)
    assert job.status == "done"


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_of_a_pending_prompt_deletes_only_it(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    running_other = other_client_prompt(fake, long_workflow())
    generator = make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 1})
    job = generator.submit("x", width=8, height=8)
    pending_other = other_client_prompt(
        fake,
        {
            **EMPTY_IMAGE_TEMPLATE,
            "1": {
                **EMPTY_IMAGE_TEMPLATE["1"],
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 2},
            },
        },
    )
    assert job.cancel() is True
    assert job.status == "canceled"
    assert fake.posts("/queue")[-1].body == {"delete": [job.id]}
    assert fake.interrupt_requests == []
    assert set(fake.pending) == {pending_other}
    assert fake.running is not None
    assert fake.running.prompt_id == running_other
    with pytest.raises(JobCanceledError):
        job.wait()
    assert job.cancel() is False  # done already
    gate.set()


def test_cancel_of_our_running_prompt_interrupts_it_by_id(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    job = make(workflow_template=long_workflow()).submit("x")
    assert fake.wait_until(lambda: fake.running is not None)
    assert job.cancel() is True
    assert fake.interrupt_requests == [job.id]
    assert fake.posts("/queue") == []
    assert fake.wait_until(lambda: job.id in fake.history)
    assert fake.history[job.id]["status"]["messages"][-1][0] == "execution_interrupted"
    gate.set()


def test_cancel_never_interrupts_another_clients_running_prompt(
    fake: FakeComfyUI, make: Make
) -> None:
    gate = fake.gate("ImageBlur")
    other = other_client_prompt(fake, long_workflow())
    generator = make(workflow_template=long_workflow())
    job = generator.submit("y")
    assert fake.wait_until(lambda: fake.running is not None)
    fake.pending.clear()  # someone deleted ours: nothing of ours is left to cancel
    assert job.cancel() is False
    assert fake.interrupt_requests == []
    assert fake.running is not None
    assert fake.running.prompt_id == other
    gate.set()
    assert fake.wait_until(lambda: other in fake.history)
    assert fake.history[other]["status"]["status_str"] == "success"


# -- the seams: an httpx transport and a clock, no server, no real waits ------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)


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
            return httpx.Response(200, content=_png())
        return httpx.Response(404, text="404: Not Found")


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def scripted_generator(server: Scripted, clock: FakeClock, **settings: Any) -> ComfyUIGenerator:
    return ComfyUIGenerator(
        {
            "server_address": "comfy.invalid:8188",
            "workflow_template": EMPTY_IMAGE_TEMPLATE,
            "values": {"color": 5},
            "poll_interval": 2.0,
            **settings,
        },
        transport=httpx.MockTransport(server),
        clock=clock,
    )


def test_transport_and_clock_seams_make_an_image_without_waiting(tmp_path: Path) -> None:
    server, clock = Scripted(polls_to_finish=3), FakeClock()
    generator = scripted_generator(server, clock)
    started = time.monotonic()
    job = generator.submit("x", width=8, height=8)
    assert job.wait(timeout=60).status == "done"
    job.save(tmp_path / "s.png")
    assert colour_of(tmp_path / "s.png") == (1, 2, 3)
    assert time.monotonic() - started < 2  # the clock was waited on, not real time
    assert clock.slept  # polls waited on the injected clock
    assert max(clock.slept) <= 2.0


def test_lost_post_answer_is_looked_up_not_resubmitted() -> None:
    server, clock = Scripted(), FakeClock()
    server.lose_post_answer = True
    generator = scripted_generator(server, clock)
    job = generator.submit("x", width=8, height=8)
    assert list(server.prompts) == [job.id]
    posts = [r for r in server.requests if r.url.path == "/prompt"]
    assert len(posts) == 1
    assert job.ref.data["client_id"] == server.prompts[job.id]["client_id"]


def test_lost_post_answer_not_found_says_the_work_is_unknown() -> None:
    server, clock = Scripted(), FakeClock()
    generator = scripted_generator(server, clock)
    generator = ComfyUIGenerator(
        dict(generator.config), transport=httpx.MockTransport(_forgetful(server)), clock=clock
    )
    with pytest.raises(GeneratorConnectionError) as info:
        generator.submit("x", width=8, height=8)
    assert info.value.work == "unknown"
    assert info.value.generator == generator.name
    paths = [r.url.path for r in server.requests]
    assert paths[0] == "/queue"
    assert paths[1].startswith("/history/")
    assert len(paths) == 2  # looked for it once each, and never sent it again


def _forgetful(server: Scripted) -> Callable[[httpx.Request], httpx.Response]:
    """The POST reaches nobody: its answer is lost and no queue or history has it."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            raise httpx.ReadError("connection reset", request=request)
        return server(request)

    return handle


def test_refused_credentials_are_an_authentication_error() -> None:
    server, clock = Scripted(), FakeClock()
    server.status_for["/prompt"] = 401
    with pytest.raises(AuthenticationError) as info:
        scripted_generator(server, clock).generate_image("x", width=8, height=8)
    assert (info.value.status, info.value.work) == (401, "not_sent")
    assert info.value.generator is not None


def test_server_down_is_one_error_and_no_printed_note(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    generator = ComfyUIGenerator({"server_address": "127.0.0.1:9", "timeout": 5})
    with (
        caplog.at_level(logging.DEBUG, logger="degrees37_imagegen_comfyui"),
        pytest.raises(GeneratorConnectionError) as info,
    ):
        generator.generate_image("x", width=64, height=64)
    assert info.value.work == "not_sent"
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")
    notes = [r for r in caplog.records if "WebSocket" in r.getMessage()]
    assert notes
    assert all(r.levelno == logging.DEBUG for r in notes)


def test_validation_error_through_the_transport_is_one_line() -> None:
    capture = load_capture("err_missing_checkpoint.json")["response"]
    clock = FakeClock()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/prompt":
            return httpx.Response(capture["status"], json=capture["body"]["json"])
        return httpx.Response(200, json={})

    generator = ComfyUIGenerator(
        {"server_address": "comfy.invalid"}, transport=httpx.MockTransport(handle), clock=clock
    )
    with pytest.raises(ComfyUIValidationError) as info:
        generator.generate_image("x", width=64, height=64)
    assert "\n" not in str(info.value)
    assert info.value.generator == generator.name
    assert info.value.status == 400


def test_unknown_prompt_id_is_an_error() -> None:
    generator = scripted_generator(Scripted(), FakeClock())
    with pytest.raises(GeneratorError, match="has no prompt nope"):
        generator.job("nope")


# -- wait_job: back at the first news, never later than its timeout ----------------------------


def test_wait_returns_at_the_first_message_and_within_its_timeout(
    fake: FakeComfyUI, make: Make
) -> None:
    gate = fake.gate("ImageBlur")
    generator = make(workflow_template=long_workflow(), poll_interval=5)
    job = generator.submit("x")
    updates = []
    started = time.monotonic()
    while len(updates) < 50:
        update = generator.wait_job(job.ref, 5.0)
        updates.append(update)
        if update.progress is not None and update.progress.node == "10 ImageBlur":
            break
    assert time.monotonic() - started < 2  # each returned at a message, not after 5 s
    assert updates[-1].status == "running"
    # The gated node is silent now: the wait ends at its own timeout, not at poll_interval.
    started = time.monotonic()
    update = generator.wait_job(job.ref, 0.3)
    assert 0.25 <= time.monotonic() - started < 1.5
    assert update.status == "running"
    gate.set()
    assert job.wait(timeout=10).status == "done"
