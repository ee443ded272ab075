"""Every graph the generator builds validates against InvokeAI's real ``openapi.json``.

The validator is first checked against the server itself: for every captured enqueue
request it must agree with what the server answered (200 or 422).
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import httpx
import pytest
from invokeai_fake import CAPTURES, QUEUE, model_record

from degrees37_imagegen_invokeai._graphs import (
    GraphRequest,
    build_enqueue_body,
    build_text_to_image,
)
from degrees37_imagegen_invokeai._templates import GraphTemplate

ENQUEUE_CAPTURES = sorted(
    Path(p).name
    for p in glob.glob(str(CAPTURES / "*.json"))
    if Path(p).name.startswith(("enqueue_", "malformed_", "rec_enqueue"))
)

# Where the validator is stricter than the server, on purpose.
STRICTER = {
    # The server ignores the extra model fields; the validator flags unknown properties.
    "enqueue_sdxl_model_extra_fields.json": "model",
    # Accepted at enqueue, fails at run time; the validator wants required inputs connected.
    "malformed_missing_required_input_edge.json": "required input",
}

SDXL_MODEL = {
    "key": "00000000-0000-0000-0000-000000000000",
    "hash": "blake3:deadbeef",
    "name": "fake-sdxl",
    "base": "sdxl",
    "type": "main",
}


def request(model=SDXL_MODEL, **overrides):
    values = {
        "positive_prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "width": 1024,
        "height": 1024,
        "seed": 123,
        "steps": 30,
        "cfg_scale": 7.5,
        "scheduler": "dpmpp_2m_k",
        "model": model,
        "board_id": "007401e8-fabb-4312-9565-0bfb89a896cf",
    }
    values.update(overrides)
    return GraphRequest(**values)


def body_for(req):
    graph, data = build_text_to_image(req)
    return build_enqueue_body(graph, data, origin="o", destination="d")


@pytest.mark.parametrize("name", ENQUEUE_CAPTURES)
def test_validator_agrees_with_the_real_server(captures, schema, name):
    record = captures.record(name)
    body = record["request"]["json"]
    errors = schema.validate_enqueue(body) if isinstance(body, dict) else ["not JSON"]
    if name in STRICTER:
        assert errors
        assert STRICTER[name] in " ".join(errors)
        return
    if record["status"] == 200:
        assert errors == []
    else:
        assert record["status"] == 422
        assert errors, "the server refused this request"


def test_validator_is_lenient_where_the_schema_is(captures, schema):
    from invokeai_schema import OpenAPISchema

    lenient = OpenAPISchema(schema.document, strict=False)
    body = captures.record("enqueue_sdxl_model_extra_fields.json")["request"]["json"]
    assert lenient.validate_enqueue(body) == []


def test_web_ui_example_request_validates(captures, schema):
    example = json.loads((CAPTURES / "sdxl_batch_request_example.json").read_text())
    assert schema.validate_enqueue(example) == []


@pytest.mark.parametrize("base", ["sdxl", "sd-1", "sd-2"])
@pytest.mark.parametrize(("width", "height"), [(1024, 1024), (768, 1344), (1344, 768), (64, 64)])
def test_built_in_graphs_validate(schema, base, width, height):
    body = body_for(request(model={**SDXL_MODEL, "base": base}, width=width, height=height))
    assert schema.validate_enqueue(body) == []


def test_graph_without_board_and_with_fp32_vae_validates(schema):
    body = body_for(request(board_id=None, vae_fp32=True, steps=1, cfg_scale=1.0))
    assert schema.validate_enqueue(body) == []
    assert "board" not in body["batch"]["graph"]["nodes"]["canvas_output"]


def _strip_ids(value):
    """The example's ids are ``role:random``; ours are the roles."""
    text = json.dumps(value)
    return json.loads(re.sub(r'"([a-z_]+):[A-Za-z0-9_-]{10}"', r'"\1"', text))


def test_sdxl_graph_has_the_web_uis_shape(captures):
    example = _strip_ids(json.loads((CAPTURES / "sdxl_batch_request_example.json").read_text()))
    ours = body_for(request())
    ex_graph, our_graph = example["batch"]["graph"], ours["batch"]["graph"]
    assert set(our_graph["nodes"]) == set(ex_graph["nodes"])
    for node_id, node in ex_graph["nodes"].items():
        assert our_graph["nodes"][node_id] == node, node_id
    edge_set = {json.dumps(e, sort_keys=True) for e in ex_graph["edges"]}
    assert {json.dumps(e, sort_keys=True) for e in our_graph["edges"]} == edge_set
    assert ours["batch"]["data"] == example["batch"]["data"]
    assert ours["batch"]["runs"] == 1
    assert ours["prepend"] is False


def test_sd1_graph_has_the_web_uis_nodes(schema):
    graph = body_for(request(model={**SDXL_MODEL, "base": "sd-1"}))["batch"]["graph"]
    types = {node["type"] for node in graph["nodes"].values()}
    assert {"main_model_loader", "clip_skip", "compel", "noise", "denoise_latents", "l2i"} <= types
    assert "sdxl_compel_prompt" not in types


def test_only_the_output_node_is_uncached_and_visible():
    graph = body_for(request())["batch"]["graph"]
    visible = [n for n, node in graph["nodes"].items() if not node["is_intermediate"]]
    uncached = [n for n, node in graph["nodes"].items() if not node["use_cache"]]
    assert visible == ["canvas_output"]
    assert uncached == ["canvas_output"]


def test_rendered_templates_validate(schema, blank_template):
    template = GraphTemplate.load(blank_template)
    graph = template.render({"width": 1080, "height": 1920}, board_id="b")
    body = build_enqueue_body(graph, None, origin="o", destination="d")
    assert schema.validate_enqueue(body) == []


def test_model_fixtures_match_the_model_list_schema(schema):
    models = {
        "models": [
            model_record("sdxl-base", "sdxl"),
            model_record("sd15", "sd-1", steps=20, cfg_scale=6.5, scheduler="euler_a"),
        ]
    }
    assert schema.validate_component(models, "ModelsList") == []


def test_the_fake_refuses_a_graph_the_server_would_refuse(fake, captures):
    body = captures.record("malformed_bad_field_value_noise_width.json")["request"]["json"]
    with pytest.raises(AssertionError, match="multiple of 8"):
        httpx.post(f"{fake.base_url}{QUEUE}/enqueue_batch", json=body)
