"""LoRAs in the built-in graphs, as InvokeAI's web UI adds them (``addLoRAs``), no I/O.

Each LoRA is a ``lora_selector`` node (the model and its weight); a ``collect`` node gathers
them into the model's LoRA collection loader (``sdxl_lora_collection_loader`` for SDXL,
``lora_collection_loader`` for SD 1.x/2.x), which sits between the model loader and
everything that used its ``unet``, ``clip`` and ``clip2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from degrees37_imagegen.errors import InvalidRequestError

from ._queue import match_model, model_identifier

__all__ = ["add_loras", "resolve_loras"]

_COLLECTOR = "lora_collector"
_LOADER = "lora_loader"
_FIELDS = ("unet", "clip", "clip2")


def resolve_loras(
    wanted: Sequence[Mapping[str, Any]], installed: Sequence[Mapping[str, Any]], base: str
) -> list[tuple[dict[str, Any], float]]:
    """``(LoRA record, weight)`` for each wanted ``{name, weight}`` (found by key or name).

    An unknown LoRA, or one made for another base than the model's, is an
    :class:`InvalidRequestError` naming it and listing the server's LoRAs for that base.
    """
    out: list[tuple[dict[str, Any], float]] = []
    usable = [dict(m) for m in installed if m.get("base") == base]
    for item in wanted:
        name = str(item["name"])
        found = match_model(usable, name)
        if found is None:
            other = match_model([dict(m) for m in installed], name)
            names = ", ".join(sorted(str(m.get("name")) for m in usable)) or "none"
            where = f" (it is a {other.get('base')} LoRA)" if other is not None else ""
            raise InvalidRequestError(
                f"loras: InvokeAI has no {base} LoRA {name!r}{where}; its {base} LoRAs: {names}"
            )
        out.append((found, float(item["weight"])))
    return out


def add_loras(graph: dict[str, Any], loras: Sequence[tuple[Mapping[str, Any], float]]) -> None:
    """Put ``loras`` into a built-in ``graph`` between its model loader and its users."""
    if not loras:
        return
    nodes = graph["nodes"]
    edges: list[dict[str, Any]] = graph["edges"]
    loader = next(
        node_id
        for node_id, node in nodes.items()
        if node.get("type") in ("sdxl_model_loader", "main_model_loader")
    )
    sdxl = nodes[loader]["type"] == "sdxl_model_loader"
    fields = _FIELDS if sdxl else _FIELDS[:2]
    nodes[_COLLECTOR] = {"id": _COLLECTOR, "type": "collect", "is_intermediate": True}
    nodes[_LOADER] = {
        "id": _LOADER,
        "type": "sdxl_lora_collection_loader" if sdxl else "lora_collection_loader",
        "is_intermediate": True,
        "use_cache": True,
    }
    for edge in edges:  # everything that used the model loader's unet/clip now uses LoRAs'
        source = edge["source"]
        if source["node_id"] == loader and source["field"] in fields:
            source["node_id"] = _LOADER
    for field in fields:
        edges.append(_edge(loader, field, _LOADER, field))
    edges.append(_edge(_COLLECTOR, "collection", _LOADER, "loras"))
    metadata_loras = []
    for i, (record, weight) in enumerate(loras):
        node_id = f"lora_selector_{i}"
        identifier = model_identifier(record)
        nodes[node_id] = {
            "id": node_id,
            "type": "lora_selector",
            "is_intermediate": True,
            "use_cache": True,
            "lora": identifier,
            "weight": weight,
        }
        edges.append(_edge(node_id, "lora", _COLLECTOR, "item"))
        metadata_loras.append({"model": identifier, "weight": weight})
    metadata = nodes.get("core_metadata")
    if metadata is not None:
        metadata["loras"] = metadata_loras


def _edge(source: str, source_field: str, destination: str, destination_field: str) -> Any:
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }
