"""Generating with the built-in graphs against the fake InvokeAI: success and every failure."""

from __future__ import annotations

import itertools

import pytest
from invokeai_fake import QUEUE, model_record
from PIL import Image

from degrees37_imagegen import (
    ConfigError,
    GeneratorError,
    GeneratorTimeoutError,
    InvalidRequestError,
    Progress,
    generate_to_file,
    read_png_text,
)
from degrees37_imagegen.errors import IncompleteImageError, JobCanceledError
from degrees37_imagegen_invokeai.errors import InvokeAIRequestError, QueueItemError

SDXL_KEY = "5b5a8c1e-0000-4000-8000-00000000sdxl"
SD1_KEY = "5b5a8c1e-0000-4000-8000-000000000sd1"


@pytest.fixture
def models(fake):
    fake.models = [
        model_record("sdxl-base", "sdxl", key=SDXL_KEY),
        model_record("sd15", "sd-1", key=SD1_KEY),
    ]
    return fake.models


def sent_prompts(body):
    """The seed and prompts the batch data puts into the graph."""
    values = {d["node_path"]: d["items"][0] for group in body["batch"]["data"] for d in group}
    return values["seed"], values["positive_prompt"], values["negative_prompt"]


def test_sdxl_image_is_made_on_the_generated_size_and_fitted_on_download(
    fake, models, make_generator, tmp_path
):
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("a lighthouse at dusk", "blurry", 1080, 1920, seed=123)

    (body,) = fake.enqueued
    nodes = body["batch"]["graph"]["nodes"]
    assert (nodes["noise"]["width"], nodes["noise"]["height"]) == (768, 1344)
    assert nodes["sdxl_model_loader"]["model"]["key"] == SDXL_KEY
    output = nodes["canvas_output"]
    assert (output["use_cache"], output["is_intermediate"]) == (False, False)
    assert sent_prompts(body) == (123, "a lighthouse at dusk", "blurry")
    info = gen.image_info(name)
    assert (info.width, info.height, info.seed) == (1080, 1920, 123)
    assert (info.generated_width, info.generated_height) == (768, 1344)
    assert info.model == "sdxl-base"
    assert info.as_metadata()["generated_size"] == "768x1344"

    out = tmp_path / "out.png"
    assert gen.download_image(name, out) is True
    with Image.open(out) as img:
        assert img.size == (1080, 1920)
    text = read_png_text(out)
    assert text["imagegen:resized_from"] == "768x1344"
    assert "invokeai_graph" in text  # the server's own metadata is kept


def test_keep_native_size_skips_the_fit(fake, models, make_generator, tmp_path):
    gen = make_generator(default_model="sdxl-base", keep_native_size=True)
    name = gen.generate_image("x", width=1920, height=1080)
    gen.download_image(name, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (1344, 768)


def test_map_sdxl_resolution_off_generates_the_requested_size(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-base", map_sdxl_resolution=False)
    gen.generate_image("x", width=1080, height=1920)
    noise = fake.enqueued[0]["batch"]["graph"]["nodes"]["noise"]
    assert (noise["width"], noise["height"]) == (1080, 1920)


def test_random_seed_is_resolved_and_recorded(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x", seed=-1)
    seed, _, _ = sent_prompts(fake.enqueued[0])
    assert 0 <= seed <= 2**32 - 1
    assert gen.image_info(name).seed == seed


def test_sd1_model_gets_the_sd1_graph_at_a_multiple_of_8(fake, models, make_generator, tmp_path):
    gen = make_generator(default_model="sd15")
    name = gen.generate_image("x", width=1001, height=700)
    nodes = fake.enqueued[0]["batch"]["graph"]["nodes"]
    assert nodes["sd1_model_loader"]["type"] == "main_model_loader"
    assert nodes["clip_skip"]["skipped_layers"] == 0
    assert (nodes["noise"]["width"], nodes["noise"]["height"]) == (1000, 704)
    gen.download_image(name, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (1001, 700)


def test_settings_and_model_defaults_reach_the_graph(fake, make_generator):
    fake.models = [model_record("tuned", "sdxl", steps=12, cfg_scale=4.0, scheduler="euler_a")]
    gen = make_generator(default_model="tuned", steps=20)
    gen.generate_image("x")
    denoise = fake.enqueued[0]["batch"]["graph"]["nodes"]["denoise_latents"]
    assert (denoise["steps"], denoise["cfg_scale"], denoise["scheduler"]) == (20, 4.0, "euler_a")
    gen.generate_image("x", scheduler="dpmpp_3m_k", cfg_scale=6)
    denoise = fake.enqueued[1]["batch"]["graph"]["nodes"]["denoise_latents"]
    assert (denoise["steps"], denoise["cfg_scale"], denoise["scheduler"]) == (20, 6.0, "dpmpp_3m_k")


def test_bad_per_call_values_are_invalid_requests(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(InvalidRequestError, match="scheduler"):
        gen.generate_image("x", scheduler="warp_drive")
    with pytest.raises(InvalidRequestError, match="width"):
        gen.generate_image("x", width=0)
    assert fake.enqueued == []


def test_progress_reports_each_stage_once_in_order(fake, models, make_generator):
    events: list[Progress] = []
    gen = make_generator(default_model="sdxl-base")
    gen.generate_image("x", on_progress=events.append)
    # A job starts queued, so the first change reported is "running".
    assert [e.stage for e in events] == ["submitted", "running"]
    assert all(e.generator == "invokeai" for e in events)
    assert "job 1" in events[0].message


def test_generate_to_file_reports_the_whole_life_of_an_image(
    fake, models, make_generator, tmp_path
):
    events: list[Progress] = []
    gen = make_generator(default_model="sdxl-base")
    result = generate_to_file(gen, tmp_path / "a.png", "x", on_progress=events.append)
    stages = [e.stage for e in events]
    assert stages == ["submitted", "running", "downloading", "done"]
    assert result.size == (1080, 1920)
    assert read_png_text(result.path)["imagegen:generated_size"] == "768x1344"


def test_pending_items_are_polled_gently_then_fast_once_running(
    fake, models, make_generator, clock
):
    fake.script = ["pending", "pending", "pending", "in_progress", "in_progress", "completed"]
    gen = make_generator(default_model="sdxl-base")
    polled: list[float] = []
    poll = gen.poll_job
    gen.poll_job = lambda ref: (polled.append(clock.now), poll(ref))[1]
    gen.generate_image("x")
    gaps = [b - a for a, b in itertools.pairwise(polled)]
    assert len(polled) == 6  # each status seen once: no needless polls
    assert all(gap >= 0.25 for gap in gaps[:3])  # waiting behind others: gently
    # running: on the core's schedule, at most poll_interval apart
    assert all(gap <= 0.1 + 1e-9 for gap in gaps[3:])


def test_polling_starts_fast_and_is_capped(fake, models, make_generator, clock):
    fake.script = ["in_progress"] * 30 + ["completed"]
    gen = make_generator(default_model="sdxl-base", poll_interval=0.2)
    gen.generate_image("x")
    slept = [s for s in clock.slept if s > 0]
    assert slept[0] == pytest.approx(0.01)
    assert max(slept) == pytest.approx(0.2)
    assert slept == sorted(slept)


# -- failures -----------------------------------------------------------------------------


def test_failed_item_raises_invokeais_own_error(fake, make_generator):
    missing = {
        "key": "00000000-0000-0000-0000-000000000000",
        "hash": "blake3:deadbeef",
        "name": "fake-sdxl",
        "base": "sdxl",
        "type": "main",
    }
    gen = make_generator(default_model=missing)
    with pytest.raises(QueueItemError) as caught:
        gen.generate_image("x")
    error = caught.value
    assert (error.status, error.error_type) == ("failed", "Exception")
    assert error.error_message == "Unknown model: 00000000-0000-0000-0000-000000000000"
    assert str(error) == (
        "InvokeAI queue item 1 failed: Exception: Unknown model: "
        "00000000-0000-0000-0000-000000000000"
    )
    assert "Traceback" in error.error_traceback
    assert "Traceback" not in str(error)
    assert isinstance(error, GeneratorError)


def test_item_canceled_by_someone_else(fake, models, make_generator):
    fake.script = ["in_progress", "canceled"]
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(JobCanceledError, match="canceled on the server"):
        gen.generate_image("x")


def test_item_deleted_while_waiting(fake, models, make_generator):
    fake.script = ["in_progress"]
    gen = make_generator(default_model="sdxl-base")

    def delete_it(progress):
        if progress.stage == "submitted":
            del fake.items[1]  # someone clears the queue

    with pytest.raises(JobCanceledError, match="queue item 1 was deleted"):
        gen.generate_image("x", on_progress=delete_it)


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        ("malformed_unknown_node_type.json", "does not match any of the expected tags"),
        (
            "malformed_bad_field_value_noise_width.json",
            "Input should be a multiple of 8 (got 1001)",
        ),
        ("enqueue_sdxl_model_missing_hash.json", "model.hash: Field required"),
    ],
)
def test_422_is_a_short_readable_invalid_request(fake, models, make_generator, capture, expected):
    fake.reject_next_enqueue = capture
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(InvokeAIRequestError) as caught:
        gen.generate_image("x")
    error = caught.value
    assert isinstance(error, InvalidRequestError)
    assert error.status_code == 422
    assert expected in str(error)
    assert len(str(error)) < 400
    assert "\n" not in str(error)
    assert isinstance(error.detail, list)  # the whole answer stays available


def test_waiting_longer_than_max_wait_cancels_the_item(fake, models, make_generator, clock):
    fake.script = ["in_progress"]
    gen = make_generator(default_model="sdxl-base", max_wait=30)
    start = clock.now
    with pytest.raises(GeneratorTimeoutError, match="not done after 30s") as caught:
        gen.generate_image("x")
    assert caught.value.work == "queued"
    assert fake.items[1].status == "canceled"
    assert fake.count("PUT", f"{QUEUE}/i/1/cancel") == 1
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 1
    assert clock.now - start == pytest.approx(30)


def test_item_finishing_as_it_is_canceled_is_kept(fake, models, make_generator, tmp_path):
    fake.script = ["in_progress"]
    fake.complete_on_cancel = True
    gen = make_generator(default_model="sdxl-base", max_wait=5)
    # The cancel came too late (InvokeAI leaves a finished item as it is): the job is
    # not canceled, and generate_image returns its image after all.
    assert gen.generate_image("x") == "1"
    job = gen.job("1")
    assert job.status != "canceled"
    job.save(tmp_path / "late.png")
    assert job.info.extra["image_name"] == fake.items[1].image_name


def test_follows_its_own_item_not_the_newest_one(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-base")
    other = make_generator(default_model="sdxl-base")
    fake.script = ["pending", "in_progress", "completed"]
    mine = gen.generate_image("mine")
    theirs = other.generate_image("theirs")
    assert (mine, theirs) == ("1", "2")  # queue item ids
    assert gen.image_info(mine).extra["image_name"] == fake.items[1].image_name
    assert other.image_info(theirs).extra["image_name"] == fake.items[2].image_name
    # Never looks at galleries or boards to find its image.
    assert not [c for c in fake.calls if "/images/?" in c[1] or "image_names" in c[1]]


def test_unknown_model_name_lists_installed_models(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-turbo")
    with pytest.raises(ConfigError) as caught:
        gen.generate_image("x")
    assert caught.value.key == "default_model"
    assert "no main model 'sdxl-turbo'" in str(caught.value)
    assert "sdxl-base (sdxl, key 5b5a8c1e" in str(caught.value)
    assert fake.enqueued == []


def test_model_found_by_key_name_or_any_case(fake, models, make_generator):
    gen = make_generator()
    for spec in (SDXL_KEY, "sdxl-base", "SDXL-Base"):
        gen.generate_image("x", model=spec)
    keys = [
        b["batch"]["graph"]["nodes"]["sdxl_model_loader"]["model"]["key"] for b in fake.enqueued
    ]
    assert keys == [SDXL_KEY] * 3
    assert fake.count("GET", "/api/v2/models/") == 1  # looked up once


def test_per_call_unknown_model_is_an_invalid_request(fake, models, make_generator):
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(InvalidRequestError, match="model: InvokeAI has no main model 'nope'"):
        gen.generate_image("x", model="nope")


def test_without_default_model_the_first_sdxl_model_is_used(fake, models, make_generator):
    fake.models.append(model_record("another-sdxl", "sdxl"))
    gen = make_generator()
    gen.generate_image("x")
    model = fake.enqueued[0]["batch"]["graph"]["nodes"]["sdxl_model_loader"]["model"]
    assert model["name"] == "another-sdxl"  # first by name


def test_no_model_at_all_is_a_config_error(fake, make_generator):
    gen = make_generator()
    with pytest.raises(ConfigError, match="installed main models: none"):
        gen.generate_image("x")


def test_unsupported_base_points_to_graph_template(fake, make_generator):
    fake.models = [model_record("flux-dev", "flux")]
    gen = make_generator(default_model="flux-dev")
    with pytest.raises(InvalidRequestError, match="graph_template"):
        gen.generate_image("x")


def test_download_of_a_missing_image_fails_cleanly(fake, models, make_generator, tmp_path):
    gen = make_generator(default_model="sdxl-base", keep_native_size=True)
    image_id = gen.generate_image("x")
    fake.images.clear()  # someone deleted the image on the server
    out = tmp_path / "out.png"
    with pytest.raises(InvokeAIRequestError) as caught:
        gen.download_image(image_id, out)
    assert caught.value.status_code == 404
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


@pytest.mark.parametrize("keep_native_size", [False, True])
def test_truncated_download_is_fetched_again(
    fake, models, make_generator, tmp_path, keep_native_size
):
    gen = make_generator(default_model="sdxl-base", keep_native_size=keep_native_size)
    image_id = gen.generate_image("x")
    fake.add_fault("download", "truncated")
    out = tmp_path / "out.png"
    gen.download_image(image_id, out)
    with Image.open(out) as img:
        img.load()
    assert fake.count("POST", f"{QUEUE}/enqueue_batch") == 1  # fetched again, not generated


@pytest.mark.parametrize("keep_native_size", [False, True])
def test_truncated_download_leaves_nothing_behind(
    fake, models, make_generator, tmp_path, keep_native_size
):
    gen = make_generator(default_model="sdxl-base", keep_native_size=keep_native_size)
    image_id = gen.generate_image("x")
    fake.add_fault("download", *["truncated"] * 10)
    out = tmp_path / "out.png"
    with pytest.raises(IncompleteImageError, match=r"not (a )?whole"):
        gen.download_image(image_id, out)
    assert list(tmp_path.iterdir()) == []
