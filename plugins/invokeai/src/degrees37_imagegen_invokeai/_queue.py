"""Reading queue items and model lists: what an answer means, with no I/O.

A queue item (``GET /api/v1/queue/default/i/{id}``) becomes a :class:`JobUpdate`: its
status mapped to the core's, and, once it completed, the image its output node made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.errors import GeneratorConnectionError, GeneratorError, JobCanceledError
from degrees37_imagegen.job import JobStatus, JobUpdate

from ._settings import MODEL_FIELDS
from .errors import InvokeAIHTTPError, QueueItemError

__all__ = [
    "checked_item",
    "image_update",
    "item_read_failure",
    "STATUSES",
    "TERMINAL_STATUSES",
    "ItemFacts",
    "item_error",
    "item_update",
    "job_status",
    "match_model",
    "model_identifier",
    "result_image",
    "told_update",
]

#: InvokeAI's queue item statuses and the core's job statuses they mean.
STATUSES: Mapping[str, JobStatus] = {
    "pending": "queued",
    "in_progress": "running",
    "completed": "done",
    "failed": "failed",
    "canceled": "canceled",
}

#: Queue item statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"completed", "failed", "canceled"})


def job_status(status: Any) -> JobStatus:
    """The core's status for an InvokeAI item status (an unknown one is taken as running:
    the item exists, and polling goes on until it ends)."""
    return STATUSES.get(str(status), "running")


class ItemFacts:
    """What the generator knew when it enqueued the item, to read its answers with.

    ``output_node`` is the node whose image is the result; ``model`` the model's name;
    ``generated`` the size the graph generates at when known in advance; ``seed_used``
    whether the graph takes the seed; ``extra`` goes into the image's metadata.
    """

    def __init__(
        self,
        output_node: str,
        *,
        model: str | None = None,
        generated: tuple[int, int] | None = None,
        seed_used: bool = True,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.output_node = output_node
        self.model = model
        self.generated = generated
        self.seed_used = seed_used
        self.extra = dict(extra or {})

    @classmethod
    def from_ref(cls, data: Mapping[str, Any], default_output: str) -> ItemFacts:
        """The facts saved in a job reference's ``data`` (see :meth:`to_ref`)."""
        generated = data.get("generated")
        return cls(
            str(data.get("output_node") or default_output),
            model=data.get("model"),
            generated=(int(generated[0]), int(generated[1])) if generated else None,
            seed_used=bool(data.get("seed_used", True)),
            extra=data.get("extra") or {},
        )

    def to_ref(self) -> dict[str, Any]:
        """JSON-safe data for a job reference."""
        return {
            "output_node": self.output_node,
            "model": self.model,
            "generated": list(self.generated) if self.generated else None,
            "seed_used": self.seed_used,
            "extra": dict(self.extra),
        }


def item_update(item: Mapping[str, Any], facts: ItemFacts, generator: str | None) -> JobUpdate:
    """What a queue item answer says about the job."""
    status = job_status(item.get("status"))
    if status == "done":
        name, width, height = result_image(item, facts.output_node, generator)
        return image_update(item.get("item_id"), (name, width, height), facts)
    if status == "failed":
        return JobUpdate("failed", error=item_error(item, generator))
    if status == "canceled":
        return JobUpdate(
            "canceled",
            error=JobCanceledError(
                f"InvokeAI queue item {item.get('item_id')} was canceled on the server",
                generator=generator,
            ),
        )
    return JobUpdate(status)


def image_update(
    item_id: Any, image: tuple[str, int | None, int | None], facts: ItemFacts
) -> JobUpdate:
    """The job is done: queue item ``item_id`` made ``image`` (name, width, height)."""
    name, width, height = image
    generated = facts.generated
    if generated is None and width and height:
        generated = (width, height)
    result: dict[str, Any] = {"image_name": name, "item_id": item_id}
    if width and height:
        result["size"] = [width, height]
    return JobUpdate(
        "done",
        result=result,
        seed_used=facts.seed_used,
        model=facts.model,
        generated_size=generated,
        extra={**facts.extra, "queue_item": item_id, "image_name": name},
    )


def told_update(
    item_id: Any,
    ended: str | None,
    image: tuple[str, int | None, int | None] | None,
    facts: ItemFacts,
) -> JobUpdate | None:
    """The job's end as the socket.io events told it, when they are enough not to read the
    item: it ``completed`` (``queue_item_status_changed``) and the ``invocation_complete``
    of its output node named the image. Otherwise (another end, for its error; no image
    named) ``None``: read the item, the source of truth.

    Both events come from the server, after it saved the image; an item canceled while its
    output node ran also sends that node's ``invocation_complete`` (recorded), which is why
    the status is needed too.
    """
    if ended != "completed" or image is None:
        return None
    return image_update(item_id, image, facts)


def item_error(item: Mapping[str, Any], generator: str | None = None) -> QueueItemError:
    """The error for a queue item that ended ``failed``: InvokeAI's own reason."""
    item_id = int(item.get("item_id", -1))
    error_type = item.get("error_type")
    error_message = item.get("error_message")
    reason = ": ".join(str(p) for p in (error_type, error_message) if p) or "no reason given"
    return QueueItemError(
        f"InvokeAI queue item {item_id} failed: {reason}",
        item_id=item_id,
        status=str(item.get("status")),
        error_type=error_type,
        error_message=error_message,
        error_traceback=item.get("error_traceback"),
        generator=generator,
    )


def result_image(
    item: Mapping[str, Any], node_id: str, generator: str | None = None
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
        work="ran",
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


def item_read_failure(exc: GeneratorError, item_id: str) -> GeneratorError | None:
    """What a failed read of queue item ``item_id`` means: ``None`` when InvokeAI has no
    such item (404: deleted), else the error to raise, marked as work that is on the server
    (``work="queued"``: we lost sight of the item, not the item itself)."""
    if isinstance(exc, InvokeAIHTTPError):
        if exc.status_code == 404:
            return None
    elif isinstance(exc, GeneratorConnectionError):
        lost = GeneratorConnectionError(
            f"lost InvokeAI while waiting for queue item {item_id}: {exc}", work="queued"
        )
        lost.__cause__ = exc
        return lost
    exc.work = "queued"
    return exc


def checked_item(item: Any, item_id: str) -> dict[str, Any]:
    """The answer to a read of queue item ``item_id``, if it is one."""
    if not isinstance(item, dict):
        raise GeneratorError(f"queue item {item_id} answered no item", work="queued")
    return item
