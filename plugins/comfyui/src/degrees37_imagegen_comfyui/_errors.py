"""The errors the ComfyUI generator raises, each carrying what the server said.

They all derive from the core errors, so ``except GeneratorError`` still catches them::

    GeneratorError
    ├── ComfyUIExecutionError        a node raised while the prompt ran (``execution_error``)
    ├── ComfyUIInterruptedError      the prompt was interrupted (``execution_interrupted``)
    ├── ComfyUIServerError           an answer that is not ComfyUI's JSON (HTTP 500 text...)
    ├── InvalidRequestError
    │   └── ComfyUIValidationError   ``POST /prompt`` answered 400 (``error`` + ``node_errors``)
    └── GeneratorTimeoutError
        └── ComfyUITimeoutError      the prompt did not finish in time; says what was cancelled
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.errors import (
    GeneratorError,
    GeneratorTimeoutError,
    InvalidRequestError,
)

__all__ = [
    "ComfyUIExecutionError",
    "ComfyUIInterruptedError",
    "ComfyUIServerError",
    "ComfyUITimeoutError",
    "ComfyUIValidationError",
    "format_node_errors",
    "one_line",
]


def one_line(text: str) -> str:
    """Collapse runs of whitespace (newlines included) to single spaces."""
    return re.sub(r"\s+", " ", text).strip()


def _format_error_item(item: Mapping[str, Any]) -> str:
    """One validation error of one node as ComfyUI would say it, on one line."""
    message = one_line(str(item.get("message") or item.get("type") or "error"))
    details = one_line(str(item.get("details") or ""))
    extra = item.get("extra_info")
    input_name = str(extra.get("input_name") or "") if isinstance(extra, Mapping) else ""
    if not input_name:
        return f"{message}: {details}" if details else message
    if details.startswith(f"{input_name}:"):
        # value_not_in_list already reads "ckpt_name: 'x' not in [...]".
        return details
    rest = details[len(input_name) :] if details.startswith(input_name) else details
    rest = rest.lstrip(" ,:-")
    return f"{input_name}: {message}" + (f" ({rest})" if rest else "")


def format_node_errors(node_errors: Mapping[str, Any]) -> str:
    """All nodes' validation errors in one line: ``node 4 (CheckpointLoaderSimple): ...``."""
    parts: list[str] = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, Mapping):
            continue
        class_type = entry.get("class_type")
        label = f"node {node_id}" + (f" ({class_type})" if class_type else "")
        items = [
            _format_error_item(item)
            for item in entry.get("errors") or []
            if isinstance(item, Mapping)
        ]
        parts.append(f"{label}: {'; '.join(items) or 'invalid'}")
    return "; ".join(parts)


class ComfyUIValidationError(InvalidRequestError):
    """ComfyUI refused the workflow (``POST /prompt`` answered 400).

    ``error`` is the server's ``error`` object, ``node_errors`` its per-node errors, both as
    sent. The message lists every node's errors on one line, e.g.
    ``node 4 (CheckpointLoaderSimple): ckpt_name: 'x.safetensors' not in []``.
    """

    def __init__(
        self,
        error: Mapping[str, Any] | str | None,
        node_errors: Mapping[str, Any] | None,
        *,
        generator: str | None = None,
    ) -> None:
        self.error: Any = error
        self.node_errors: dict[str, Any] = dict(node_errors or {})
        if isinstance(error, Mapping):
            summary = one_line(str(error.get("message") or error.get("type") or "invalid"))
            details = one_line(str(error.get("details") or ""))
        else:
            summary, details = one_line(str(error or "invalid prompt")), ""
        message = f"ComfyUI rejected the workflow: {summary}"
        if self.node_errors:
            message += f": {format_node_errors(self.node_errors)}"
        elif details:
            message += f" ({details})"
        super().__init__(message, generator=generator)


class ComfyUIExecutionError(GeneratorError):
    """A node raised while ComfyUI ran the prompt (the ``execution_error`` message).

    Carries ``prompt_id``, ``node_id``, ``node_type``, ``exception_type``,
    ``exception_message`` and ``traceback`` (a list of lines) as the server sent them.
    """

    def __init__(
        self, prompt_id: str, data: Mapping[str, Any], *, generator: str | None = None
    ) -> None:
        self.prompt_id = prompt_id
        self.data = dict(data)
        self.node_id = str(data.get("node_id") or "?")
        self.node_type = str(data.get("node_type") or "?")
        self.exception_type = str(data.get("exception_type") or "")
        self.exception_message = str(data.get("exception_message") or "")
        tb = data.get("traceback")
        self.traceback: list[str] = [str(line) for line in tb] if isinstance(tb, list) else []
        reason = one_line(self.exception_message) or "no message"
        if self.exception_type:
            reason = f"{self.exception_type}: {reason}"
        super().__init__(
            f"ComfyUI failed running node {self.node_id} ({self.node_type}) "
            f"of prompt {prompt_id}: {reason}",
            generator=generator,
        )


class ComfyUIInterruptedError(GeneratorError):
    """The prompt was interrupted on the server (by someone else, or by the web UI)."""

    def __init__(
        self, prompt_id: str, data: Mapping[str, Any], *, generator: str | None = None
    ) -> None:
        self.prompt_id = prompt_id
        self.data = dict(data)
        self.node_id = str(data.get("node_id") or "?")
        self.node_type = str(data.get("node_type") or "?")
        super().__init__(
            f"ComfyUI prompt {prompt_id} was interrupted at node {self.node_id} ({self.node_type})",
            generator=generator,
        )


class ComfyUIServerError(GeneratorError):
    """ComfyUI answered with an HTTP error that carries no JSON (``status_code``, ``text``).

    ComfyUI answers ``500`` with a plain-text body when a request crashes its handler, for
    example a malformed or UI-format workflow.
    """

    def __init__(
        self,
        status_code: int,
        text: str,
        *,
        request: str,
        hint: str = "",
        generator: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.text = text
        self.request = request
        body = one_line(text)[:300] or "(empty body)"
        message = f"ComfyUI answered {request} with HTTP {status_code}: {body}"
        if hint:
            message += f" ({hint})"
        super().__init__(message, generator=generator)


class ComfyUITimeoutError(GeneratorTimeoutError):
    """The prompt did not finish within ``timeout`` seconds.

    ``state`` is where the prompt was then (``"pending"``, ``"running"`` or ``"unknown"``)
    and ``action`` what the generator did about it (``"deleted"`` from the queue,
    ``"interrupted"``, or ``"none"``).
    """

    def __init__(
        self,
        prompt_id: str,
        timeout: float,
        state: str,
        action: str,
        *,
        generator: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.timeout = timeout
        self.state = state
        self.action = action
        what = {
            "deleted": "it was still waiting in the queue and has been removed from it",
            "interrupted": "it was running and has been interrupted",
        }.get(action, f"its state on the server is {state}")
        super().__init__(
            f"ComfyUI did not finish prompt {prompt_id} within {timeout:g}s; {what}",
            generator=generator,
        )
