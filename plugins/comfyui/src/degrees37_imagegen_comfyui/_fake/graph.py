"""The fake ComfyUI's view of a prompt: validation, execution order, cache keys."""

from __future__ import annotations

import json
from typing import Any

from .common import TEXT_500, is_link

__all__ = ["check_prompt", "order", "signature", "validate"]


def _options(object_info: dict[str, Any], class_type: str) -> dict[str, Any]:
    info = object_info[class_type]["input"]
    return {**info.get("required", {}), **info.get("optional", {})}


def validate(
    object_info: dict[str, Any],
    checkpoints: list[str],
    prompt: dict[str, Any],
    node_id: str,
    seen: set[str],
) -> dict[str, Any]:
    """The ``node_errors`` of ``node_id`` and the nodes it needs, as ComfyUI reports them."""
    if node_id in seen:
        return {}
    seen.add(node_id)
    node = prompt[node_id]
    required = object_info[node["class_type"]]["input"].get("required", {})
    options = _options(object_info, node["class_type"])
    inputs = node.get("inputs", {})
    errors: list[dict[str, Any]] = []
    failed: dict[str, Any] = {}
    for name in required:
        if name not in inputs:
            errors.append(
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": name,
                    "extra_info": {"input_name": name},
                }
            )
    for name, value in inputs.items():
        config = options.get(name)
        if config is None:
            continue
        if is_link(value):
            failed.update(validate(object_info, checkpoints, prompt, str(value[0]), seen))
            continue
        kind = config[0]
        opts = config[1] if len(config) > 1 else {}
        if name == "ckpt_name":
            kind = list(checkpoints)
        if isinstance(kind, list):
            if value not in kind:
                errors.append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"{name}: '{value}' not in {kind!r}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": [kind, opts],
                            "received_value": value,
                        },
                    }
                )
        elif kind in ("INT", "FLOAT"):
            try:
                number = int(value) if kind == "INT" else float(value)
            except (TypeError, ValueError) as exc:
                errors.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {kind} value",
                        "details": f"{name}, {value}, {exc}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": config,
                            "received_value": value,
                            "exception_message": str(exc),
                        },
                    }
                )
                continue
            if "min" in opts and number < opts["min"]:
                errors.append(
                    {
                        "type": "value_smaller_than_min",
                        "message": f"Value {number} smaller than min of {opts['min']}",
                        "details": name,
                        "extra_info": {
                            "input_name": name,
                            "input_config": config,
                            "received_value": value,
                        },
                    }
                )
            if "max" in opts and number > opts["max"]:
                errors.append(
                    {
                        "type": "value_bigger_than_max",
                        "message": f"Value {number} bigger than max of {opts['max']}",
                        "details": name,
                        "extra_info": {
                            "input_name": name,
                            "input_config": config,
                            "received_value": value,
                        },
                    }
                )
    if errors:
        failed[node_id] = errors
    return failed


# -- running prompts -----------------------------------------------------------------


def order(object_info: dict[str, Any], prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """The nodes the outputs need, dependencies first; among the nodes that are ready,
    output nodes go first (ComfyUI's ``ux_friendly_pick_node``: 1, 4, 2 in the
    captured execution error)."""
    needed: dict[str, set[str]] = {}

    def collect(node_id: str) -> None:
        if node_id in needed:
            return
        deps = {str(v[0]) for v in prompt[node_id].get("inputs", {}).values() if is_link(v)}
        needed[node_id] = deps
        for dep in deps:
            collect(dep)

    for out in outputs:
        collect(out)
    order: list[str] = []
    while len(order) < len(needed):
        ready = [n for n in needed if n not in order and needed[n] <= set(order)]
        is_output = [n for n in ready if object_info[prompt[n]["class_type"]].get("output_node")]
        order.append((is_output or ready)[0])
    return order


def signature(prompt: dict[str, Any], node_id: str) -> str:
    """A key for the classic cache: the node and, through its links, all it depends on."""
    node = prompt[node_id]
    parts = {}
    for name, value in sorted(node.get("inputs", {}).items()):
        parts[name] = (
            ["link", signature(prompt, str(value[0])), value[1]] if is_link(value) else value
        )
    return json.dumps([node["class_type"], parts], sort_keys=True)


def check_prompt(object_info: dict[str, Any], checkpoints: list[str], body: Any) -> tuple[int, Any]:
    """Check a POST /prompt body as ComfyUI does: ``(status, answer)`` for a refusal, else
    ``(200, {"outputs": [the output nodes to run], "node_errors": {...}})``."""
    if not isinstance(body, dict):
        return 500, TEXT_500
    if "prompt" not in body:
        error = {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        }
        return 400, {"error": error, "node_errors": {}}
    prompt = body["prompt"]
    if not isinstance(prompt, dict) or not all(isinstance(v, dict) for v in prompt.values()):
        return 500, TEXT_500  # as for a list or a UI-format workflow
    for node_id, node in prompt.items():
        if "class_type" not in node:
            error = {
                "type": "invalid_prompt",
                "message": "Cannot execute because a node is missing the class_type property.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": {}}
        if node["class_type"] not in object_info:
            error = {
                "type": "invalid_prompt",
                "message": f"Cannot execute because node {node['class_type']} does not exist.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {},
            }
            return 400, {"error": error, "node_errors": {}}
    outputs = [
        n for n, node in prompt.items() if object_info[node["class_type"]].get("output_node")
    ]
    if not outputs:
        error = {
            "type": "prompt_no_outputs",
            "message": "Prompt has no outputs",
            "details": "",
            "extra_info": {},
        }
        return 400, {"error": error, "node_errors": {}}
    node_errors: dict[str, Any] = {}
    good = []
    for out in outputs:
        failed = validate(object_info, checkpoints, prompt, out, set())
        for node_id, errors in failed.items():
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": errors,
                    "dependent_outputs": [],
                    "class_type": prompt[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(out)
        if not failed:
            good.append(out)
    if not good:
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        }
        return 400, {"error": error, "node_errors": node_errors}
    return 200, {"outputs": good, "node_errors": node_errors}
