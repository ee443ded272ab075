"""Input images, img2img and LoRAs on InvokeAI, offline: the fake answers uploads as the real
server does and refuses (fails the test on) any graph the recorded schema rejects."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from invokeai_fake import model_record
from invokeai_uploads import uploads_of
from PIL import Image

from degrees37_imagegen import InvalidRequestError
from degrees37_imagegen.images import InputImage, load_image
from degrees37_imagegen_invokeai._upload import upload_image


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def lora_record(name: str, base: str = "sdxl", key: str | None = None) -> dict[str, Any]:
    record = model_record(name, base, key)
    record.update(type="lora", path=f"{base}/lora/{name}.safetensors", format="lycoris")
    return record


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_CACHE_DIR", str(tmp_path / "cache"))


def enqueued_graph(fake: Any) -> dict[str, Any]:
    return fake.enqueued[-1]["batch"]["graph"]  # type: ignore[no-any-return]


def edges_into(graph: dict[str, Any], node: str, field: str) -> list[tuple[str, str]]:
    return [
        (e["source"]["node_id"], e["source"]["field"])
        for e in graph["edges"]
        if e["destination"] == {"node_id": node, "field": field}
    ]


def test_builtin_img2img_is_the_web_uis_graph(fake, make_generator, schema) -> None:
    fake.models = [model_record("Juggernaut XL v9")]
    generator = make_generator(default_model="Juggernaut XL v9")
    job = generator.submit("a fox", width=1024, height=1024, init_image=png(), strength=0.6)
    body = fake.enqueued[-1]
    assert schema.validate_enqueue(body) == []
    graph = body["batch"]["graph"]
    assert schema.check_graph(graph, body["batch"].get("data")) == []
    [upload] = uploads_of(fake)
    assert upload["params"] == {"image_category": "general", "is_intermediate": "true"}
    resize = graph["nodes"]["init_image_resize"]
    assert resize["type"] == "img_resize"
    assert resize["image"] == {"image_name": upload["image_name"]}
    assert (resize["width"], resize["height"]) == (1024, 1024)
    assert graph["nodes"]["init_image_i2l"]["type"] == "i2l"
    assert edges_into(graph, "init_image_i2l", "vae") == [("sdxl_model_loader", "vae")]
    assert edges_into(graph, "denoise_latents", "latents") == [("init_image_i2l", "latents")]
    assert graph["nodes"]["denoise_latents"]["denoising_start"] == pytest.approx(0.4)
    metadata = graph["nodes"]["core_metadata"]
    assert metadata["generation_mode"] == "sdxl_img2img"
    assert metadata["strength"] == 0.6
    # The job saves as JSON: the image is a stored reference, not bytes.
    options = json.loads(json.dumps(job.to_dict()))["request"]["options"]
    assert Path(options["init_image"]).read_bytes() == upload["data"]


def test_sd1_img2img_with_loras_is_valid(fake, make_generator, schema) -> None:
    fake.models = [
        model_record("SD 1.5", base="sd-1"),
        lora_record("detail", base="sd-1", key="lora-key-1"),
        lora_record("ink", base="sd-1"),
    ]
    generator = make_generator(default_model="SD 1.5", loras=["detail:0.8"])
    generator.submit("a fox", width=512, height=512, init_image=png(), strength=1)
    graph = enqueued_graph(fake)
    assert schema.check_graph(graph, fake.enqueued[-1]["batch"].get("data")) == []
    assert graph["nodes"]["lora_loader"]["type"] == "lora_collection_loader"
    assert graph["nodes"]["lora_selector_0"]["lora"]["key"] == "lora-key-1"
    assert graph["nodes"]["denoise_latents"]["denoising_start"] == 0
    # A per-call list replaces the setting's, found by key or by name.
    generator.submit("a fox", width=512, height=512, loras=[{"name": "ink", "weight": 0.5}])
    graph = enqueued_graph(fake)
    assert [n["lora"]["name"] for n in graph["nodes"].values() if n["type"] == "lora_selector"] == [
        "ink"
    ]


def test_sdxl_loras_sit_between_the_loader_and_its_users(fake, make_generator, schema) -> None:
    fake.models = [model_record("Juggernaut XL v9"), lora_record("detail"), lora_record("ink")]
    generator = make_generator(default_model="Juggernaut XL v9")
    generator.submit("a fox", width=1024, height=1024, loras=["detail:0.8", "ink"])
    body = fake.enqueued[-1]
    assert schema.validate_enqueue(body) == []
    graph = body["batch"]["graph"]
    assert schema.check_graph(graph, body["batch"].get("data")) == []
    assert graph["nodes"]["lora_loader"]["type"] == "sdxl_lora_collection_loader"
    assert edges_into(graph, "denoise_latents", "unet") == [("lora_loader", "unet")]
    assert edges_into(graph, "pos_cond", "clip2") == [("lora_loader", "clip2")]
    assert sorted(edges_into(graph, "lora_collector", "item")) == [
        ("lora_selector_0", "lora"),
        ("lora_selector_1", "lora"),
    ]
    weights = [m["weight"] for m in graph["nodes"]["core_metadata"]["loras"]]
    assert weights == [0.8, 1.0]


def test_an_unknown_lora_is_named_with_what_the_server_has_before_anything_is_sent(
    fake, make_generator
) -> None:
    fake.models = [
        model_record("Juggernaut XL v9"),
        lora_record("detail"),
        lora_record("old", "sd-1"),
    ]
    generator = make_generator(default_model="Juggernaut XL v9")
    with pytest.raises(InvalidRequestError) as caught:
        generator.submit("a fox", init_image=png(), loras=["nope:0.5"])
    assert str(caught.value) == "loras: InvokeAI has no sdxl LoRA 'nope'; its sdxl LoRAs: detail"
    with pytest.raises(InvalidRequestError, match="'old' \\(it is a sd-1 LoRA\\)"):
        generator.submit("a fox", loras=["old"])
    assert fake.enqueued == []
    assert uploads_of(fake) == []


def test_one_image_is_uploaded_once_per_generator(fake, make_generator, tmp_path) -> None:
    fake.models = [model_record("Juggernaut XL v9")]
    path = tmp_path / "ref.png"
    path.write_bytes(png())
    generator = make_generator(default_model="Juggernaut XL v9")
    generator.submit("one", init_image=path)
    generator.submit("two", init_image=str(path))
    generator.submit("three", init_image=Image.open(io.BytesIO(png())))  # the same pixels
    generator.submit("four", init_image=png((0, 0, 255)))
    names = [n["image"]["image_name"] for n in _resizes(fake)]
    assert names[0] == names[1] == names[2] != names[3]
    assert len(uploads_of(fake)) == 2


def test_an_image_on_the_server_is_found_by_its_hash_not_sent_again(
    fake, make_generator, tmp_path
) -> None:
    """A rerun (another generator, another process) finds the upload of the same content
    by the hash in its metadata, and checks that hash before using it."""
    fake.models = [model_record("Juggernaut XL v9")]
    path = tmp_path / "ref.png"
    path.write_bytes(png())
    make_generator(default_model="Juggernaut XL v9").submit("one", init_image=path)
    (upload,) = uploads_of(fake)
    assert upload["metadata"] == {"degrees37_imagegen_input": load_image(path).sha256}
    make_generator(default_model="Juggernaut XL v9").submit("two", init_image=path)
    assert len(uploads_of(fake)) == 1
    assert _resizes(fake)[1]["image"]["image_name"] == upload["image_name"]
    make_generator(default_model="Juggernaut XL v9").submit("three", init_image=png((0, 0, 9)))
    assert len(uploads_of(fake)) == 2  # other content: uploaded


def test_an_upload_whose_answer_was_lost_is_found_not_sent_again(
    fake, make_generator, tmp_path
) -> None:
    fake.models = [model_record("Juggernaut XL v9")]
    fake.add_fault("upload", "lost")  # stored, the answer lost
    generator = make_generator(default_model="Juggernaut XL v9")
    generator.submit("one", init_image=png())
    (upload,) = uploads_of(fake)
    assert _resizes(fake)[0]["image"]["image_name"] == upload["image_name"]


def test_a_search_that_finds_another_image_is_not_trusted(
    fake, make_generator, tmp_path, monkeypatch
) -> None:
    """A server that ignored ``search_term`` would list any image first: the found image's
    own metadata must name the content, or it is uploaded."""
    from degrees37_imagegen_invokeai._fake import server, uploads

    fake.models = [model_record("Juggernaut XL v9")]
    make_generator(default_model="Juggernaut XL v9").submit("one", init_image=png((1, 2, 3)))

    def ignoring_the_term(fake_: Any, request: httpx.Request) -> httpx.Response:
        unsearched = httpx.Request("GET", request.url.copy_remove_param("search_term"))
        return uploads.answer_image_search(fake_, unsearched)

    monkeypatch.setattr(server, "answer_image_search", ignoring_the_term)
    make_generator(default_model="Juggernaut XL v9").submit("two", init_image=png((9, 9, 9)))
    _, second = uploads_of(fake)
    assert _resizes(fake)[1]["image"]["image_name"] == second["image_name"]


def _resizes(fake: Any) -> list[dict[str, Any]]:
    return [body["batch"]["graph"]["nodes"]["init_image_resize"] for body in fake.enqueued]


@pytest.mark.parametrize(
    "field", ["{{init_image}}", {"image_name": "{{init_image}}"}], ids=["whole", "image_name"]
)
def test_a_template_takes_the_image_in_an_image_field(
    fake, make_generator, schema, tmp_path, field: Any
) -> None:
    template = {
        "id": "blur",
        "nodes": {
            "blur": {"id": "blur", "type": "img_blur", "image": field, "radius": 4},
            "size": {"id": "size", "type": "img_resize", "width": "{{width}}",
                     "height": "{{height}}"},
        },
        "edges": [
            {"source": {"node_id": "blur", "field": "image"},
             "destination": {"node_id": "size", "field": "image"}}
        ],
    }  # fmt: skip
    generator = make_generator(graph_template=template)
    job = generator.submit("x", width=96, height=64, init_image=png())
    graph = enqueued_graph(fake)
    assert schema.check_graph(graph) == []
    assert graph["nodes"]["blur"]["image"] == {"image_name": uploads_of(fake)[0]["image_name"]}
    job.wait().save(tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (96, 64)


def test_other_named_images_come_from_images(fake, make_generator, schema) -> None:
    template = {
        "id": "paste",
        "nodes": {
            "paste": {"id": "paste", "type": "img_paste", "base_image": "{{init_image}}",
                      "image": {"image_name": "{{logo}}"}, "x": 0, "y": 0},
        },
        "edges": [],
    }  # fmt: skip
    generator = make_generator(graph_template=template)
    with pytest.raises(InvalidRequestError, match="needs the image init_image, logo"):
        generator.submit("x", width=64, height=64)
    generator.submit("x", width=64, height=64, init_image=png(), images={"logo": png((0, 0, 0))})
    graph = enqueued_graph(fake)
    assert schema.check_graph(graph) == []
    base, logo = (u["image_name"] for u in uploads_of(fake))
    assert graph["nodes"]["paste"]["base_image"] == {"image_name": base}
    assert graph["nodes"]["paste"]["image"] == {"image_name": logo}


def test_an_image_without_a_place_is_refused(fake, make_generator, blank_template) -> None:
    generator = make_generator(graph_template=blank_template)
    with pytest.raises(InvalidRequestError, match="no place for the image init_image"):
        generator.submit("x", width=64, height=64, init_image=png())
    assert fake.calls == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "init_image: no such file: "),
        (b"", "is empty (0 bytes), not an image"),
        (b"hello, not an image", "is not an image"),
    ],
    ids=["missing", "empty", "not-an-image"],
)
def test_a_bad_image_is_one_line_before_anything_is_sent(
    fake, make_generator, tmp_path, content: bytes | None, message: str
) -> None:
    fake.models = [model_record("Juggernaut XL v9")]
    path = tmp_path / "in.png"
    if content is not None:
        path.write_bytes(content)
    generator = make_generator(default_model="Juggernaut XL v9")
    with pytest.raises(InvalidRequestError) as caught:
        generator.submit("x", init_image=path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert fake.calls == []


def test_the_servers_own_refusal_of_an_upload_is_an_invalid_request(fake, make_generator) -> None:
    generator = make_generator()
    good = load_image(png())
    garbage = InputImage(b"\x89PNG garbage", good.sha256, "PNG", 1, 1, "garbage.png")
    with pytest.raises(InvalidRequestError, match=r"refused the input image garbage\.png: Failed"):
        upload_image(generator._api, garbage, generator.retrying, generator.name)


def test_list_models_and_check(fake, make_generator, captures) -> None:
    generator = make_generator()
    assert generator.list_models("models") == []
    reason = generator.check_ready()
    assert reason is not None
    assert "InvokeAI has no SDXL or SD 1.x model" in reason
    fake.models = [model_record("Juggernaut XL v9"), lora_record("detail")]
    assert generator.list_models("models") == ["Juggernaut XL v9"]
    assert generator.list_models("loras") == ["detail"]
    assert generator.check_ready() is None
    assert "dpmpp_2m_k" in generator.list_models("schedulers")  # known list: no schema here
    openapi = (captures.folder / "openapi.json").read_bytes()
    fake.router.route(method="GET", path="/openapi.json").mock(
        return_value=httpx.Response(
            200, content=openapi, headers={"content-type": "application/json"}
        )
    )
    assert generator.list_models("samplers")[:3] == ["ddim", "ddpm", "deis"]
    with pytest.raises(InvalidRequestError, match="unknown kind 'vae'"):
        generator.list_models("vae")
