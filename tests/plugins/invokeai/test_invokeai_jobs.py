"""Jobs as handles on InvokeAI queue items: submit, attach elsewhere, cancel, fetch.

A job's id is its queue item id; its reference holds what finds the item again from
another process (batch id, destination, queue id). Everything runs against the fake
InvokeAI, on the fake clock.
"""

from __future__ import annotations

import io
import json

import httpx
import pytest
from invokeai_fake import QUEUE, model_record
from PIL import Image

from degrees37_imagegen import GeneratorConnectionError, GeneratorError, read_png_text
from degrees37_imagegen.errors import JobCanceledError
from degrees37_imagegen.job import JobRef
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai._graphs import OUTPUT_NODE
from degrees37_imagegen_invokeai._queue import STATUSES, ItemFacts, item_update, job_status
from degrees37_imagegen_invokeai.errors import InvokeAIRequestError, QueueItemError

SDXL_KEY = "5b5a8c1e-0000-4000-8000-00000000sdxl"
ENQUEUE = f"{QUEUE}/enqueue_batch"


@pytest.fixture
def sdxl(fake):
    fake.models = [model_record("sdxl-base", "sdxl", key=SDXL_KEY)]
    return fake


def polls(fake, item_id: int) -> int:
    return fake.count("GET", f"{QUEUE}/i/{item_id}")


def enqueue_as_another_client(fake, blank_template) -> int:
    """Enqueue a graph the way another client (the web UI) would: its own origin."""
    body = {
        "prepend": False,
        "batch": {"graph": blank_template, "runs": 1, "origin": "canvas", "destination": "gallery"},
    }
    graph = body["batch"]["graph"]
    graph["nodes"]["blank"].update(width=64, height=64)
    with httpx.Client(base_url=fake.base_url, transport=fake.transport) as client:
        answer = client.post(ENQUEUE, json=body)
    return int(answer.json()["item_ids"][0])


# -- submit and attach ------------------------------------------------------------------


def test_submit_returns_while_the_item_is_still_pending(sdxl, make_generator):
    fake = sdxl
    fake.script = ["pending"]
    gen = make_generator(default_model="sdxl-base")
    job = gen.submit("a lighthouse", width=1080, height=1920, seed=7)
    assert (job.id, job.status, job.done) == ("1", "queued", False)
    assert fake.items[1].status == "pending"
    assert polls(fake, 1) == 0  # accepted: nothing waited for
    assert job.ref.data["destination"] == fake.items[1].batch["destination"]
    assert job.ref.data["batch_id"] == fake.items[1].batch_id
    assert job.ref.data["queue_id"] == "default"
    fake.items[1].script = ["in_progress", "completed"]
    job.wait()
    assert job.status == "done"
    assert job.info.seed == 7


def test_saved_job_is_attached_by_a_new_generator_and_saved(sdxl, make_generator, tmp_path):
    fake = sdxl
    fake.script = ["pending"]
    first = make_generator(default_model="sdxl-base")
    job = first.submit("a lighthouse", "blurry", width=1080, height=1920, seed=42)
    saved = json.dumps(job.to_dict())  # what another process would read
    first.close()
    fake.items[1].script = ["in_progress", "completed"]

    second = make_generator(default_model="sdxl-base")
    again = second.attach(json.loads(saved))
    assert again.id == "1"
    out = again.wait().save(tmp_path / "attached.png")
    with Image.open(out) as img:
        assert img.size == (1080, 1920)  # the SDXL 768x1344 output, fitted
    text = read_png_text(out)
    assert (text["imagegen:seed"], text["imagegen:prompt"]) == ("42", "a lighthouse")
    assert text["imagegen:resized_from"] == "768x1344"
    assert fake.count("POST", ENQUEUE) == 1  # followed, never enqueued again


def test_a_bare_item_id_is_found_by_a_new_generator(sdxl, make_generator, tmp_path):
    gen = make_generator(default_model="sdxl-base")
    image_id = gen.generate_image("a fox", width=1080, height=1920, seed=3)
    other = make_generator(default_model="sdxl-base")  # knows nothing of image_id
    assert other.download_image(image_id, tmp_path / "fox.png")
    with Image.open(tmp_path / "fox.png") as img:
        assert img.size == (1080, 1920)  # the requested size, read from the destination
    assert read_png_text(tmp_path / "fox.png")["imagegen:seed"] == "3"


def test_another_clients_item_is_not_followed(sdxl, make_generator, blank_template):
    other_id = enqueue_as_another_client(sdxl, blank_template)
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(GeneratorError, match="not enqueued by this library"):
        gen.job(str(other_id))
    with pytest.raises(GeneratorError, match="no queue item"):
        gen.job("999")


# -- cancel -------------------------------------------------------------------------------


def test_cancel_a_pending_item(sdxl, make_generator):
    fake = sdxl
    fake.script = ["pending"]
    job = make_generator(default_model="sdxl-base").submit("x")
    assert job.cancel() is True
    assert fake.canceled == [1]
    assert fake.count("PUT", f"{QUEUE}/i/1/cancel") == 1
    assert job.status == "canceled"
    with pytest.raises(JobCanceledError):
        job.wait()
    assert job.cancel() is False  # already over


def test_cancel_an_item_in_progress(sdxl, make_generator):
    fake = sdxl
    fake.script = ["in_progress"]
    job = make_generator(default_model="sdxl-base").submit("x")
    assert job.refresh() == "running"
    assert job.cancel() is True
    assert fake.canceled == [1]
    assert fake.items[1].status == "canceled"


def test_cancel_of_a_finished_item_does_nothing(sdxl, make_generator):
    fake = sdxl
    job = make_generator(default_model="sdxl-base").submit("x")
    job.wait()
    assert job.cancel() is False
    fake.items[1].status = "in_progress"  # even if the server said otherwise now
    assert job.cancel() is False  # the handle knows it is done
    assert fake.canceled == []


def test_cancel_never_touches_another_clients_item(sdxl, make_generator, blank_template):
    fake = sdxl
    fake.script = ["pending"]
    other_id = enqueue_as_another_client(fake, blank_template)
    gen = make_generator(default_model="sdxl-base")
    mine = gen.submit("mine")
    # A reference naming the other client's item (a stale or forged saved job).
    forged = JobRef(str(other_id), {"destination": mine.ref.data["destination"]})
    assert gen.cancel_job(forged) is False
    assert gen.cancel_job(JobRef(str(other_id))) is False  # no destination: origin checked
    assert mine.cancel() is True
    assert fake.canceled == [int(mine.id)]
    assert fake.items[other_id].status == "pending"
    assert fake.count("PUT", f"{QUEUE}/i/{other_id}/cancel") == 0


# -- what answers mean --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capture", "status"),
    [
        ("rec_queue_item_pending.json", "queued"),
        ("queue_item_blank_first_poll.json", "running"),
        ("queue_item_blank_completed.json", "done"),
        ("queue_item_sdxl_missing_model_failed.json", "failed"),
        ("queue_item_after_cancel_in_progress.json", "canceled"),
        ("queue_item_cancel_pending.json", "canceled"),
    ],
)
def test_captured_items_map_to_job_statuses(captures, capture, status):
    item = captures.body(capture)
    update = item_update(item, ItemFacts("blank", model="m"), "g")
    assert update.status == status
    if status == "done":
        assert update.result["image_name"] == update.extra["image_name"]
        assert update.generated_size == tuple(update.result["size"])
        assert update.model == "m"
    if status == "failed":
        error = update.error
        assert isinstance(error, QueueItemError)
        assert (error.error_type, error.work) == ("Exception", "ran")
        assert error.error_message.startswith("Unknown model:")
    if status == "canceled":
        assert isinstance(update.error, JobCanceledError)


def test_status_table():
    assert dict(STATUSES) == {
        "pending": "queued",
        "in_progress": "running",
        "completed": "done",
        "failed": "failed",
        "canceled": "canceled",
    }
    assert job_status("something new") == "running"  # the item exists: keep polling


def test_a_template_without_seed_says_the_seed_was_not_used(fake, make_generator, blank_template):
    del blank_template["nodes"]["blank"]["color"]
    gen = make_generator(graph_template=blank_template)
    image_id = gen.generate_image("x", width=64, height=64, seed=5)
    info = gen.image_info(image_id)
    assert info.seed is None
    assert info.as_metadata()["seed"] == "not used"


# -- fetching -----------------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_fetch_fits_an_image_of_another_size_and_streams_the_rest(fake, make_generator):
    fake.images["wide.png"] = png(512, 256)
    gen = make_generator()
    ref = JobRef("1", {"size": [300, 300], "output_node": OUTPUT_NODE})
    fitted = gen.fetch_image(ref, {"image_name": "wide.png", "size": [512, 256]})
    assert isinstance(fitted, bytes)
    with Image.open(io.BytesIO(fitted)) as img:
        assert img.size == (300, 300)
        assert img.text["imagegen:resized_from"] == "512x256"

    same = gen.fetch_image(
        JobRef("1", {"size": [512, 256]}), {"image_name": "wide.png", "size": [512, 256]}
    )
    assert not isinstance(same, bytes)  # streamed, untouched
    assert b"".join(same) == fake.images["wide.png"]

    native = make_generator(keep_native_size=True)
    kept = native.fetch_image(ref, {"image_name": "wide.png", "size": [512, 256]})
    assert b"".join(kept) == fake.images["wide.png"]

    unknown = gen.fetch_image(ref, {"image_name": "wide.png"})  # size learnt from the image
    with Image.open(io.BytesIO(unknown)) as img:
        assert img.size == (300, 300)


def test_fetch_of_a_missing_image_is_a_404(fake, make_generator):
    gen = make_generator()
    with pytest.raises(InvokeAIRequestError) as caught:
        b"".join(gen.fetch_image(JobRef("1"), {"image_name": "nope.png"}))
    assert caught.value.status_code == 404


# -- what errors say about the work --------------------------------------------------------


def test_enqueue_errors_say_whether_the_image_may_exist(sdxl, make_generator):
    fake = sdxl
    fake.add_fault("enqueue", *["connect"] * 10)
    with pytest.raises(GeneratorConnectionError) as refused:
        make_generator(default_model="sdxl-base", retries=1).submit("x")
    assert refused.value.work == "not_sent"
    assert refused.value.generator == "invokeai"  # named by the core's choke point

    fake.scripted.clear()
    fake.add_fault("enqueue", "dropped")
    with pytest.raises(GeneratorConnectionError) as dropped:
        make_generator(default_model="sdxl-base").submit("x")
    assert dropped.value.work == "unknown"

    fake.reject_next_enqueue = "malformed_bad_field_value_noise_width.json"
    with pytest.raises(InvokeAIRequestError) as rejected:
        make_generator(default_model="sdxl-base").submit("x")
    assert rejected.value.work == "not_sent"

    fake.script = ["pending"]
    job = make_generator(default_model="sdxl-base").submit("x")
    fake.add_fault("poll", *["connect"] * 10)
    with pytest.raises(GeneratorConnectionError) as lost:
        job.refresh()
    assert lost.value.work == "queued"


def test_generator_takes_an_injected_transport_and_clock(clock):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"version": "6.14.2"})

    gen = InvokeAIGenerator(
        {"base_url": "http://nowhere.test:9090", "events": False},
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    assert gen.test_connection() is True
    assert seen == ["/api/v1/app/version"]
    assert gen.clock is clock
    gen.close()
