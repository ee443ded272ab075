"""Templates, mapping, sampler names, addresses and settings: all checked at creation."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from comfyui_fake import EMPTY_IMAGE_TEMPLATE

from degrees37_imagegen import ConfigError, InvalidRequestError, UnknownSettingWarning
from degrees37_imagegen_comfyui import ComfyUIGenerator
from degrees37_imagegen_comfyui._api import parse_server_address
from degrees37_imagegen_comfyui._samplers import resolve_sampler
from degrees37_imagegen_comfyui._workflow import WorkflowTemplate, builtin_workflow

# ComfyUI's standard text-to-image workflow as "Export (API)" writes it (from its
# script_examples), without titles: the built-in mapping must find everything by the graph.
STANDARD: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "cfg": 8,
            "denoise": 1,
            "latent_image": ["5", 0],
            "model": ["4", 0],
            "negative": ["7", 0],
            "positive": ["6", 0],
            "sampler_name": "euler",
            "scheduler": "normal",
            "seed": 8566257,
            "steps": 20,
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
    },
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"batch_size": 1, "height": 512, "width": 512},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"clip": ["4", 1], "text": "masterpiece best quality girl"},
    },
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "bad hands"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
}

VALUES = {
    "prompt": "a lighthouse",
    "negative_prompt": "fog",
    "width": 640,
    "height": 384,
    "seed": 42,
    "steps": 12,
    "cfg": 5.5,
    "sampler": "dpmpp_2m",
    "scheduler": "karras",
    "checkpoint": "sd15.safetensors",
}


def where(template: WorkflowTemplate) -> dict[str, list[str]]:
    return {f: [str(t) for t in ts] for f, ts in template.targets.items()}


def make(template: Any, **settings: Any) -> ComfyUIGenerator:
    return ComfyUIGenerator({"workflow_template": template, **settings}, name="comfy")


# -- the built-in mapping ------------------------------------------------------------------


def test_builtin_mapping_follows_the_standard_graph() -> None:
    template = WorkflowTemplate(STANDARD)
    assert where(template) == {
        "seed": ["3.seed"],
        "steps": ["3.steps"],
        "cfg": ["3.cfg"],
        "sampler": ["3.sampler_name"],
        "scheduler": ["3.scheduler"],
        "prompt": ["6.text"],
        "negative_prompt": ["7.text"],
        "width": ["5.width"],
        "height": ["5.height"],
        "checkpoint": ["4.ckpt_name"],
    }
    workflow = template.render(VALUES)
    assert workflow["6"]["inputs"]["text"] == "a lighthouse"
    assert workflow["7"]["inputs"]["text"] == "fog"
    assert workflow["5"]["inputs"] == {"batch_size": 1, "height": 384, "width": 640}
    assert workflow["3"]["inputs"]["seed"] == 42
    assert workflow["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert workflow["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert workflow["3"]["inputs"]["positive"] == ["6", 0]  # links untouched
    assert STANDARD["6"]["inputs"]["text"] == "masterpiece best quality girl"  # not mutated


def test_builtin_workflow_is_the_standard_one_with_titles() -> None:
    generator = ComfyUIGenerator({}, name="comfy")
    workflow = generator.template.nodes
    assert sorted(node["class_type"] for node in workflow.values()) == sorted(
        node["class_type"] for node in STANDARD.values()
    )
    assert generator.template.has("checkpoint")
    assert generator._settings["checkpoint"] == "v1-5-pruned-emaonly.safetensors"


def test_builtin_mapping_follows_loras_and_guidance() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": "x.safetensors",
            "strength_model": 1.0,
            "strength_clip": 1.0,
        },
    }
    workflow["11"] = {
        "class_type": "FluxGuidance",
        "inputs": {"conditioning": ["6", 0], "guidance": 3.5},
    }
    workflow["3"]["inputs"]["model"] = ["10", 0]
    workflow["3"]["inputs"]["positive"] = ["11", 0]
    template = WorkflowTemplate(workflow)
    assert where(template)["prompt"] == ["6.text"]
    assert where(template)["checkpoint"] == ["4.ckpt_name"]


def test_every_literal_seed_is_replaced() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["12"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "noise_seed": 7,
            "steps": 10,
            "cfg": 7,
            "sampler_name": "euler",
            "scheduler": "normal",
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["3", 0],
            "add_noise": "enable",
            "start_at_step": 0,
            "end_at_step": 10,
            "return_with_leftover_noise": "disable",
        },
    }
    template = WorkflowTemplate(workflow)
    assert where(template)["seed"] == ["3.seed", "12.noise_seed"]
    # Two samplers: the settings go to the one that starts from the empty latent.
    assert where(template)["steps"] == ["3.steps"]


# -- titles, ids, placeholders --------------------------------------------------------------


def test_titles_name_the_nodes() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["6"], workflow["7"] = workflow["7"], workflow["6"]  # swapped ids...
    workflow["6"]["_meta"] = {"title": "negative"}
    workflow["7"]["_meta"] = {"title": "Positive"}  # ...but titled
    workflow["3"]["inputs"]["positive"], workflow["3"]["inputs"]["negative"] = ["7", 0], ["6", 0]
    template = WorkflowTemplate(workflow)
    assert template.targets["prompt"][0].how == "title"
    assert where(template)["prompt"] == ["7.text"]
    assert where(template)["negative_prompt"] == ["6.text"]


def test_mapping_by_id_title_and_dict() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["5"]["_meta"] = {"title": "Latent size"}
    template = WorkflowTemplate(
        workflow,
        mapping={
            "prompt": "7.text",
            "negative_prompt": "6",
            "width": "Latent size.width",
            "height": {"node": "latent size", "input": "height"},
            "seed": None,
        },
    )
    assert where(template)["prompt"] == ["7.text"]
    assert where(template)["negative_prompt"] == ["6.text"]
    assert where(template)["width"] == ["5.width"]
    assert where(template)["height"] == ["5.height"]
    assert "seed" not in template.targets  # turned off: the template's seed stays


def test_placeholders_whole_and_inside_text() -> None:
    template = WorkflowTemplate(
        {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {
                    "width": "{{width}}",
                    "height": "{{ height }}",
                    "batch_size": 1,
                    "color": "{{color}}",
                },
            },
            "2": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": "a photo of {{prompt}}, seed {{seed}}", "clip": ["3", 0]},
            },
            "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a"}},
        }
    )
    assert template.placeholder_fields == {"width", "height", "color", "prompt", "seed"}
    assert template.custom_fields == {"color"}
    assert template.missing({"width": 1}) == ["color", "height", "prompt", "seed"]
    workflow = template.render({**VALUES, "color": 255})
    assert workflow["1"]["inputs"] == {"width": 640, "height": 384, "batch_size": 1, "color": 255}
    assert workflow["2"]["inputs"]["text"] == "a photo of a lighthouse, seed 42"


def test_custom_fields_from_mapping_and_values() -> None:
    generator = make(
        {
            **EMPTY_IMAGE_TEMPLATE,
            "1": {
                **EMPTY_IMAGE_TEMPLATE["1"],
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
            },
        },
        mapping={"width": "1.width", "height": "1.height", "tint": "1.color"},
        values={"tint": 0x00FF00},
    )
    assert generator.template.custom_fields == {"tint"}


# -- errors at creation ---------------------------------------------------------------------


def test_ui_format_workflow_is_refused_at_creation(tmp_path: Path) -> None:
    ui = {
        "last_node_id": 2,
        "last_link_id": 1,
        "nodes": [{"id": 1, "type": "EmptyImage"}],
        "links": [],
        "version": 0.4,
    }
    path = tmp_path / "ui.json"
    path.write_text(json.dumps(ui))
    with pytest.raises(ConfigError, match=r"UI-format workflow.*Export \(API\)") as info:
        make(str(path))
    assert info.value.key == "workflow_template"


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"prompt": "99.text"}, r"no node with id or title '99' \(node ids: 3, 4, 5"),
        ({"prompt": "6.txt"}, r"node 6 \(CLIPTextEncode\) has no input 'txt' \(its inputs: clip"),
        ({"seed": "8"}, r"node 8 \(VAEDecode\) has no input for seed"),
        ({"prompt": "3.positive"}, r"input 'positive' of node 3 \(KSampler\) is linked to node 6"),
        ({"prompt": 3.5}, r"expected '<node id or title>.<input>'"),
        ({"color": "6"}, r"node 6 \(CLIPTextEncode\) has no input for color"),
    ],
)
def test_bad_mapping_is_a_config_error_naming_the_field(
    mapping: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        make(STANDARD, mapping=mapping)
    assert info.value.key == f"mapping.{next(iter(mapping))}"


def test_missing_file_bad_json_and_missing_link(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workflow file not found"):
        make(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": ')
    with pytest.raises(ConfigError, match=r"not valid JSON \(line 1"):
        make(str(bad))
    with pytest.raises(ConfigError, match="linked to node 99, which is not in the workflow"):
        make({"1": {"class_type": "SaveImage", "inputs": {"images": ["99", 0]}}})
    with pytest.raises(ConfigError, match="node '1' has no class_type"):
        make({"1": {"inputs": {}}})


def test_a_saved_post_body_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"prompt": STANDARD, "client_id": "x"}))
    assert make(str(path)).template.has("prompt")


def test_setting_without_a_place_is_an_error() -> None:
    with pytest.raises(ConfigError, match="has no place for steps") as info:
        make(EMPTY_IMAGE_TEMPLATE, steps=30, values={"color": 0})
    assert info.value.key == "steps"
    with pytest.raises(ConfigError, match=r"has no field 'colour'") as info:
        make(EMPTY_IMAGE_TEMPLATE, values={"colour": 0})
    assert info.value.key == "values"


def test_placeholder_for_a_setting_needs_the_setting() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["3"]["inputs"]["steps"] = "{{steps}}"
    with pytest.raises(ConfigError, match=r"uses \{\{steps\}\}, so steps must be set"):
        make(workflow)
    assert make(workflow, steps=4).template.has("steps")


def test_title_without_a_fitting_input_is_an_error() -> None:
    workflow = json.loads(json.dumps(STANDARD))
    workflow["8"]["_meta"] = {"title": "seed"}
    with pytest.raises(ConfigError, match=r"node 8 \(VAEDecode\) is titled 'seed'"):
        make(workflow)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"timeout": 0}, "timeout"),
        ({"request_timeout": "soon"}, "request_timeout"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"server_address": "ftp://x"}, "server_address"),
        ({"server_address": "http://host:99999"}, "server_address"),
        ({"headers": ["x"]}, "headers"),
        ({"steps": 0}, "steps"),
        ({"cfg": "high"}, "cfg"),
        ({"sampler": ""}, "sampler"),
        ({"mapping": "6.text"}, "mapping"),
        ({"verify_ssl": "no"}, "verify_ssl"),
    ],
)
def test_bad_settings_name_their_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        ComfyUIGenerator(settings, name="comfy")
    assert info.value.key == key


def test_unknown_setting_warns_naming_it() -> None:
    with pytest.warns(UnknownSettingWarning, match="'sampler_name'"):
        ComfyUIGenerator({"sampler_name": "euler"}, name="comfy")


def test_no_network_at_creation() -> None:
    # Port 9 on loopback: nothing listens; creation must not try.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ComfyUIGenerator({"server_address": "127.0.0.1:9"}, name="comfy")


def test_secrets_never_in_repr_or_info() -> None:
    generator = ComfyUIGenerator(
        {"headers": {"X-Proxy-Key": "hunter2"}, "api_key": "sk-secret"}, name="comfy"
    )
    text = repr(generator) + json.dumps(generator.info())
    assert "hunter2" not in text
    assert "sk-secret" not in text
    assert generator._headers["Authorization"] == "Bearer sk-secret"


# -- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "http", "ws"),
    [
        ("127.0.0.1:8188", "http://127.0.0.1:8188", "ws://127.0.0.1:8188/ws"),
        ("localhost", "http://localhost:8188", "ws://localhost:8188/ws"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
        (
            "https://comfy.example/comfy",
            "https://comfy.example/comfy",
            "wss://comfy.example/comfy/ws",
        ),
        ("wss://comfy.example:8443", "https://comfy.example:8443", "wss://comfy.example:8443/ws"),
        ("ws://[::1]:8188", "http://[::1]:8188", "ws://[::1]:8188/ws"),
    ],
)
def test_server_address_forms(address: str, http: str, ws: str) -> None:
    assert parse_server_address(address) == (http, ws)


# -- samplers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("euler", ("euler", None)),
        ("euler_a", ("euler_ancestral", None)),
        ("Euler a", ("euler_ancestral", None)),
        ("k_dpm_2_a", ("dpm_2_ancestral", None)),
        ("dpmpp_2m_k", ("dpmpp_2m", "karras")),
        ("DPM++ 2M Karras", ("dpmpp_2m", "karras")),
        ("unipc", ("uni_pc", None)),
    ],
)
def test_sampler_names_of_other_backends(name: str, expected: tuple[str, str | None]) -> None:
    assert resolve_sampler(name) == expected


def test_unknown_sampler_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown sampler 'bogus'; valid samplers: euler, "):
        resolve_sampler("bogus")


def test_validate_dimensions_rounds_latent_sizes_down() -> None:
    generator = ComfyUIGenerator({}, name="comfy")
    assert generator.validate_dimensions(1080, 1921) == (1080, 1920)
    with pytest.raises(InvalidRequestError, match="at least 16x16"):
        generator.validate_dimensions(8, 8)
    exact = make(EMPTY_IMAGE_TEMPLATE, values={"color": 0})
    assert exact.validate_dimensions(1081, 1921) == (1081, 1921)


def test_builtin_workflow_is_a_fresh_copy() -> None:
    first = builtin_workflow()
    first["6"]["inputs"]["text"] = "changed"
    assert builtin_workflow()["6"]["inputs"]["text"] == ""


def test_render_makes_a_deep_copy_each_time() -> None:
    """Every dict and list of a rendered workflow is its own (img2img and LoRAs change
    them in place), and an input of another type (a tuple, from Python) is copied too."""
    source = {**STANDARD, "9": {**STANDARD["9"], "_meta": {"title": "Save", "tags": ["a"]}}}
    source["9"]["inputs"] = {**source["9"]["inputs"], "extra": (1, [2])}
    template = WorkflowTemplate(source)
    pristine = copy.deepcopy(template.nodes)
    first, second = template.render(VALUES), template.render(VALUES)
    assert first == second
    assert first["9"]["inputs"]["extra"] == (1, [2])

    def containers(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [value, *(c for v in value.values() for c in containers(v))]
        if isinstance(value, (list, tuple)):
            return [value, *(c for v in value for c in containers(v))]
        return []

    shared = {id(c) for c in containers(first)} & {id(c) for c in containers(template.nodes)}
    assert not shared
    for container in containers(first):
        if isinstance(container, dict):
            container["x"] = 1
        elif isinstance(container, list):
            container.append(1)
    assert template.nodes == pristine
    assert second == template.render(VALUES)
