"""The text-to-image graphs, shaped like the ones InvokeAI's web UI builds.

The web UI's SDXL graph (``buildSDXLGraph.ts``; a captured request is in the test captures)
and its SD 1.x/2.x graph (``buildSD1Graph.ts``) differ in the model loader, the prompt
encoders and a ``clip_skip`` node. As in the web UI, the prompts and the seed are ``string``
and ``integer`` nodes filled in through the batch's ``data``, a ``core_metadata`` node feeds
the output, and the output node is the only one that is not intermediate and not cached.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "OUTPUT_NODE",
    "SD1_BASES",
    "SDXL_BASES",
    "SUPPORTED_BASES",
    "GraphRequest",
    "build_enqueue_body",
    "build_text_to_image",
    "graph_key",
]

#: Id of the node whose image is the result (the web UI calls its own ``canvas_output``).
OUTPUT_NODE = "canvas_output"

SDXL_BASES = frozenset({"sdxl"})
SD1_BASES = frozenset({"sd-1", "sd-2"})
SUPPORTED_BASES = SDXL_BASES | SD1_BASES

_SEED = "seed"
_POSITIVE = "positive_prompt"
_NEGATIVE = "negative_prompt"


@dataclass(frozen=True)
class GraphRequest:
    """Everything a text-to-image graph needs. ``width``/``height`` is the generated size."""

    positive_prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    steps: int
    cfg_scale: float
    scheduler: str
    model: dict[str, Any]
    board_id: str | None = None
    vae_fp32: bool = False
    clip_skip: int = 0


#: The fields of a :class:`GraphRequest` that go in the batch's ``data``, not the graph.
_PER_RUN = frozenset({"positive_prompt", "negative_prompt", "seed"})


def graph_key(request: GraphRequest) -> tuple[Any, ...]:
    """What the built-in graph of ``request`` depends on: every field but the prompts and
    the seed (they go in the batch's ``data``), each with its type (``7`` and ``7.0`` are
    equal keys but not the same JSON). Equal keys, equal graphs."""
    key: list[Any] = []
    for field in fields(request):
        if field.name in _PER_RUN:
            continue
        value = getattr(request, field.name)
        if isinstance(value, dict):
            value = tuple((k, type(v), v) for k, v in value.items())
        key.append((field.name, type(value), value))
    return tuple(key)


def _edge(
    source: str, source_field: str, destination: str, destination_field: str
) -> dict[str, Any]:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def _node(node_id: str, node_type: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "is_intermediate": True, "use_cache": True, **fields}


def build_text_to_image(request: GraphRequest) -> tuple[dict[str, Any], list[list[dict[str, Any]]]]:
    """The graph and the batch ``data`` for ``request``'s model base (SDXL, SD 1.x or 2.x)."""
    base = request.model.get("base")
    if base in SDXL_BASES:
        graph = _sdxl_graph(request)
    elif base in SD1_BASES:
        graph = _sd1_graph(request)
    else:
        raise ValueError(f"no built-in graph for model base {base!r}")
    data: list[list[dict[str, Any]]] = [
        [{"node_path": _SEED, "field_name": "value", "items": [request.seed]}],
        [
            {"node_path": _POSITIVE, "field_name": "value", "items": [request.positive_prompt]},
            {"node_path": _NEGATIVE, "field_name": "value", "items": [request.negative_prompt]},
        ],
    ]
    return graph, data


def _common_nodes(request: GraphRequest, generation_mode: str) -> dict[str, dict[str, Any]]:
    output: dict[str, Any] = {
        "id": OUTPUT_NODE,
        "type": "l2i",
        "fp32": request.vae_fp32,
        "is_intermediate": False,
        "use_cache": False,
    }
    if request.board_id is not None:
        output["board"] = {"board_id": request.board_id}
    metadata = _node(
        "core_metadata",
        "core_metadata",
        cfg_scale=request.cfg_scale,
        cfg_rescale_multiplier=0,
        model=request.model,
        hidiffusion=False,
        steps=request.steps,
        rand_device="cpu",
        scheduler=request.scheduler,
        width=request.width,
        height=request.height,
        generation_mode=generation_mode,
    )
    return {
        _POSITIVE: _node(_POSITIVE, "string"),
        _NEGATIVE: _node(_NEGATIVE, "string"),
        "pos_cond_collect": _node("pos_cond_collect", "collect"),
        "neg_cond_collect": _node("neg_cond_collect", "collect"),
        _SEED: _node(_SEED, "integer"),
        "noise": _node("noise", "noise", use_cpu=True, width=request.width, height=request.height),
        "denoise_latents": _node(
            "denoise_latents",
            "denoise_latents",
            cfg_scale=request.cfg_scale,
            cfg_rescale_multiplier=0,
            hidiffusion=False,
            hidiffusion_raunet=True,
            hidiffusion_window_attn=True,
            scheduler=request.scheduler,
            steps=request.steps,
            denoising_start=0,
            denoising_end=1,
        ),
        "core_metadata": metadata,
        OUTPUT_NODE: output,
    }


def _common_edges() -> list[dict[str, Any]]:
    return [
        _edge("pos_cond", "conditioning", "pos_cond_collect", "item"),
        _edge("pos_cond_collect", "collection", "denoise_latents", "positive_conditioning"),
        _edge("neg_cond", "conditioning", "neg_cond_collect", "item"),
        _edge("neg_cond_collect", "collection", "denoise_latents", "negative_conditioning"),
        _edge(_SEED, "value", "noise", "seed"),
        _edge("noise", "noise", "denoise_latents", "noise"),
        _edge("denoise_latents", "latents", OUTPUT_NODE, "latents"),
        _edge(_SEED, "value", "core_metadata", "seed"),
        _edge(_POSITIVE, "value", "core_metadata", "positive_prompt"),
        _edge(_NEGATIVE, "value", "core_metadata", "negative_prompt"),
        _edge("core_metadata", "metadata", OUTPUT_NODE, "metadata"),
    ]


def _sdxl_graph(request: GraphRequest) -> dict[str, Any]:
    loader = "sdxl_model_loader"
    nodes = {
        loader: _node(loader, "sdxl_model_loader", model=request.model),
        "pos_cond": _node("pos_cond", "sdxl_compel_prompt"),
        "neg_cond": _node("neg_cond", "sdxl_compel_prompt"),
        **_common_nodes(request, "sdxl_txt2img"),
    }
    edges = [
        _edge(loader, "unet", "denoise_latents", "unet"),
        _edge(loader, "clip", "pos_cond", "clip"),
        _edge(loader, "clip", "neg_cond", "clip"),
        _edge(loader, "clip2", "pos_cond", "clip2"),
        _edge(loader, "clip2", "neg_cond", "clip2"),
        # SDXL's second text encoder takes a "style" prompt; the web UI feeds it the prompt.
        _edge(_POSITIVE, "value", "pos_cond", "prompt"),
        _edge(_POSITIVE, "value", "pos_cond", "style"),
        _edge(_NEGATIVE, "value", "neg_cond", "prompt"),
        _edge(_NEGATIVE, "value", "neg_cond", "style"),
        *_common_edges(),
        _edge(loader, "vae", OUTPUT_NODE, "vae"),
    ]
    return {"id": "sdxl_graph", "nodes": nodes, "edges": edges}


def _sd1_graph(request: GraphRequest) -> dict[str, Any]:
    loader = "sd1_model_loader"
    nodes = {
        loader: _node(loader, "main_model_loader", model=request.model),
        "clip_skip": _node("clip_skip", "clip_skip", skipped_layers=request.clip_skip),
        "pos_cond": _node("pos_cond", "compel"),
        "neg_cond": _node("neg_cond", "compel"),
        **_common_nodes(request, "txt2img"),
    }
    nodes["core_metadata"]["clip_skip"] = request.clip_skip
    edges = [
        _edge(loader, "unet", "denoise_latents", "unet"),
        _edge(loader, "clip", "clip_skip", "clip"),
        _edge("clip_skip", "clip", "pos_cond", "clip"),
        _edge("clip_skip", "clip", "neg_cond", "clip"),
        _edge(_POSITIVE, "value", "pos_cond", "prompt"),
        _edge(_NEGATIVE, "value", "neg_cond", "prompt"),
        *_common_edges(),
        _edge(loader, "vae", OUTPUT_NODE, "vae"),
    ]
    return {"id": "sd1_graph", "nodes": nodes, "edges": edges}


def build_enqueue_body(
    graph: dict[str, Any],
    data: list[list[dict[str, Any]]] | None,
    *,
    origin: str,
    destination: str,
) -> dict[str, Any]:
    """The body of ``POST /api/v1/queue/{queue}/enqueue_batch`` for one run of ``graph``."""
    batch: dict[str, Any] = {"graph": graph, "runs": 1}
    if data:
        batch["data"] = data
    batch["origin"] = origin
    batch["destination"] = destination
    return {"prepend": False, "batch": batch}
