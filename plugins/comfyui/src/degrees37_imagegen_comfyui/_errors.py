"""The errors the ComfyUI generator raises, each carrying what the server said.

They all derive from the core errors, so ``except GeneratorError`` still catches them::

    GeneratorError
    ├── JobFailedError
    │   └── ComfyUIExecutionError    a node raised while the prompt ran (``execution_error``)
    ├── JobCanceledError
    │   └── ComfyUIInterruptedError  the prompt was interrupted (``execution_interrupted``)
    └── ServerError                  an HTTP error status (``status``, ``body``)
        ├── ComfyUIServerError       an answer that is not ComfyUI's JSON (HTTP 500 text...)
        └── ComfyUIValidationError   ``POST /prompt`` answered 400 (``error`` + ``node_errors``);
                                     also an InvalidRequestError

``ComfyUITimeoutError`` is the core's :class:`GeneratorTimeoutError` under its old name:
the core now waits for jobs (and cancels them on timeout).

:func:`http_error` turns an HTTP error status into one of these, without I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from degrees37_imagegen.errors import (
    AuthenticationError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    InvalidRequestError,
    JobCanceledError,
    JobFailedError,
    ServerError,
    Work,
)

__all__ = [
    "ComfyUIExecutionError",
    "ComfyUIInterruptedError",
    "ComfyUIServerError",
    "ComfyUITimeoutError",
    "ComfyUIValidationError",
    "format_node_errors",
    "http_error",
    "one_line",
]

#: How much of an error body is kept on an error (``body``) and shown in its message.
BODY_LIMIT = 300


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


class ComfyUIValidationError(InvalidRequestError, ServerError):
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
        body: str | None = None,
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
        # Refused: nothing was queued, so sending it again cannot make a duplicate.
        super().__init__(message, status=400, body=body, generator=generator, work="not_sent")


class ComfyUIExecutionError(JobFailedError):
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
            job_id=prompt_id,
            error_type=self.node_type,
            error_message=self.exception_message,
            generator=generator,
        )


class ComfyUIInterruptedError(JobCanceledError):
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
            work="ran",
        )


class ComfyUIServerError(ServerError):
    """ComfyUI answered with an HTTP error that carries no usable JSON.

    ComfyUI answers ``500`` with a plain-text body when a request crashes its handler, for
    example a malformed or UI-format workflow. ``status_code`` and ``text`` are the old
    names of ``status`` and ``body``.
    """

    def __init__(
        self,
        status_code: int,
        text: str,
        *,
        request: str,
        hint: str = "",
        generator: str | None = None,
        work: Work | None = None,
    ) -> None:
        self.status_code = status_code
        self.text = text
        self.request = request
        body = one_line(text)[:BODY_LIMIT] or "(empty body)"
        message = f"ComfyUI answered {request} with HTTP {status_code}: {body}"
        if hint:
            message += f" ({hint})"
        super().__init__(
            message, status=status_code, body=text[:BODY_LIMIT], generator=generator, work=work
        )


#: The core's timeout error under the name this plugin raised before the core waited for jobs.
ComfyUITimeoutError = GeneratorTimeoutError


def http_error(
    status: int,
    text: str,
    *,
    request: str,
    server: str,
    retry_after: float | None = None,
    work: Work | None = None,
) -> GeneratorError:
    """The error for an HTTP error ``status`` that ComfyUI (or a proxy) answered ``request``
    with; ``text`` is the body, ``server`` the address to show (no secrets)."""
    body = text[:BODY_LIMIT]
    if status in (401, 403):
        return AuthenticationError(
            f"ComfyUI at {server} refused {request} (HTTP {status}): check the headers and "
            "api_key settings",
            status=status,
            body=body,
            work=work,
        )
    if status == 404:
        return ServerError(
            f"ComfyUI at {server} answered {request} with HTTP 404: is server_address a "
            "ComfyUI server?",
            status=status,
            body=body,
            work=work,
        )
    if status == 429:
        return GeneratorLimitError(
            f"ComfyUI at {server} is busy (HTTP 429 on {request})", retry_after, work=work
        )
    if status in (502, 503, 504):
        return GeneratorConnectionError(
            f"ComfyUI at {server} is unreachable behind its proxy (HTTP {status} on {request})",
            work=work,
        )
    return ComfyUIServerError(status, text, request=request, work=work)
