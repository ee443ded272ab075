"""What InvokeAI's socket.io events mean for a job, with no I/O.

InvokeAI pushes queue events over Socket.IO at ``/ws/socket.io`` once a client emits
``subscribe_queue {"queue_id": "default"}`` (recorded from a real 6.14.2 in
``tests/plugins/invokeai/captures/rec_socketio_*.json``). Each event names its
``item_id``; :func:`read_event` says which items it concerns and whether they may have
ended (then the item is read over HTTP, unless :func:`ended_status` and
:func:`completed_image` told it all: see :func:`~._queue.told_update`), and
:func:`event_update` what a progress event means as a :class:`JobUpdate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from degrees37_imagegen.job import JobUpdate
from degrees37_imagegen.progress import Progress

from ._queue import TERMINAL_STATUSES, job_status

__all__ = [
    "QUEUE_ID",
    "News",
    "completed_image",
    "ended_status",
    "event_progress",
    "event_update",
    "read_event",
]

#: The queue this plugin uses (InvokeAI has only ``default``).
QUEUE_ID = "default"
#: Events that carry news for the user about a running item.
_PROGRESS_EVENTS = frozenset(
    {"queue_item_status_changed", "invocation_started", "invocation_progress"}
)


@dataclass(frozen=True)
class News:
    """What one event says about one item (``item_id`` ``None``: about every item).

    ``look``: the item may have ended, read it now. ``event``: the event to turn into a
    progress report, to take the image from (``invocation_complete``), or that says how
    the item ended (``queue_item_status_changed``, see :func:`ended_status`).
    """

    item_id: int | None
    look: bool = False
    event: tuple[str, Mapping[str, Any]] | None = None


def read_event(name: str, payload: Any) -> list[News]:
    """The news in one event: for whom, and whether to look at the item now."""
    if not isinstance(payload, Mapping):
        return []
    if payload.get("queue_id", QUEUE_ID) != QUEUE_ID:
        return []
    if name == "queue_cleared":
        return [News(None, look=True)]  # items are deleted without a status change
    if name == "queue_items_canceled":
        ids = payload.get("canceled_item_ids")
        if not isinstance(ids, list) or not ids:
            return [News(None, look=True)]  # another user's view: no ids, everyone looks
        return [News(i, look=True) for i in ids if _is_id(i)]
    item_id = payload.get("item_id")
    if not _is_id(item_id):
        return []
    ended = name == "queue_item_status_changed" and payload.get("status") in TERMINAL_STATUSES
    if ended:
        return [News(item_id, look=True, event=(name, payload))]
    if name in _PROGRESS_EVENTS or name == "invocation_complete":
        return [News(item_id, event=(name, payload))]
    return []  # e.g. invocation_started of another queue: nothing to look at


def completed_image(
    data: Mapping[str, Any], node_id: str, destination: str | None
) -> tuple[str, int | None, int | None] | None:
    """The image (name, width, height) that an ``invocation_complete`` event says our
    output node ``node_id`` made, if it is that event.

    InvokeAI saves the image before it sends the event, and keeps it when the queue item
    is deleted (``/prune`` deletes finished items): the event is how a job whose item was
    pruned right after it finished still gets its image, instead of being made again.
    ``destination`` (ours) guards against an item of the same id after a restart.
    """
    if data.get("invocation_source_id") != node_id:
        return None
    if destination is not None and data.get("destination") != destination:
        return None
    result = data.get("result")
    image = result.get("image") if isinstance(result, Mapping) else None
    if not isinstance(image, Mapping) or not isinstance(image.get("image_name"), str):
        return None
    assert isinstance(result, Mapping)
    width, height = result.get("width"), result.get("height")
    return (
        str(image["image_name"]),
        width if _is_id(width) else None,
        height if _is_id(height) else None,
    )


def ended_status(name: str, data: Mapping[str, Any], destination: str | None) -> str | None:
    """The final status (``completed``, ``failed``, ``canceled``) that a
    ``queue_item_status_changed`` event gives our item, if it is that event;
    ``destination`` (ours) guards against an item of the same id after a restart."""
    if name != "queue_item_status_changed":
        return None
    if destination is not None and data.get("destination") != destination:
        return None
    status = data.get("status")
    return status if isinstance(status, str) and status in TERMINAL_STATUSES else None


def event_update(
    name: str, data: Mapping[str, Any], *, steps: int | None, generator: str | None
) -> JobUpdate | None:
    """The job's state that a progress event means (it is running, or still queued)."""
    if name == "queue_item_status_changed":
        status = job_status(data.get("status"))
        return JobUpdate(status) if status in ("queued", "running") else None
    progress = event_progress(name, data, steps=steps, generator=generator)
    return JobUpdate("running", progress=progress) if progress is not None else None


def event_progress(
    name: str, data: Mapping[str, Any], *, steps: int | None, generator: str | None
) -> Progress | None:
    """The progress report an event about our item means, if any.

    ``invocation_started`` is the node that runs now; ``invocation_progress`` with a
    ``percentage`` (0..1, denoising) becomes a step of ``steps`` (or of 100 when the
    number of steps is not known); without one (e.g. ``Saving image``) it is a message.
    """
    source = data.get("invocation_source_id")
    invocation = data.get("invocation")
    node_type = invocation.get("type") if isinstance(invocation, Mapping) else None
    node = str(source) if source is not None else (str(node_type) if node_type else None)
    if name == "invocation_started":
        message = str(node_type) if node_type and node_type != node else "started"
        return Progress("running", message, node=node, generator=generator)
    if name != "invocation_progress":
        return None
    text = str(data.get("message") or "")
    percentage = data.get("percentage")
    if isinstance(percentage, (int, float)) and not isinstance(percentage, bool):
        total = steps if steps and steps > 0 else 100
        step = min(total, max(0, round(float(percentage) * total)))
        message = f"{text} step {step}/{total}".strip()
        return Progress("step", message, step=step, total=total, node=node, generator=generator)
    return Progress("running", text or "working", node=node, generator=generator)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
