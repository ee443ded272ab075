"""What to send for one image: the graph, the batch and what to remember, with no I/O.

The generator looks up what a request names (style preset, model, board) on the server,
then :func:`plan_image` decides everything else from the request and the settings, and
:func:`enqueue_body` wraps the graph for ``POST /api/v1/queue/default/enqueue_batch``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from degrees37_imagegen.errors import (
    GeneratorConnectionError,
    GeneratorError,
    GeneratorTimeoutError,
    InvalidRequestError,
    ServerError,
    Work,
)
from degrees37_imagegen.images import DEFAULT_STRENGTH, IMAGE_OPTIONS
from degrees37_imagegen.request import ImageRequest

from ._graphs import (
    OUTPUT_NODE,
    SDXL_BASES,
    SUPPORTED_BASES,
    GraphRequest,
    build_enqueue_body,
    build_text_to_image,
    graph_key,
)
from ._http import was_not_sent
from ._img2img import INIT_IMAGE, add_image_to_image
from ._loras import add_loras
from ._queue import ItemFacts, model_identifier
from ._resolution import round_to_multiple, sdxl_resolution
from ._settings import FALLBACK_CFG_SCALE, FALLBACK_SCHEDULER, FALLBACK_STEPS, check_sampling
from ._templates import GraphTemplate


def image_extra(options: Mapping[str, Any], found: Lookups) -> dict[str, Any]:
    """What an image's metadata says about its input images, strength and LoRAs."""
    extra: dict[str, Any] = {}
    if options.get("init_image") is not None:
        extra["init_image"] = options["init_image"]
        strength = options.get("strength")
        extra["strength"] = DEFAULT_STRENGTH if strength is None else strength
    for name, path in dict(options.get("images") or {}).items():
        extra[f"image_{name}"] = path
    if found.loras:
        extra["loras"] = ", ".join(f"{r.get('name')}:{w:g}" for r, w in found.loras)
    return extra


__all__ = [
    "ORIGIN",
    "PER_CALL",
    "enqueue_failure_work",
    "enqueued",
    "Lookups",
    "Plan",
    "enqueue_body",
    "enqueue_content",
    "is_ours",
    "model_of",
    "new_destination",
    "plan_image",
    "request_from_item",
    "requested_size",
    "sampling",
]

#: The ``origin`` of every batch this plugin enqueues; destinations start with it too.
ORIGIN = "degrees37-imagegen"
#: Options of ``submit``/``generate_image`` that override a setting for one image.
PER_CALL = frozenset({"model", "style_preset", "steps", "cfg_scale", "scheduler", "board_name"})
#: Options about input images and LoRAs (see :mod:`._img2img`, :mod:`._loras`).
PER_CALL |= IMAGE_OPTIONS


@dataclass(frozen=True)
class Lookups:
    """What the server told about the names a request uses (found by the generator).

    ``prompts`` are the prompts after the style preset (``None``: no preset); ``model`` the
    model record (``None`` for a template without a model); ``board_id`` the board's id.
    """

    prompts: tuple[str, str] | None = None
    model: Mapping[str, Any] | None = None
    board_id: str | None = None
    #: Uploaded input images: placeholder (``init_image``...) -> InvokeAI image name.
    images: Mapping[str, str] = field(default_factory=dict)
    #: The LoRAs found for the request: (model record, weight).
    loras: Sequence[tuple[Mapping[str, Any], float]] = ()


@dataclass
class Plan:
    """One image's graph, its batch ``data``, and what to read its answers with."""

    graph: dict[str, Any]
    data: list[list[dict[str, Any]]] | None
    facts: ItemFacts
    #: The sampler steps, when known: denoising progress is reported in steps of it.
    steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: For a built-in graph: what it depends on (:func:`~._graphs.graph_key`), so that its
    #: JSON is made once for every image that shares it (see :func:`enqueue_content`).
    graph_key: Hashable | None = None


def sampling(
    options: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[int | None, float | None, str | None]:
    """Steps, CFG scale and scheduler for one image (per-call options over settings)."""
    return check_sampling(
        options.get("steps", config["steps"]),
        options.get("cfg_scale", config["cfg_scale"]),
        options.get("scheduler", config["scheduler"]),
        config=False,
    )


def plan_image(
    request: ImageRequest,
    config: Mapping[str, Any],
    template: GraphTemplate | None,
    found: Lookups,
) -> Plan:
    """The graph for ``request`` (the built-in SDXL/SD 1.x one, or the template's)."""
    options = request.options
    steps, cfg_scale, scheduler = sampling(options, config)
    extra: dict[str, Any] = {}
    positive, negative = request.prompt, request.negative_prompt
    if found.prompts is not None:
        positive, negative = found.prompts
        preset = options.get("style_preset", config["style_preset"])
        extra.update(style_preset=preset, invokeai_prompt=positive)
        extra["invokeai_negative_prompt"] = negative
    board_name = options.get("board_name", config["board_name"])
    if board_name:
        extra["board"] = board_name
    model = model_identifier(found.model) if found.model is not None else None
    model_name = str(model["name"]) if model else None

    if template is not None:
        values = {
            "prompt": positive,
            "negative_prompt": negative,
            "width": request.width,
            "height": request.height,
            "seed": request.seed,
            "steps": steps or FALLBACK_STEPS,
            "cfg_scale": cfg_scale or FALLBACK_CFG_SCALE,
            "scheduler": scheduler or FALLBACK_SCHEDULER,
            "model": model,
        }
        extra["graph_template"] = template.source
        extra.update(image_extra(options, found))
        graph = template.render(values, found.board_id, found.images)
        uses = template.placeholders
        facts = ItemFacts(  # the generated size is known only from the result
            template.output_node, model=model_name, seed_used="seed" in uses, extra=extra
        )
        used_steps = (steps or FALLBACK_STEPS) if "steps" in uses else None
        return Plan(graph, None, facts, used_steps, extra)

    if model is None or found.model is None:
        raise InvalidRequestError("no model for the built-in graphs")
    base = model["base"]
    if base not in SUPPORTED_BASES:
        raise InvalidRequestError(
            f"model {model['name']!r} is a {base!r} model; the built-in graphs support "
            f"{', '.join(sorted(SUPPORTED_BASES))} (a graph_template can run others)"
        )
    defaults = found.model.get("default_settings") or {}
    steps = steps or defaults.get("steps") or FALLBACK_STEPS
    cfg_scale = cfg_scale or defaults.get("cfg_scale") or FALLBACK_CFG_SCALE
    scheduler = scheduler or defaults.get("scheduler") or FALLBACK_SCHEDULER
    if base in SDXL_BASES and config["map_sdxl_resolution"]:
        generated = sdxl_resolution(request.width, request.height)
    else:
        generated = (round_to_multiple(request.width), round_to_multiple(request.height))
    graph_request = GraphRequest(
        positive_prompt=positive,
        negative_prompt=negative,
        width=generated[0],
        height=generated[1],
        seed=request.seed,
        steps=int(steps),
        cfg_scale=float(cfg_scale),
        scheduler=str(scheduler),
        model=model,
        board_id=found.board_id,
        vae_fp32=defaults.get("vae_precision") == "fp32",
    )
    graph, data = build_text_to_image(graph_request)
    init_image = found.images.get(INIT_IMAGE)
    if init_image is not None:
        strength = options.get("strength")
        strength = DEFAULT_STRENGTH if strength is None else float(strength)
        fp32 = defaults.get("vae_precision") == "fp32"
        add_image_to_image(graph, init_image, strength, *generated, fp32=fp32)
    add_loras(graph, found.loras)
    extra.update(image_extra(options, found))
    extra.update(steps=steps, cfg_scale=cfg_scale, scheduler=scheduler)
    facts = ItemFacts(OUTPUT_NODE, model=model_name, generated=generated, extra=extra)
    # An input image or LoRAs change the graph after it is built: its own JSON each time.
    key = graph_key(graph_request) if init_image is None and not found.loras else None
    return Plan(graph, data, facts, int(steps), extra, key)


def new_destination(width: int, height: int, key: str = "") -> str:
    """A destination unique to one request, made of its idempotency ``key``: it finds the
    item again (``list_all?destination=``) if the enqueue's answer is lost or the client
    was killed, instead of enqueuing a second image. It also says the requested size, so
    that a job found by its item id alone is fitted to it."""
    token = key.replace("-", "") if key else uuid.uuid4().hex
    return f"{ORIGIN}:{token}:{width}x{height}"


def requested_size(destination: Any) -> tuple[int, int] | None:
    """The requested size that :func:`new_destination` put in ``destination``, if any."""
    size = str(destination or "").rsplit(":", 1)[-1]
    width, x, height = size.partition("x")
    if x and width.isdigit() and height.isdigit():
        return int(width), int(height)
    return None


def request_from_item(item: Mapping[str, Any]) -> ImageRequest:
    """The request of one of our queue items, as far as the item tells it (the prompts and
    seed of a built-in graph; the size from the destination)."""
    values = {
        str(v.get("node_path")): v.get("value")
        for v in item.get("field_values") or []
        if isinstance(v, Mapping)
    }
    width, height = requested_size(item.get("destination")) or (0, 0)
    seed = values.get("seed")
    return ImageRequest(
        prompt=str(values.get("positive_prompt") or ""),
        negative_prompt=str(values.get("negative_prompt") or ""),
        width=width,
        height=height,
        seed=seed if isinstance(seed, int) else 0,
    )


def model_of(graph: Any) -> str | None:
    """The name of the model a graph loads, if any."""
    nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
    for node in (nodes or {}).values():
        model = node.get("model") if isinstance(node, Mapping) else None
        if isinstance(model, Mapping) and model.get("name"):
            return str(model["name"])
    return None


def enqueue_body(plan: Plan, destination: str) -> dict[str, Any]:
    """The body of ``POST .../enqueue_batch`` for one run of ``plan``."""
    return build_enqueue_body(plan.graph, plan.data, origin=ORIGIN, destination=destination)


#: How the enqueue's body is sent: httpx's JSON (compact, UTF-8, no NaN).
_JSON_OPTIONS: dict[str, Any] = {
    "ensure_ascii": False,
    "separators": (",", ":"),
    "allow_nan": False,
}
#: The start of every enqueue body's JSON, up to its graph (see :func:`build_enqueue_body`).
_GRAPH_AT = '{"prepend":false,"batch":{"graph":'
#: Graph JSONs kept by :func:`enqueue_content` (then it starts afresh).
MAX_GRAPHS = 32


def enqueue_content(plan: Plan, destination: str, graphs: MutableMapping[Hashable, str]) -> bytes:
    """:func:`enqueue_body` as the JSON bytes httpx sends for it, the same bytes, with the
    JSON of a built-in graph made once and kept in ``graphs`` for the next images that
    share it (most of the body; only the prompts, seed and destination differ)."""
    if plan.graph_key is None:
        return json.dumps(enqueue_body(plan, destination), **_JSON_OPTIONS).encode()
    graph = graphs.get(plan.graph_key)
    if graph is None:
        if len(graphs) >= MAX_GRAPHS:
            graphs.clear()
        graph = graphs[plan.graph_key] = json.dumps(plan.graph, **_JSON_OPTIONS)
    body = build_enqueue_body({}, plan.data, origin=ORIGIN, destination=destination)
    rest = json.dumps(body, **_JSON_OPTIONS)
    if not rest.startswith(_GRAPH_AT + "{},"):  # a body laid out otherwise: encoded whole
        return json.dumps(enqueue_body(plan, destination), **_JSON_OPTIONS).encode()
    return (_GRAPH_AT + graph + rest[len(_GRAPH_AT) + 2 :]).encode()


def is_ours(item: Mapping[str, Any], destination: str | None = None) -> bool:
    """Whether queue ``item`` was enqueued by this plugin (by the request of ``destination``,
    when given): never follow, cancel or download another client's item."""
    found = item.get("destination")
    if destination is not None:
        return found == destination
    return item.get("origin") == ORIGIN and str(found or "").startswith(ORIGIN + ":")


def enqueue_failure_work(error: GeneratorError) -> Work:
    """What a failed ``enqueue_batch`` may have left on the server: ``not_sent`` when the
    request never reached it or was refused (4xx), ``unknown`` when it may have been stored
    (the connection failed after sending, or a 5xx): the core then looks the item up by its
    destination before anything is enqueued again."""
    if was_not_sent(error):
        return "not_sent"
    if isinstance(error, (GeneratorConnectionError, GeneratorTimeoutError)):
        return "unknown"
    if isinstance(error, ServerError) and (error.status or 0) >= 500:
        return "unknown"
    return error.work or "not_sent"


def enqueued(answer: Any) -> dict[str, Any]:
    """The item id and batch id of an ``enqueue_batch`` answer that queued one item."""
    item_ids = answer.get("item_ids") if isinstance(answer, dict) else None
    if not isinstance(item_ids, list) or len(item_ids) != 1:
        raise GeneratorError(f"enqueue answered item_ids {item_ids!r}, not one id", work="unknown")
    batch = answer.get("batch") if isinstance(answer, dict) else None
    batch_id = batch.get("batch_id") if isinstance(batch, dict) else None
    return {"item_id": int(item_ids[0]), "batch_id": batch_id}
