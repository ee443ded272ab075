"""What ComfyUI's WebSocket messages mean for one prompt: :class:`PromptTracker` (no I/O).

As the captures show: a prompt is over when ``executing`` arrives with ``node: null`` and
its ``prompt_id`` (``execution_success`` comes just before, and before history is
written). ``status`` is broadcast to every socket; everything else goes only to the socket
of the prompt's ``client_id``. On reconnecting with the same client id the server sends
``status`` and, if that client's prompt is running, ``executing`` with the current node and
no ``prompt_id``. Binary frames are previews and mean nothing here.

The tracker turns each message into a :class:`~degrees37_imagegen.JobUpdate`, or ``None``
when the message says nothing new about our prompt. A ``done`` update from a message has
no ``result``: the driver reads the images from ``/history`` (see ``_protocol``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.job import JobStatus, JobUpdate
from degrees37_imagegen.progress import Progress, Stage

from ._errors import ComfyUIExecutionError, ComfyUIInterruptedError

__all__ = ["KINDS", "PromptTracker", "decode", "entry_from_messages", "told_entry"]


#: The message types that can change what a prompt's tracker or its driver knows (the
#: drivers keep what ``executed`` says a node saved). Any other type (``progress_state``,
#: sent around each node, is the commonest) changes nothing.
KINDS = frozenset(
    {
        "status",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
    }
)

# How ComfyUI writes a message (``json.dumps({"type": event, "data": data})``).
_HEAD = '{"type": "'


def decode(raw: str | bytes) -> Mapping[str, Any] | None:
    """A text frame as a message (``{"type", "data"}``), or ``None`` (binary, not JSON, or
    of a type not in :data:`KINDS`).

    A frame written as ComfyUI writes them names its type first: one of another type is
    skipped without being parsed (several a prompt, the largest ones). Frames written any
    other way, or that could hold a second ``type`` key, are parsed and checked."""
    if not isinstance(raw, str):
        return None
    if raw.startswith(_HEAD):
        end = raw.find('"', len(_HEAD))
        if (
            end > 0
            and raw[len(_HEAD) : end] not in KINDS
            and raw.find('"type"', end) < 0
            and "\\" not in raw
        ):
            return None  # a JSON object's type is its last "type" key: this frame has one
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, Mapping):
        return None
    kind = message.get("type")
    return message if isinstance(kind, str) and kind in KINDS else None


class PromptTracker:
    """Follows one prompt through ComfyUI's messages (no I/O).

    ``class_types`` maps the workflow's node ids to their classes, for progress such as
    ``"3 KSampler"``. :meth:`handle` takes one decoded message and returns what it means.
    Messages about other prompts are ignored.
    """

    def __init__(
        self,
        prompt_id: str,
        class_types: Mapping[str, str],
        *,
        generator: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.class_types = dict(class_types)
        self.generator = generator
        #: ``execution_start`` or a node of our prompt was seen.
        self.started = False
        #: A message said the prompt is over (done, failed or interrupted).
        self.over = False
        #: A message said the prompt succeeded (kept when ``/history`` is read again).
        self.succeeded = False
        #: Node ids ComfyUI served from its cache.
        self.cached: list[str] = []
        self._queue_remaining: int | None = None
        self._ran: set[str] = set()

    def node_label(self, node_id: Any) -> str:
        """``"3 KSampler"``: a node id with its class."""
        class_type = self.class_types.get(str(node_id))
        return f"{node_id} {class_type}" if class_type else str(node_id)

    def _update(self, stage: Stage, message: str, **kwargs: Any) -> JobUpdate:
        status: JobStatus = "queued" if stage == "queued" else "running"
        return JobUpdate(
            status, progress=Progress(stage, message, generator=self.generator, **kwargs)
        )

    def handle(self, message: Mapping[str, Any]) -> JobUpdate | None:
        """What one message says about our prompt, or ``None`` when nothing new."""
        kind = message.get("type")
        data = message.get("data")
        if not isinstance(data, Mapping) or self.over:
            return None
        if kind == "status":
            return self._status(data)
        prompt_id = data.get("prompt_id")
        # Messages without a prompt_id come only to our own socket (see module docstring).
        if prompt_id is not None and prompt_id != self.prompt_id:
            return None
        if kind == "executing":
            return self._executing(data.get("node"), prompt_id)
        if prompt_id is None and kind != "progress":
            return None
        if kind == "execution_start":
            self.started = True
            return self._update("running", "started")
        if kind == "execution_cached":
            nodes = data.get("nodes")
            self.cached = [str(n) for n in nodes] if isinstance(nodes, list) else []
            if self.cached:
                return self._update("running", f"{len(self.cached)} nodes from cache")
            return None
        if kind == "progress":
            value, total = data.get("value"), data.get("max")
            if isinstance(value, int) and isinstance(total, int):
                node = data.get("node")
                label = self.node_label(node) if node is not None else None
                return self._update(
                    "step", f"step {value}/{total}", step=value, total=total, node=label
                )
            return None
        if kind == "execution_success":
            self.over = self.succeeded = True
            return JobUpdate("done")
        if kind == "execution_error":
            self.over = True
            return JobUpdate("failed", error=ComfyUIExecutionError(self.prompt_id, data))
        if kind == "execution_interrupted":
            self.over = True
            return JobUpdate("canceled", error=ComfyUIInterruptedError(self.prompt_id, data))
        return None

    def _executing(self, node: Any, prompt_id: Any) -> JobUpdate | None:
        if node is None:
            if prompt_id != self.prompt_id:
                return None
            self.over = self.succeeded = True
            return JobUpdate("done")
        self.started = True
        self._ran.add(str(node))
        count, of = len(self._ran | set(self.cached)), len(self.class_types)
        where = f"node {count} of {of}" if of >= count else "running"
        return self._update("running", where, node=self.node_label(node))

    def _status(self, data: Mapping[str, Any]) -> JobUpdate | None:
        if self.started or "sid" in data:
            return None  # the greeting a socket gets on connecting predates our prompt
        status = data.get("status")
        info = status.get("exec_info") if isinstance(status, Mapping) else None
        remaining = info.get("queue_remaining") if isinstance(info, Mapping) else None
        if not isinstance(remaining, int) or remaining < 1 or remaining == self._queue_remaining:
            return None
        self._queue_remaining = remaining
        return self._update("queued", f"{remaining} in the server's queue")

    def reopen(self) -> None:
        """A ``done`` message came before ``/history`` had the prompt: keep listening."""
        self.over = False


def entry_from_messages(
    prompt_id: str, outputs: Mapping[str, Any], tracker: PromptTracker
) -> dict[str, Any]:
    """The ``/history`` entry that a successful prompt's messages amount to (its outputs from
    ``executed``, the nodes ComfyUI served from its cache), to be read by the same
    :func:`~._protocol.history_update` as an entry fetched from the server."""
    return {
        "prompt": [0, prompt_id, {node: {} for node in tracker.class_types}],
        "outputs": dict(outputs),
        "status": {
            "status_str": "success",
            "completed": True,
            "messages": [["execution_cached", {"nodes": list(tracker.cached)}]],
        },
    }


def told_entry(tracker: PromptTracker, outputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry the messages amount to once they said the prompt succeeded and what it
    saved, else ``None``: when ``/history`` no longer has the prompt (a restart wiped it),
    its files are still on the server's disk, so it is done, not lost."""
    if not (tracker.succeeded and outputs):
        return None
    return entry_from_messages(tracker.prompt_id, outputs, tracker)
