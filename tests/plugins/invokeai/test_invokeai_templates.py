"""Custom graphs (``graph_template``): loading, placeholders, output node, running them."""

from __future__ import annotations

import json
import re

import pytest
from invokeai_fake import model_record
from PIL import Image

from degrees37_imagegen import ConfigError, read_png_text
from degrees37_imagegen_invokeai._templates import GraphTemplate, TemplateError

RESIZE_PIPELINE = {
    "id": "pipe",
    "nodes": {
        "blank": {"id": "blank", "type": "blank_image", "width": 512, "height": 512},
        "resize": {
            "id": "resize",
            "type": "img_resize",
            "width": "{{width}}",
            "height": "{{height}}",
            "resample_mode": "lanczos",
            "is_intermediate": True,
        },
        "out": {"id": "out", "type": "save_image", "is_intermediate": False},
    },
    "edges": [
        {
            "source": {"node_id": "blank", "field": "image"},
            "destination": {"node_id": "resize", "field": "image"},
        },
        {
            "source": {"node_id": "resize", "field": "image"},
            "destination": {"node_id": "out", "field": "image"},
        },
    ],
}

# A workflow as the workflow editor saves it (format 3.0.0): nodes as a list with "data".
WORKFLOW = {
    "id": "wf-1",
    "name": "blank then resize",
    "author": "",
    "description": "",
    "version": "1.0.0",
    "contact": "",
    "tags": "",
    "notes": "",
    "exposedFields": [],
    "meta": {"version": "3.0.0", "category": "user"},
    "nodes": [
        {
            "id": "n-blank",
            "type": "invocation",
            "data": {
                "id": "n-blank",
                "version": "1.2.2",
                "label": "",
                "notes": "",
                "type": "blank_image",
                "inputs": {
                    "board": {"name": "board", "label": "", "value": "auto"},
                    "width": {"name": "width", "label": "", "value": 256},
                    "height": {"name": "height", "label": "", "value": 256},
                    "mode": {"name": "mode", "label": "", "value": "RGB"},
                    "color": {
                        "name": "color",
                        "label": "",
                        "value": {"r": 0, "g": 0, "b": 0, "a": 255},
                    },
                },
                "isOpen": True,
                "isIntermediate": True,
                "useCache": True,
            },
            "position": {"x": 0, "y": 0},
        },
        {
            "id": "n-resize",
            "type": "invocation",
            "data": {
                "id": "n-resize",
                "version": "1.2.2",
                "label": "",
                "notes": "",
                "type": "img_resize",
                "inputs": {
                    "board": {"name": "board", "label": ""},
                    "image": {"name": "image", "label": ""},
                    "width": {"name": "width", "label": "", "value": "{{width}}"},
                    "height": {"name": "height", "label": "", "value": "{{height}}"},
                    "resample_mode": {"name": "resample_mode", "label": "", "value": "bicubic"},
                },
                "isOpen": True,
                "isIntermediate": False,
                "useCache": True,
            },
            "position": {"x": 400, "y": 0},
        },
        {
            "id": "n-notes",
            "type": "notes",
            "data": {"id": "n-notes", "label": "", "notes": "resize a blank image"},
            "position": {"x": 0, "y": 300},
        },
    ],
    "edges": [
        {
            "id": "e1",
            "type": "default",
            "source": "n-blank",
            "target": "n-resize",
            "sourceHandle": "image",
            "targetHandle": "image",
        },
        {"id": "e2", "type": "collapsed", "source": "n-blank", "target": "n-resize"},
    ],
}


def test_placeholders_become_values_of_their_type(blank_template):
    template = GraphTemplate.load(
        {
            "nodes": {
                "p": {"id": "p", "type": "string", "value": "{{prompt}}, by {{ negative_prompt }}"},
                "s": {"id": "s", "type": "integer", "value": "{{seed}}"},
                "m": {"id": "m", "type": "main_model_loader", "model": "{{model}}"},
            },
            "edges": [],
        },
        output_node="p",
    )
    model = {"key": "k", "hash": "h", "name": "n", "base": "sd-1", "type": "main"}
    graph = template.render(
        {"prompt": "a cat", "negative_prompt": "a dog", "seed": 7, "model": model}
    )
    assert graph["nodes"]["p"]["value"] == "a cat, by a dog"
    assert graph["nodes"]["s"]["value"] == 7
    assert graph["nodes"]["m"]["model"] == model
    assert template.placeholders == {"prompt", "negative_prompt", "seed", "model"}
    assert template.graph["nodes"]["s"]["value"] == "{{seed}}"  # the template is unchanged


def test_output_node_is_the_visible_sink_and_made_uncached():
    template = GraphTemplate.load(RESIZE_PIPELINE)
    assert template.output_node == "out"
    graph = template.render({"width": 100, "height": 50}, board_id="b1")
    out = graph["nodes"]["out"]
    assert (out["use_cache"], out["is_intermediate"], out["board"]) == (
        False,
        False,
        {"board_id": "b1"},
    )
    assert graph["nodes"]["resize"]["width"] == 100


def test_ambiguous_output_needs_graph_output_node():
    graph = {
        "nodes": {
            "a": {"id": "a", "type": "blank_image"},
            "b": {"id": "b", "type": "blank_image"},
        },
        "edges": [],
    }
    with pytest.raises(TemplateError, match="set graph_output_node"):
        GraphTemplate.load(graph)
    assert GraphTemplate.load(graph, output_node="b").output_node == "b"
    with pytest.raises(TemplateError, match="output node 'c' is not in the graph"):
        GraphTemplate.load(graph, output_node="c")


@pytest.mark.parametrize(
    ("graph", "problem"),
    [
        ({"nodes": {}}, "has no nodes"),
        ({"edges": []}, "has no 'nodes'"),
        ({"nodes": {"a": {"id": "a"}}}, "node 'a' has no 'type'"),
        ({"nodes": {"a": {"id": "b", "type": "add"}}}, "has the id 'b'"),
        (
            {"nodes": {"a": {"id": "a", "type": "add", "a": "{{sed}}"}}},
            "unknown placeholder {{sed}}",
        ),
        (
            {
                "nodes": {"a": {"id": "a", "type": "add"}},
                "edges": [
                    {
                        "source": {"node_id": "a", "field": "value"},
                        "destination": {"node_id": "z", "field": "a"},
                    }
                ],
            },
            "missing node 'z'",
        ),
        ([1, 2], "must be the path of a JSON file or a mapping, got list"),
        ({"graph": [1, 2]}, "has no 'nodes'"),
    ],
)
def test_bad_templates_say_why(graph, problem):
    with pytest.raises(TemplateError, match=re.escape(problem)):
        GraphTemplate.load(graph)


def test_template_from_the_answers_invokeai_hands_out(captures, tmp_path):
    # An image's /workflow answer holds the graph as a JSON string.
    answer = {"workflow": None, "graph": json.dumps(RESIZE_PIPELINE)}
    assert GraphTemplate.load(answer).output_node == "out"
    # A saved enqueue request.
    request = captures.record("enqueue_pipeline_resize_save.json")["request"]["json"]
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(request))
    template = GraphTemplate.load(str(path))
    assert (template.output_node, template.source) == ("out", str(path))


def test_workflow_editor_file_is_converted_like_the_web_ui(schema):
    template = GraphTemplate.load(WORKFLOW)
    graph = template.render({"width": 64, "height": 32})
    assert template.output_node == "n-resize"
    assert set(graph["nodes"]) == {"n-blank", "n-resize"}  # notes dropped
    blank = graph["nodes"]["n-blank"]
    assert "board" not in blank  # "auto" is the web UI's own choice, left out
    assert (blank["is_intermediate"], blank["use_cache"], blank["width"]) == (True, True, 256)
    assert graph["edges"] == [
        {
            "source": {"node_id": "n-blank", "field": "image"},
            "destination": {"node_id": "n-resize", "field": "image"},
        }
    ]
    body = {"batch": {"graph": graph, "runs": 1}, "prepend": False}
    assert schema.validate_enqueue(body) == []


def test_unreadable_template_is_a_config_error_at_construction(tmp_path, fake, make_generator):
    with pytest.raises(ConfigError) as caught:
        make_generator(graph_template=str(tmp_path / "missing.json"))
    assert caught.value.key == "graph_template"
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="is not JSON"):
        make_generator(graph_template=str(tmp_path / "bad.json"))
    with pytest.raises(ConfigError, match="only makes sense with graph_template"):
        make_generator(graph_output_node="out")
    assert fake.calls == []


# -- running templates --------------------------------------------------------------------


def test_model_free_template_runs_without_models(fake, make_generator, blank_template, tmp_path):
    gen = make_generator(graph_template=blank_template, board_name="blank")
    name = gen.generate_image("ignored by this graph", width=1080, height=1920, seed=5)
    assert fake.count("GET", "/api/v2/models/") == 0
    (body,) = fake.enqueued
    blank = body["batch"]["graph"]["nodes"]["blank"]
    assert (blank["width"], blank["height"]) == (1080, 1920)
    assert (blank["use_cache"], blank["is_intermediate"]) == (False, False)
    assert blank["board"] == {"board_id": fake.boards[0]["board_id"]}
    assert "data" not in body["batch"]
    info = gen.image_info(name)
    assert (info.generated_width, info.generated_height, info.model) == (1080, 1920, None)
    assert info.extra["graph_template"] == "inline"
    gen.job(name).save(tmp_path / "out.png", metadata=False)
    image_name = info.extra["image_name"]
    assert (tmp_path / "out.png").read_bytes() == fake.images[image_name]  # no re-encoding


def test_template_output_of_another_size_is_fitted(fake, make_generator, tmp_path):
    fixed = json.loads(json.dumps(RESIZE_PIPELINE))
    fixed["nodes"]["resize"].update(width=512, height=256)
    gen = make_generator(graph_template=fixed)
    name = gen.generate_image("x", width=300, height=300)
    assert (gen.image_info(name).generated_width, gen.image_info(name).generated_height) == (
        512,
        256,
    )
    gen.download_image(name, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as img:
        assert img.size == (300, 300)
    assert read_png_text(tmp_path / "out.png")["imagegen:resized_from"] == "512x256"


def test_template_with_model_placeholder_uses_the_configured_model(fake, make_generator, schema):
    fake.models = [model_record("sd15", "sd-1", key="k-sd15")]
    template = {
        "nodes": {
            "loader": {"id": "loader", "type": "main_model_loader", "model": "{{model}}"},
            "blank": {
                "id": "blank",
                "type": "blank_image",
                "width": "{{width}}",
                "height": "{{height}}",
            },
        },
        "edges": [],
    }
    gen = make_generator(graph_template=template, graph_output_node="blank", default_model="sd15")
    name = gen.generate_image("x", width=64, height=64)
    loader = fake.enqueued[0]["batch"]["graph"]["nodes"]["loader"]
    assert loader["model"]["key"] == "k-sd15"
    assert set(loader["model"]) == {"key", "hash", "name", "base", "type"}
    assert gen.image_info(name).model == "sd15"
