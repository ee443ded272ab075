"""ComfyUI's HTTP protocol as pure functions: what to send, and what the answers mean.

Nothing here does I/O, so that a synchronous and an asynchronous driver can share the
rules: the body of ``POST /prompt``, where a prompt is in ``/queue``, what a ``/history``
entry says about it (:class:`~degrees37_imagegen.JobUpdate`), which images it made, and
what to do to cancel it.

As the captures show: ``/queue`` lists ``[number, prompt_id, prompt, extra_data,
outputs]`` items, pending ones unsorted (they run in order of ``number``); a prompt has a
``/history`` entry only once it is over, with ``status.status_str`` ``success`` or
``error`` and the messages of its run (``execution_cached``, ``execution_error``,
``execution_interrupted``...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from degrees37_imagegen.errors import JobCanceledError, JobFailedError
from degrees37_imagegen.job import JobUpdate
from degrees37_imagegen.progress import Progress

from ._errors import ComfyUIExecutionError, ComfyUIInterruptedError

__all__ = [
    "CANCEL_SETTLE",
    "canceled_by_us",
    "history_client_id",
    "QueueState",
    "cancel_action",
    "gone_update",
    "history_entry",
    "history_update",
    "output_images",
    "prompt_body",
    "queue_state",
    "queue_update",
    "read_request",
]


def prompt_body(workflow: Mapping[str, Any], client_id: str, prompt_id: str) -> dict[str, Any]:
    """The body of ``POST /prompt``: our own ``prompt_id`` (so that a lost answer can be
    looked up instead of sent again) and our ``client_id`` (without one, ComfyUI sends no
    execution messages to anyone)."""
    return {"prompt": dict(workflow), "client_id": client_id, "prompt_id": prompt_id}


@dataclass(frozen=True)
class QueueState:
    """Where a prompt is in ``/queue``: ``running``, ``pending`` or ``None`` (not there).

    ``position`` counts from 1 among the pending prompts (by ``number``); ``client_id`` is
    the client that submitted it, as the queue item says.
    """

    where: Literal["running", "pending"] | None
    position: int | None = None
    client_id: str | None = None
    workflow: Mapping[str, Any] | None = None


def _item_id(item: Any) -> Any:
    return item[1] if isinstance(item, list) and len(item) > 1 else None


def _client_of(item: list[Any]) -> str | None:
    extra = item[3] if len(item) > 3 else None
    client = extra.get("client_id") if isinstance(extra, Mapping) else None
    return str(client) if client else None


def _workflow_of(item: list[Any]) -> Mapping[str, Any] | None:
    workflow = item[2] if len(item) > 2 else None
    return workflow if isinstance(workflow, Mapping) else None


def queue_state(queue: Any, prompt_id: str) -> QueueState:
    """Where ``prompt_id`` is in a ``GET /queue`` answer."""
    if not isinstance(queue, Mapping):
        return QueueState(None)
    running = [i for i in queue.get("queue_running") or [] if isinstance(i, list)]
    pending = [i for i in queue.get("queue_pending") or [] if isinstance(i, list)]
    for item in running:
        if _item_id(item) == prompt_id:
            return QueueState("running", None, _client_of(item), _workflow_of(item))
    for item in pending:
        if _item_id(item) == prompt_id:
            number = item[0]
            position = None
            if isinstance(number, (int, float)):
                position = 1 + sum(
                    1
                    for other in pending
                    if other and isinstance(other[0], (int, float)) and other[0] < number
                )
            return QueueState("pending", position, _client_of(item), _workflow_of(item))
    return QueueState(None)


def cancel_action(state: QueueState) -> Literal["delete", "interrupt"] | None:
    """What cancels a prompt in ``state``: ``delete`` it from the pending queue,
    ``interrupt`` it (only ever with its own ``prompt_id``) while it runs, or nothing."""
    if state.where == "pending":
        return "delete"
    if state.where == "running":
        return "interrupt"
    return None


#: How long a cancel waits to see how a prompt it interrupted ended (seconds): ComfyUI
#: checks the interrupt between nodes, so a prompt on its last node may still succeed.
CANCEL_SETTLE = 2.0


def canceled_by_us(entry: Mapping[str, Any] | None) -> bool | None:
    """Whether a cancel stopped the prompt, from its ``/history`` entry: ``False`` when it
    finished anyway (it started before the delete, or ended before the interrupt took
    hold), ``True`` when it ended interrupted or failed, ``None`` while it has no entry."""
    if entry is None:
        return None
    return history_update(entry, "").status != "done"


def history_entry(answer: Any, prompt_id: str) -> dict[str, Any] | None:
    """The entry of ``prompt_id`` in a ``GET /history/{id}`` answer (``{}`` while it has none)."""
    entry = answer.get(prompt_id) if isinstance(answer, Mapping) else None
    return dict(entry) if isinstance(entry, Mapping) else None


def history_client_id(entry: Mapping[str, Any]) -> str:
    """The client id a ``/history`` entry's prompt was queued with (``""`` if none)."""
    item = entry.get("prompt")
    return (_client_of(item) or "") if isinstance(item, list) else ""


def output_images(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The images of a history entry, ``{filename, subfolder, type, node}``: saved ones
    (``type: output``) first, then previews."""
    outputs = entry.get("outputs")
    found: list[dict[str, Any]] = []
    if isinstance(outputs, Mapping):
        for node_id, output in outputs.items():
            images = output.get("images") if isinstance(output, Mapping) else None
            for image in images if isinstance(images, list) else []:
                if isinstance(image, Mapping) and image.get("filename"):
                    found.append({**image, "node": str(node_id)})
    return sorted(found, key=lambda image: image.get("type") != "output")


def _messages(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    status = entry.get("status")
    items = status.get("messages") if isinstance(status, Mapping) else None
    return [
        (str(item[0]), item[1])
        for item in items or []
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], Mapping)
    ]


def _cached_nodes(entry: Mapping[str, Any]) -> list[str]:
    for kind, data in _messages(entry):
        nodes = data.get("nodes")
        if kind == "execution_cached" and isinstance(nodes, list):
            return [str(n) for n in nodes]
    return []


def history_update(
    entry: Mapping[str, Any], prompt_id: str, data: Mapping[str, Any] | None = None
) -> JobUpdate:
    """What a prompt's ``/history`` entry says: ``done`` (with its images in ``result``),
    ``failed`` (an execution error, or no image made) or ``canceled`` (interrupted).

    ``data`` is the job's ``JobRef.data``: ``output_index`` (which image to fetch),
    ``seed_used``, ``model`` and ``extra`` as ``start_job`` recorded them.
    """
    data = data or {}
    status = entry.get("status")
    ok = not isinstance(status, Mapping)  # old servers wrote no status; the outputs tell
    if isinstance(status, Mapping):
        ok = status.get("status_str") == "success" or status.get("completed") is True
    if not ok:
        for kind, message in _messages(entry):
            if kind == "execution_error":
                return JobUpdate("failed", error=ComfyUIExecutionError(prompt_id, message))
            if kind == "execution_interrupted":
                return JobUpdate("canceled", error=ComfyUIInterruptedError(prompt_id, message))
        status_str = status.get("status_str") if isinstance(status, Mapping) else None
        return JobUpdate(
            "failed",
            error=JobFailedError(
                f"ComfyUI prompt {prompt_id} ended with status {status_str!r} and no error message",
                job_id=prompt_id,
            ),
        )
    images = output_images(entry)
    if not images:
        return JobUpdate(
            "failed",
            error=JobFailedError(
                f"ComfyUI ran prompt {prompt_id}, but the workflow made no image (does it "
                "end in a SaveImage or PreviewImage node?)",
                job_id=prompt_id,
            ),
        )
    extra: dict[str, Any] = {"prompt_id": prompt_id, **dict(data.get("extra") or {})}
    if len(images) > 1:
        extra["images"] = len(images)
    cached = _cached_nodes(entry)
    nodes = _workflow_nodes(entry)
    if cached and nodes and set(cached) >= nodes:
        extra["cached"] = True
    model = data.get("model")
    return JobUpdate(
        "done",
        result={"images": images, "index": int(data.get("output_index") or 0)},
        seed_used=bool(data.get("seed_used", True)),
        model=str(model) if model else None,
        extra=extra,
    )


def _workflow_nodes(entry: Mapping[str, Any]) -> set[str]:
    prompt = entry.get("prompt")
    workflow = prompt[2] if isinstance(prompt, list) and len(prompt) > 2 else None
    return {str(n) for n in workflow} if isinstance(workflow, Mapping) else set()


def queue_update(state: QueueState, generator: str | None = None) -> JobUpdate | None:
    """The update for a prompt found in ``/queue``, or ``None`` when it is not there."""
    if state.where == "running":
        return JobUpdate("running")
    if state.where == "pending":
        ahead = (state.position or 1) - 1
        return JobUpdate(
            "queued",
            progress=Progress(
                "queued",
                f"waiting behind {ahead} prompts",
                position=state.position,
                generator=generator,
            ),
        )
    return None


def gone_update(prompt_id: str, server: str) -> JobUpdate:
    """The update for a prompt that is neither queued, running nor in the history."""
    return JobUpdate(
        "canceled",
        error=JobCanceledError(
            f"prompt {prompt_id} is neither queued, running nor in the history of ComfyUI "
            f"at {server}: it was deleted from the queue or the server restarted",
            work="not_sent",
        ),
    )


def read_request(
    workflow: Mapping[str, Any],
    targets: Mapping[str, Any],
    placeholders: Mapping[tuple[str, str], str],
) -> dict[str, Any]:
    """The request fields (prompt, negative prompt, size, seed) that a submitted workflow
    holds, read back at the places a template puts them (for a job known only by its id).

    ``targets`` and ``placeholders`` are a :class:`WorkflowTemplate`'s.
    """
    names = {"prompt": ("prompt", "positive"), "negative_prompt": ("negative_prompt", "negative")}
    found: dict[str, Any] = {}
    for field_name in ("prompt", "negative_prompt", "width", "height", "seed"):
        whole = {f"{{{{{name}}}}}" for name in names.get(field_name, (field_name,))}
        places = [(t.node, t.input) for t in targets.get(field_name, ())]
        # A placeholder alone in an input ("{{width}}") was replaced by the value itself.
        places += [key for key, text in placeholders.items() if text.replace(" ", "") in whole]
        for node_id, input_name in places:
            node = workflow.get(node_id)
            inputs = node.get("inputs") if isinstance(node, Mapping) else None
            if isinstance(inputs, Mapping) and input_name in inputs:
                found[field_name] = inputs[input_name]
                break
    return found


def stats_ready(stats: Any) -> bool:
    """Whether a ``/system_stats`` answer is ComfyUI's (it names the ``system``)."""
    return isinstance(stats, Mapping) and "system" in stats
