"""Reading queue items and model lists: pure decisions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.errors import GeneratorError

from ._settings import MODEL_FIELDS
from .errors import QueueItemError

__all__ = [
    "TERMINAL_STATUSES",
    "PollSchedule",
    "item_error",
    "match_model",
    "model_identifier",
    "result_image",
]

#: Queue item statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


class PollSchedule:
    """Delays between polls: start at ``first`` seconds, grow by ``growth``, cap at ``cap``.

    InvokeAI spends about 0.6 s on even the smallest item, so polling fast at first costs
    little and notices short items within tens of milliseconds; the cap bounds how late a
    long item is noticed.
    """

    def __init__(self, cap: float, first: float = 0.01, growth: float = 1.5) -> None:
        self.cap = cap
        self.growth = growth
        self._next = min(first, cap)

    def next_delay(self) -> float:
        """The delay before the next poll."""
        delay = self._next
        self._next = min(self.cap, self._next * self.growth)
        return delay


def item_error(item: Mapping[str, Any], generator: str | None) -> QueueItemError:
    """The error for a queue item that ended ``failed`` or ``canceled``."""
    item_id = int(item.get("item_id", -1))
    status = str(item.get("status"))
    error_type = item.get("error_type")
    error_message = item.get("error_message")
    if status == "failed":
        reason = ": ".join(str(p) for p in (error_type, error_message) if p) or "no reason given"
        message = f"InvokeAI queue item {item_id} failed: {reason}"
    else:
        message = f"InvokeAI queue item {item_id} was canceled on the server"
    return QueueItemError(
        message,
        item_id=item_id,
        status=status,
        error_type=error_type,
        error_message=error_message,
        error_traceback=item.get("error_traceback"),
        generator=generator,
    )


def result_image(
    item: Mapping[str, Any], node_id: str, generator: str | None
) -> tuple[str, int | None, int | None]:
    """The image name (and size) that ``node_id`` produced, from a completed item.

    The session runs prepared copies of the graph's nodes: ``source_prepared_mapping`` maps
    our node id to their ids, and ``results`` holds each one's output.
    """
    session = item.get("session") or {}
    prepared = (session.get("source_prepared_mapping") or {}).get(node_id) or []
    results = session.get("results") or {}
    for prepared_id in prepared:
        output = results.get(prepared_id) or {}
        image = output.get("image")
        if isinstance(image, dict) and image.get("image_name"):
            width, height = output.get("width"), output.get("height")
            return (
                str(image["image_name"]),
                width if isinstance(width, int) else None,
                height if isinstance(height, int) else None,
            )
    raise GeneratorError(
        f"InvokeAI queue item {item.get('item_id')} completed without an image from node "
        f"{node_id!r}",
        generator=generator,
    )


def match_model(models: list[dict[str, Any]], spec: str) -> dict[str, Any] | None:
    """The model whose key is ``spec``, else whose name is (exactly, then ignoring case)."""
    for model in models:
        if model.get("key") == spec:
            return model
    order = {"sdxl": 0, "sd-1": 1, "sd-2": 2}
    for exact in (True, False):
        named = [
            m
            for m in models
            if (str(m.get("name", "")) == spec)
            or (not exact and str(m.get("name", "")).casefold() == spec.casefold())
        ]
        if named:
            # The same name on several bases: prefer the ones the built-in graphs support.
            return min(named, key=lambda m: order.get(str(m.get("base")), 9))
    return None


def model_identifier(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{key, hash, name, base, type}`` identifier a graph names a model by."""
    return {field: record[field] for field in MODEL_FIELDS}
