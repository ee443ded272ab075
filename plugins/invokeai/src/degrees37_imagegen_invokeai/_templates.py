"""Custom graphs: a JSON graph with ``{{placeholders}}`` filled in for each image.

A template is InvokeAI's own graph format (``{"id", "nodes": {id: node}, "edges": [...]}``),
the same as ``GET /api/v1/images/i/{name}/workflow`` answers in its ``graph`` field for any
image a graph made. A workflow saved from the workflow editor (``nodes`` as a list) is
converted the way the web UI converts it when it enqueues one.

A string that is exactly ``"{{width}}"`` becomes the value itself (a number for ``width``,
``height``, ``seed``, ``steps``, ``cfg_scale``; the model identifier for ``model``); a
placeholder inside a longer string is replaced by its text.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._img2img import fill_images, image_placeholders

__all__ = ["PLACEHOLDERS", "GraphTemplate", "TemplateError"]

#: The placeholders a template may use.
PLACEHOLDERS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "width",
        "height",
        "seed",
        "steps",
        "cfg_scale",
        "scheduler",
        "model",
    }
)

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(ValueError):
    """The template cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class GraphTemplate:
    """A parsed graph template.

    ``output_node`` is the node whose image is the result; ``placeholders`` the names the
    template uses; ``source`` where it came from (a path, or ``"inline"``).
    """

    graph: dict[str, Any]
    output_node: str
    placeholders: frozenset[str]
    source: str

    @classmethod
    def load(cls, value: Any, output_node: str | None = None) -> GraphTemplate:
        """Read a template from a path (``str``/``Path``) or an inline mapping.

        Raises :class:`TemplateError` naming the problem.
        """
        if isinstance(value, (str, Path)):
            path = Path(value).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"cannot read {path}: {exc.strerror or exc}") from exc
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TemplateError(f"{path} is not JSON ({exc})") from exc
            source = str(path)
        elif isinstance(value, Mapping):
            data = copy.deepcopy(dict(value))
            source = "inline"
        else:
            raise TemplateError(
                f"must be the path of a JSON file or a mapping, got {type(value).__name__}"
            )
        graph = _extract_graph(data)
        _check_graph(graph)
        used = _find_placeholders(graph)
        unknown = sorted(used - PLACEHOLDERS - image_placeholders(graph))
        if unknown:
            raise TemplateError(
                f"unknown placeholder {{{{{unknown[0]}}}}}; known: "
                + ", ".join("{{" + p + "}}" for p in sorted(PLACEHOLDERS))
            )
        output = _find_output_node(graph, output_node)
        return cls(graph=graph, output_node=output, placeholders=frozenset(used), source=source)

    def render(
        self,
        values: Mapping[str, Any],
        board_id: str | None = None,
        images: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The graph with the placeholders filled in from ``values`` (and image placeholders
        with the uploaded ``images``: placeholder name -> InvokeAI image name).

        The output node is made non-intermediate and uncached (so each request makes a new
        image) and, when ``board_id`` is given, put on that board.
        """
        graph: dict[str, Any] = _substitute(fill_images(self.graph, images or {}), values)
        node = graph["nodes"][self.output_node]
        node["is_intermediate"] = False
        node["use_cache"] = False
        if board_id is not None:
            node["board"] = {"board_id": board_id}
        return graph


def _extract_graph(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TemplateError("must be a JSON object (a graph)")
    # Accept what InvokeAI hands out: an enqueue request, an image's /workflow answer (whose
    # "graph" is a JSON string), a bare graph, or a workflow saved by the editor.
    if isinstance(data.get("batch"), dict) and "graph" in data["batch"]:
        data = data["batch"]["graph"]
    elif "graph" in data and "nodes" not in data:
        data = data["graph"]
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise TemplateError(f"its 'graph' is not JSON ({exc})") from exc
    if not isinstance(data, dict) or "nodes" not in data:
        raise TemplateError("has no 'nodes': expected an InvokeAI graph")
    if isinstance(data["nodes"], list):
        return _workflow_to_graph(data)
    graph: dict[str, Any] = {"id": str(data.get("id") or "graph_template"), **data}
    return graph


def _workflow_to_graph(workflow: dict[str, Any]) -> dict[str, Any]:
    """Convert a workflow-editor file to a graph, as the web UI does when it enqueues one."""
    nodes: dict[str, Any] = {}
    for item in workflow["nodes"]:
        if not isinstance(item, dict):
            raise TemplateError("a workflow node is not an object")
        kind = item.get("type")
        if kind == "notes":
            continue
        if kind != "invocation":
            raise TemplateError(
                f"workflow node {item.get('id')!r} of kind {kind!r} is not supported "
                "(only invocation and notes nodes are)"
            )
        data = item.get("data") or {}
        node_id = str(data.get("id") or item.get("id"))
        node: dict[str, Any] = {
            "id": node_id,
            "type": data.get("type"),
            "is_intermediate": bool(data.get("isIntermediate", False)),
            "use_cache": bool(data.get("useCache", True)),
        }
        for name, field in (data.get("inputs") or {}).items():
            if not isinstance(field, dict) or "value" not in field:
                continue
            value = field["value"]
            if name == "board" and (value in ("auto", "none") or value is None):
                continue
            node[name] = value
        nodes[node_id] = node
    edges = []
    for edge in workflow.get("edges") or []:
        if not isinstance(edge, dict) or edge.get("type", "default") != "default":
            continue  # "collapsed" edges only draw a collapsed node's links
        if not edge.get("sourceHandle") or not edge.get("targetHandle"):
            continue
        edges.append(
            {
                "source": {"node_id": edge["source"], "field": edge["sourceHandle"]},
                "destination": {"node_id": edge["target"], "field": edge["targetHandle"]},
            }
        )
    return {"id": str(workflow.get("id") or "workflow"), "nodes": nodes, "edges": edges}


def _check_graph(graph: dict[str, Any]) -> None:
    nodes = graph.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise TemplateError("has no nodes")
    for node_id, node in nodes.items():
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise TemplateError(f"node {node_id!r} has no 'type'")
        if node.get("id", node_id) != node_id:
            raise TemplateError(f"node {node_id!r} has the id {node.get('id')!r}")
        node["id"] = node_id
    edges = graph.setdefault("edges", [])
    if not isinstance(edges, list):
        raise TemplateError("'edges' is not a list")
    for edge in edges:
        try:
            ends = (edge["source"]["node_id"], edge["destination"]["node_id"])
        except (KeyError, TypeError) as exc:
            raise TemplateError(f"malformed edge {edge!r}") from exc
        for end in ends:
            if end not in nodes:
                raise TemplateError(f"an edge refers to the missing node {end!r}")


def _find_placeholders(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, str):
        found.update(_PLACEHOLDER.findall(value))
    elif isinstance(value, dict):
        for item in value.values():
            found |= _find_placeholders(item)
    elif isinstance(value, list):
        for item in value:
            found |= _find_placeholders(item)
    return found


def _find_output_node(graph: dict[str, Any], wanted: str | None) -> str:
    nodes: dict[str, Any] = graph["nodes"]
    if wanted is not None:
        if wanted not in nodes:
            raise TemplateError(
                f"output node {wanted!r} is not in the graph; nodes: {', '.join(sorted(nodes))}"
            )
        return wanted
    # The result is the image of a node nothing else consumes; prefer the ones that are not
    # intermediate (those whose images the user sees in the gallery).
    sources = {edge["source"]["node_id"] for edge in graph["edges"]}
    sinks = [node_id for node_id in nodes if node_id not in sources]
    visible = [node_id for node_id in sinks if not nodes[node_id].get("is_intermediate", False)]
    candidates = visible or sinks
    if len(candidates) != 1:
        raise TemplateError(
            "cannot tell which node gives the image (candidates: "
            + ", ".join(sorted(candidates))
            + "); set graph_output_node"
        )
    return candidates[0]


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return copy.deepcopy(values[whole.group(1)])
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    return value
