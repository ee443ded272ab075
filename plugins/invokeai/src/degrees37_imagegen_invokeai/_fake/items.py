"""The fake InvokeAI's queue items and model records."""

from __future__ import annotations

import uuid
from typing import Any

from .socketio import ItemIds

__all__ = ["FakeItem", "image_size", "model_record", "output_node"]


def model_record(
    name: str, base: str = "sdxl", key: str | None = None, **defaults: Any
) -> dict[str, Any]:
    """A main-model record shaped by ``Main_Diffusers_SDXL_Config``/``..._SD1_Config``.

    Add one to :attr:`FakeInvokeAI.models` for a template that names a model. No capture
    has one (the capture server had no weights); the project's tests check these against
    the real schema.
    """
    return {
        "key": key or str(uuid.uuid4()),
        "hash": "blake3:" + uuid.uuid4().hex * 2,
        "path": f"{base}/main/{name}",
        "file_size": 6_938_040_682,
        "name": name,
        "description": f"{name} (fixture)",
        "source": f"stabilityai/{name}",
        "source_type": "hf_repo_id",
        "source_api_response": None,
        "source_url": None,
        "cover_image": None,
        "type": "main",
        "trigger_phrases": None,
        "default_settings": (
            {"vae": None, "vae_precision": None, **defaults} if defaults else None
        ),
        "format": "diffusers",
        "repo_variant": "fp16",
        "prediction_type": "epsilon",
        "variant": "normal",
        "base": base,
    }


class FakeItem:
    """A queue item of the fake: its request and the statuses its next polls will show."""

    def __init__(self, item_id: int, body: dict[str, Any], script: list[str]) -> None:
        self.item_id = item_id
        self.body = body
        self.batch_id = str(uuid.uuid4())
        self.session_id = str(uuid.uuid4())
        self.status = "pending"
        self.script = list(script)
        self.polls = 0
        #: The images the item made, by node id: (image name, size).
        self.outputs: dict[str, tuple[str, tuple[int, int]]] = {}
        self.error: tuple[str, str] | None = None
        self.running = False

    @property
    def ids(self) -> ItemIds:
        """What identifies the item in its socket.io events."""
        return ItemIds(
            self.item_id,
            self.batch_id,
            self.session_id,
            self.batch.get("origin"),
            self.batch.get("destination"),
        )

    @property
    def image_name(self) -> str | None:
        """The image of the graph's visible sink (what a client would want)."""
        output = self.outputs.get(output_node(self.batch["graph"]))
        return output[0] if output else None

    @property
    def batch(self) -> dict[str, Any]:
        """The enqueued batch."""
        batch: dict[str, Any] = self.body["batch"]
        return batch


def output_node(graph: dict[str, Any]) -> str:
    """The node whose image the fake reports: the non-intermediate sink."""
    sources = {e["source"]["node_id"] for e in graph["edges"]}
    sinks = [n for n in graph["nodes"] if n not in sources]
    visible = [n for n in sinks if not graph["nodes"][n].get("is_intermediate", False)]
    return str((visible or sinks)[0])


def image_size(graph: dict[str, Any], node_id: str) -> tuple[int, int]:
    """The size the image of ``node_id`` would have: its own, else its source's (noise...)."""
    node = graph["nodes"][node_id]
    if isinstance(node.get("width"), int) and isinstance(node.get("height"), int):
        return node["width"], node["height"]
    for edge in graph["edges"]:
        dst = edge["destination"]
        if dst["node_id"] == node_id and dst["field"] in ("image", "latents", "noise"):
            return image_size(graph, edge["source"]["node_id"])
    return 512, 512
