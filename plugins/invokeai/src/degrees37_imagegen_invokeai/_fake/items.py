"""The fake InvokeAI's queue items and model records."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from .socketio import ItemIds

if TYPE_CHECKING:
    from .captures import Captures

__all__ = ["FakeItem", "image_size", "item_body", "model_record", "output_node"]


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


def item_body(captures: Captures, item: FakeItem) -> dict[str, Any]:
    """The answer a read of ``item`` gets: the captured item of its status, its ids put in."""
    template = {
        "pending": "rec_queue_item_pending.json",
        "in_progress": "queue_item_blank_first_poll.json",
        "completed": "queue_item_blank_completed.json",
        "failed": "queue_item_sdxl_missing_model_failed.json",
        "canceled": "queue_item_after_cancel_in_progress.json",
    }[item.status]
    body = captures.body(template)
    batch = item.batch
    body.update(
        item_id=item.item_id,
        status=item.status,
        batch_id=item.batch_id,
        session_id=item.session_id,
        origin=batch.get("origin"),
        destination=batch.get("destination"),
        field_values=[
            {"node_path": d["node_path"], "field_name": d["field_name"], "value": d["items"][0]}
            for group in batch.get("data") or []
            for d in group
        ],
    )
    for key in ("origin", "destination"):
        if body[key] is None:
            del body[key]  # this route leaves null fields out
    session = body["session"]
    session.update(id=item.session_id, graph=batch["graph"])
    mapping = {node_id: [str(uuid.uuid4())] for node_id in batch["graph"]["nodes"]}
    if item.status == "completed":
        session["source_prepared_mapping"] = mapping
        session["prepared_source_mapping"] = {v[0]: k for k, v in mapping.items()}
        session["results"] = {
            mapping[node_id][0]: {
                "image": {"image_name": name},
                "width": width,
                "height": height,
                "type": "image_output",
            }
            for node_id, (name, (width, height)) in item.outputs.items()
        }
    elif item.status == "failed":
        error_type, message = item.error or ("Exception", "failed")
        body.update(error_type=error_type, error_message=message)
        body["error_traceback"] = body["error_traceback"].replace(
            "00000000-0000-0000-0000-000000000000", message.rsplit(" ", 1)[-1]
        )
        session["source_prepared_mapping"] = mapping
        session["results"] = {}
    answer: dict[str, Any] = body
    return answer
