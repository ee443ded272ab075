"""The generator against the fake ComfyUI: success, cache, errors, drops, timeouts, sharing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from comfyui_fake import EMPTY_IMAGE_TEMPLATE, FakeComfyUI, load_capture
from PIL import Image

from degrees37_imagegen import (
    GeneratorConnectionError,
    GeneratorError,
    GeneratorRegistry,
    GeneratorTimeoutError,
    InvalidRequestError,
    Progress,
    generate_to_file,
)
from degrees37_imagegen_comfyui import (
    ComfyUIExecutionError,
    ComfyUIGenerator,
    ComfyUIInterruptedError,
    ComfyUIServerError,
    ComfyUITimeoutError,
    ComfyUIValidationError,
)

Make = Callable[..., ComfyUIGenerator]
Log = tuple[list[Progress], Callable[[Progress], None]]


def colour_of(path: Path) -> tuple[int, ...]:
    with Image.open(path) as image:
        return tuple(image.convert("RGB").getpixel((0, 0)))


def empty_image(make: Make, **settings: Any) -> ComfyUIGenerator:
    return make(workflow_template=EMPTY_IMAGE_TEMPLATE, values={"color": 0x336699}, **settings)


def long_workflow() -> dict[str, Any]:
    """The captured long prompt: EmptyImage 1080x1920 -> 4 x ImageBlur -> PreviewImage."""
    workflow: dict[str, Any] = load_capture("q1_post_long.json")["request"]["body"]["json"][
        "prompt"
    ]
    return workflow


# -- success --------------------------------------------------------------------------------


def test_generate_and_download_a_real_image(
    fake: FakeComfyUI, make: Make, progress_log: Log, tmp_path: Path
) -> None:
    generator = empty_image(make)
    seen, callback = progress_log
    image_id = generator.generate_image("a cat", width=96, height=64, on_progress=callback)
    assert image_id
    out = tmp_path / "out.png"
    assert generator.download_image(image_id, out)
    with Image.open(out) as image:
        assert image.size == (96, 64)
    assert colour_of(out) == (0x33, 0x66, 0x99)
    # The socket was open (as our client id) before the prompt was submitted.
    client_id = fake.posts()[0].body["client_id"]
    assert fake.events.index(("ws", client_id)) < fake.events.index(("post", client_id))
    assert [p.stage for p in seen][:1] == ["submitted"]
    nodes = [(p.node, p.message) for p in seen if p.stage == "running" and p.node]
    assert nodes == [("1 EmptyImage", "node 1 of 2"), ("2 SaveImage", "node 2 of 2")]
    info = generator.image_info(image_id)
    assert info is not None
    assert (info.width, info.height, info.extra["color"]) == (96, 64, 0x336699)
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_builtin_workflow_fills_everything_and_reports_steps(
    fake: FakeComfyUI, make: Make, progress_log: Log, tmp_path: Path
) -> None:
    fake.checkpoints = ["sd15.safetensors"]
    fake.preview_frames = True  # binary preview frames must be ignored
    generator = make(checkpoint="sd15.safetensors", steps=3, cfg=6, sampler="euler_a")
    seen, callback = progress_log
    image_id = generator.generate_image(
        "a lighthouse", "fog", width=128, height=75, seed=1234, on_progress=callback
    )
    workflow = fake.posts()[0].body["prompt"]
    assert workflow["6"]["inputs"]["text"] == "a lighthouse"
    assert workflow["7"]["inputs"]["text"] == "fog"
    # The latent is 1/8 of the image: the core asks for the size really made, 75 -> 72.
    assert (workflow["5"]["inputs"]["width"], workflow["5"]["inputs"]["height"]) == (128, 72)
    assert workflow["3"]["inputs"]["seed"] == 1234
    assert workflow["3"]["inputs"]["steps"] == 3
    assert workflow["3"]["inputs"]["sampler_name"] == "euler_ancestral"
    assert workflow["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    steps = [(p.step, p.total, p.node) for p in seen if p.stage == "step"]
    assert steps == [(1, 3, "3 KSampler"), (2, 3, "3 KSampler"), (3, 3, "3 KSampler")]
    generator.download_image(image_id, tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as image:
        assert image.size == (128, 72)
    info = generator.image_info(image_id)
    assert info is not None
    assert info.model == "sd15.safetensors"
    assert info.extra["sampler"] == "euler_ancestral"
    assert (info.width, info.height, info.seed) == (128, 72, 1234)


def test_random_seed_goes_into_the_workflow_and_is_recorded(fake: FakeComfyUI, make: Make) -> None:
    fake.checkpoints = ["v1-5-pruned-emaonly.safetensors"]
    generator = make(steps=1)
    seeds = []
    for _ in range(2):
        image_id = generator.generate_image("x", width=64, height=64, seed=-1)
        assert image_id is not None
        info = generator.image_info(image_id)
        assert info is not None
        seeds.append(info.seed)
    sent = [post.body["prompt"]["3"]["inputs"]["seed"] for post in fake.posts()]
    assert sent == seeds
    assert sent[0] != sent[1]
    assert 0 not in sent


def test_done_only_at_the_final_executing_message(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    # History is written a while after execution_success, as on the real server.
    fake.history_delay = 0.3
    generator = empty_image(make)
    image_id = generator.generate_image("x", width=32, height=32)
    assert image_id is not None
    assert generator.download_image(image_id, tmp_path / "a.png")


def test_cache_hit_gives_back_the_old_file(fake: FakeComfyUI, make: Make, tmp_path: Path) -> None:
    generator = empty_image(make)
    first = generator.generate_image("x", width=40, height=30, seed=5)
    second = generator.generate_image("x", width=40, height=30, seed=5)
    assert first
    assert second
    assert first != second
    assert generator.output_images(second)[0]["filename"] == "imagegen_test_00001_.png"
    info = generator.image_info(second)
    assert info is not None
    assert info.extra.get("cached") is True
    generator.download_image(second, tmp_path / "b.png")
    assert colour_of(tmp_path / "b.png") == (0x33, 0x66, 0x99)


def test_all_images_of_a_prompt_are_reachable(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    template = {
        **EMPTY_IMAGE_TEMPLATE,
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    template["1"] = {**template["1"], "inputs": {**template["1"]["inputs"], "batch_size": 2}}
    generator = make(workflow_template=template, values={"color": 0xFF0000})
    image_id = generator.generate_image("x", width=20, height=10)
    assert image_id is not None
    images = generator.output_images(image_id)
    assert [i["type"] for i in images] == ["output", "output", "temp", "temp"]
    # The output_index option chooses which image a job fetches.
    job = generator.submit("x", width=21, height=10, output_index=3).wait()
    assert job.save(tmp_path / "last.png") == tmp_path / "last.png"
    assert colour_of(tmp_path / "last.png") == (255, 0, 0)
    assert job.result["images"][3]["type"] == "temp"
    with pytest.raises(InvalidRequestError, match="has 4 images; there is no image 4"):
        generator.submit("x", width=22, height=10, output_index=4).save(tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_custom_value_per_call(fake: FakeComfyUI, make: Make, tmp_path: Path) -> None:
    generator = make(workflow_template=EMPTY_IMAGE_TEMPLATE)
    with pytest.raises(InvalidRequestError, match="needs a value for color"):
        generator.generate_image("x", width=8, height=8)
    image_id = generator.generate_image("x", width=8, height=8, color=0x00FF00)
    assert image_id is not None
    generator.download_image(image_id, tmp_path / "g.png")
    assert colour_of(tmp_path / "g.png") == (0, 255, 0)


def test_generate_to_file_with_progress_and_metadata(
    fake: FakeComfyUI, make: Make, progress_log: Log, tmp_path: Path
) -> None:
    from degrees37_imagegen import read_png_text

    seen, callback = progress_log
    result = generate_to_file(
        empty_image(make),
        tmp_path / "final.png",
        "a cat",
        width=50,
        height=40,
        seed=7,
        on_progress=callback,
    )
    assert result.size == (50, 40)
    text = read_png_text(tmp_path / "final.png")
    assert text["imagegen:seed"] == "not used"  # the template has no place for a seed
    stages = [p.stage for p in seen]
    assert stages[0] == "submitted"
    assert stages[-2:] == ["downloading", "done"]


# -- errors ---------------------------------------------------------------------------------


def test_missing_checkpoint_lists_node_errors(fake: FakeComfyUI, make: Make) -> None:
    generator = make()
    with pytest.raises(ComfyUIValidationError) as info:
        generator.generate_image("x", width=64, height=64)
    assert str(info.value) == (
        "ComfyUI rejected the workflow: Prompt outputs failed validation: node 4 "
        "(CheckpointLoaderSimple): ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in []"
    )
    assert info.value.node_errors["4"]["class_type"] == "CheckpointLoaderSimple"


def test_several_node_errors_in_one_message(fake: FakeComfyUI, make: Make) -> None:
    generator = make(
        workflow_template={
            **EMPTY_IMAGE_TEMPLATE,
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": "{{width}}", "height": 0, "batch_size": 1, "color": 99999999},
            },
        },
        mapping={"height": None},
    )
    with pytest.raises(
        ComfyUIValidationError,
        match=(
            r"node 1 \(EmptyImage\): height: Value 0 smaller than min of 1; "
            r"color: Value 99999999 bigger than max of 16777215$"
        ),
    ):
        generator.generate_image("x", width=64, height=64)


def test_500_plain_text_is_reported_as_such(fake: FakeComfyUI, make: Make) -> None:
    fake.scripted_posts = ["err_ui_format_workflow.json"]
    with pytest.raises(
        ComfyUIServerError,
        match=(
            r"answered POST /prompt with HTTP 500: 500 Internal Server Error Server got itself in "
            r"trouble"
        ),
    ) as info:
        empty_image(make).generate_image("x", width=8, height=8)
    assert info.value.status_code == 500


def test_execution_error_names_the_node_and_message(fake: FakeComfyUI, make: Make) -> None:
    workflow = load_capture("exec_error_imagescaleby_post_prompt.json")["request"]["body"]
    generator = make(workflow_template=workflow["json"]["prompt"])
    with pytest.raises(ComfyUIExecutionError) as info:
        generator.generate_image("x", width=1, height=1)
    assert info.value.node_id == "2"
    assert info.value.node_type == "ImageScaleBy"
    assert "node 2 (ImageScaleBy)" in str(info.value)
    assert str(info.value).endswith(
        "RuntimeError: Input and output sizes should be greater than 0, but got input "
        "(H: 1, W: 1) output (H: 0, W: 0)"
    )
    assert info.value.traceback


def test_unknown_sampler_is_rejected_with_the_servers_list(fake: FakeComfyUI, make: Make) -> None:
    generator = make(sampler="wobbly")
    with pytest.raises(
        InvalidRequestError, match=r"unknown sampler 'wobbly'; valid samplers: euler,"
    ):
        generator.generate_image("x", width=64, height=64)
    assert fake.posts() == []
    with pytest.raises(InvalidRequestError, match="unknown scheduler 'sometimes'"):
        make().generate_image("x", width=64, height=64, scheduler="sometimes")


def test_connection_refused(make: Make) -> None:
    generator = make(server_address="127.0.0.1:9")
    with pytest.raises(
        GeneratorConnectionError, match=r"cannot connect to ComfyUI at http://127\.0\.0\.1:9"
    ):
        generator.generate_image("x", width=64, height=64)
    assert generator.test_connection() is False


def test_test_connection(fake: FakeComfyUI, make: Make) -> None:
    assert make().test_connection() is True


def test_download_of_an_unknown_prompt(fake: FakeComfyUI, make: Make, tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="has no prompt nope in its queue or history"):
        make().download_image("nope", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_interrupted_by_someone_else(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    generator = make(workflow_template=long_workflow())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            generator.generate_image("x", width=8, height=8)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert fake.wait_until(lambda: fake.last_node_id == "10")
    httpx.post(f"{fake.url}/interrupt")  # the web UI's global interrupt
    thread.join(10)
    gate.set()
    assert len(errors) == 1
    assert isinstance(errors[0], ComfyUIInterruptedError)
    assert "interrupted at node 11 (ImageBlur)" in str(errors[0])


def test_prompt_deleted_by_someone_else(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    blocker = httpx.post(
        f"{fake.url}/prompt", json={"prompt": long_workflow(), "client_id": "other"}
    ).json()
    assert blocker["prompt_id"]
    generator = empty_image(make, poll_interval=0.1)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(errors, generator))
    thread.start()
    assert fake.wait_until(lambda: len(fake.pending) == 1)
    httpx.post(f"{fake.url}/queue", json={"clear": True})
    thread.join(10)
    gate.set()
    assert len(errors) == 1
    assert "neither queued, running nor in the history" in str(errors[0])


def _catch(errors: list[BaseException], generator: ComfyUIGenerator, **kwargs: Any) -> None:
    try:
        generator.generate_image("x", width=8, height=8, **kwargs)
    except BaseException as exc:
        errors.append(exc)


# -- sockets that drop, or never work ------------------------------------------------------


def test_socket_drop_mid_prompt_reconnects(fake: FakeComfyUI, make: Make, tmp_path: Path) -> None:
    gate = fake.gate("ImageBlur")
    fake.drop_after = ("executing", "10")
    generator = make(workflow_template=long_workflow(), poll_interval=5)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(generator.generate_image("x")))
    thread.start()
    assert fake.wait_until(lambda: fake.drops == 1)
    client_id = fake.posts()[0].body["client_id"]
    # Reconnected as the same client, while the prompt still runs.
    assert fake.wait_until(lambda: fake.events.count(("ws", client_id)) == 2)
    gate.set()
    thread.join(10)
    assert result == [fake.posts()[0].body["prompt_id"]]
    assert len(fake.posts()) == 1  # never submitted twice
    assert generator._watches == {}  # the finished job's socket is closed and forgotten
    generator.download_image(result[0], tmp_path / "d.png")


def test_socket_drop_with_reconnect_refused_falls_back_to_polling(
    fake: FakeComfyUI, make: Make
) -> None:
    gate = fake.gate("ImageBlur")
    fake.drop_after = ("executing", "10")
    generator = make(workflow_template=long_workflow(), poll_interval=0.05)
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(generator.generate_image("x")))
    thread.start()
    assert fake.wait_until(lambda: fake.drops == 1)
    fake.refuse_websockets = True
    assert fake.wait_until(lambda: any(r.path == "/queue" for r in fake.requests))
    gate.set()
    thread.join(10)
    assert result
    assert result[0] == fake.posts()[0].body["prompt_id"]
    assert len(fake.posts()) == 1


def test_no_websocket_at_all_still_works_by_polling(fake: FakeComfyUI, make: Make) -> None:
    fake.refuse_websockets = True
    image_id = empty_image(make, poll_interval=0.05).generate_image("x", width=8, height=8)
    assert image_id is not None


def test_silent_socket_is_covered_by_polling(fake: FakeComfyUI, make: Make) -> None:
    fake.mute_websockets = True
    image_id = empty_image(make, poll_interval=0.05).generate_image("x", width=8, height=8)
    assert image_id is not None


def test_lost_post_answer_is_found_not_resubmitted(fake: FakeComfyUI, make: Make) -> None:
    fake.lose_next_post_answer = True
    generator = empty_image(make)
    image_id = generator.generate_image("x", width=8, height=8)
    assert image_id == fake.posts()[0].body["prompt_id"]
    assert len(fake.posts()) == 1


# -- timeouts -------------------------------------------------------------------------------


def test_timeout_while_pending_deletes_only_our_prompt(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    blocker = httpx.post(
        f"{fake.url}/prompt", json={"prompt": long_workflow(), "client_id": "someone-else"}
    ).json()
    generator = empty_image(make, timeout=0.5, poll_interval=0.1)
    with pytest.raises(GeneratorTimeoutError, match=r"not done after 0.5s \(still queued\)"):
        generator.generate_image("x", width=8, height=8)
    ours = fake.posts()[1].body["prompt_id"]
    assert fake.posts("/queue")[-1].body == {"delete": [ours]}
    assert fake.interrupt_requests == []  # the running prompt is not ours: left alone
    assert fake.running is not None
    assert fake.running.prompt_id == blocker["prompt_id"]
    assert fake.pending == {}
    gate.set()


def test_timeout_while_running_interrupts_our_prompt(fake: FakeComfyUI, make: Make) -> None:
    gate = fake.gate("ImageBlur")
    generator = make(workflow_template=long_workflow(), timeout=0.5, poll_interval=0.1)
    with pytest.raises(GeneratorTimeoutError, match="still running"):
        generator.generate_image("x")
    ours = fake.posts()[0].body["prompt_id"]
    assert fake.interrupt_requests == [ours]  # targeted, never global
    assert fake.wait_until(lambda: ours in fake.history)
    assert fake.history[ours]["status"]["status_str"] == "error"
    assert ComfyUITimeoutError is GeneratorTimeoutError  # the old name still catches it
    gate.set()


def test_bad_per_call_timeout(fake: FakeComfyUI, make: Make) -> None:
    with pytest.raises(InvalidRequestError, match="timeout must be a number"):
        empty_image(make).generate_image("x", width=8, height=8, timeout="soon")
    assert fake.posts() == []


def test_long_waits_do_not_overflow_the_poll_delay(make: Make) -> None:
    generator = make(poll_interval=0.2)
    assert generator.poll_delay(0) == 0
    assert generator.poll_delay(1) == pytest.approx(0.01)
    assert generator.poll_delay(100_000) == 0.2


# -- sharing --------------------------------------------------------------------------------


def test_concurrent_calls_and_generators_share_one_server(
    fake: FakeComfyUI, make: Make, tmp_path: Path
) -> None:
    generators = [empty_image(make, name=f"g{i}") for i in range(2)]
    colours = [0x100000 * i + 0x10 * j for i in range(1, 3) for j in range(1, 4)]

    def one(k: int) -> tuple[int, Path]:
        generator = generators[k % 2]
        image_id = generator.generate_image("x", width=10 + k, height=10, color=colours[k])
        assert image_id is not None
        path = tmp_path / f"{k}.png"
        generator.download_image(image_id, path)
        return k, path

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    for k, path in results:
        with Image.open(path) as image:
            assert image.size == (10 + k, 10)
        c = colours[k]
        assert colour_of(path) == ((c >> 16) & 255, (c >> 8) & 255, c & 255)
    assert len({post.body["client_id"] for post in fake.posts()}) == 6


def test_a_timeout_next_to_a_success_touches_only_its_own_prompt(
    fake: FakeComfyUI, make: Make
) -> None:
    gate = fake.gate("ImageBlur")
    slow = make(workflow_template=long_workflow(), name="slow")
    quick = empty_image(make, name="quick", timeout=0.4, poll_interval=0.1)
    errors: list[BaseException] = []
    slow_thread = threading.Thread(target=lambda: slow.generate_image("x"))
    slow_thread.start()
    assert fake.wait_until(lambda: fake.running is not None)
    _catch(errors, quick)
    assert isinstance(errors[0], GeneratorTimeoutError)
    quick_id = fake.posts()[1].body["prompt_id"]
    assert fake.posts("/queue")[-1].body == {"delete": [quick_id]}
    assert fake.interrupt_requests == []
    gate.set()
    slow_thread.join(10)
    slow_id = fake.posts()[0].body["prompt_id"]
    assert fake.history[slow_id]["status"]["status_str"] == "success"


# -- settings in use ------------------------------------------------------------------------


def test_headers_are_sent_and_never_shown(fake: FakeComfyUI, make: Make) -> None:
    generator = empty_image(make, headers={"X-Proxy-Key": "hunter2"}, api_key="sk-abc")
    generator.generate_image("x", width=8, height=8)
    assert fake.posts()[0].headers["X-Proxy-Key"] == "hunter2"
    assert fake.posts()[0].headers["Authorization"] == "Bearer sk-abc"
    assert fake.ws_headers[0]["X-Proxy-Key"] == "hunter2"
    fake.scripted_posts = ["err_ui_format_workflow.json"]
    with pytest.raises(ComfyUIServerError) as info:
        generator.generate_image("x", width=8, height=8)
    assert "hunter2" not in str(info.value)
    assert "sk-abc" not in str(info.value)
    assert "hunter2" not in repr(generator)


def test_debug_logs_never_show_the_auth_headers(
    fake: FakeComfyUI, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    generator = empty_image(make, headers={"X-Proxy-Key": "hunter2"}, api_key="sk-abc")
    with caplog.at_level(logging.DEBUG):
        generator.generate_image("x", width=8, height=8)
    # What the client side logged (the fake server's own log is test scaffolding).
    client = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")
    )
    assert "X-Proxy-Key" in client  # the handshake was logged...
    assert "hunter2" not in client  # ...without the secrets
    assert "sk-abc" not in client


def test_progress_callback_errors_do_not_break_the_image(fake: FakeComfyUI, make: Make) -> None:
    def broken(progress: Progress) -> None:
        raise RuntimeError("display died")

    assert empty_image(make).generate_image("x", width=8, height=8, on_progress=broken)


def test_registry_resolves_the_template_next_to_the_config(
    fake: FakeComfyUI, tmp_path: Path, template_file: Path
) -> None:
    config = tmp_path / "generators.yaml"
    config.write_text(
        "generators:\n"
        "  comfy:\n"
        "    plugin: comfyui\n"
        f"    server_address: {fake.url}\n"
        f"    workflow_template: {template_file.name}\n"
        "    values: {color: 255}\n",
        encoding="utf-8",
    )
    generator = GeneratorRegistry(config).get_generator("comfy")
    try:
        assert isinstance(generator, ComfyUIGenerator)
        assert generator.template.name == template_file.name
        assert generator.generate_image("x", width=8, height=8)
    finally:
        generator.close()


def test_close_then_use_again(fake: FakeComfyUI, make: Make) -> None:
    generator = empty_image(make)
    assert generator.generate_image("x", width=8, height=8)
    generator.close()
    assert generator.generate_image("x", width=9, height=8)
