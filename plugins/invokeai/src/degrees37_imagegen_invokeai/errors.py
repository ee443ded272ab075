"""The errors the InvokeAI generator raises on top of the core's.

Each one carries what InvokeAI said, so callers can branch on data rather than on text::

    GeneratorError (core)
    ├── QueueItemError                 the queue item failed or was canceled on the server
    ├── InvokeAIServerError            InvokeAI answered 5xx
    └── InvalidRequestError (core)
        └── InvokeAIRequestError       InvokeAI refused the request (4xx, e.g. 422)

Connection problems are the core's ``GeneratorConnectionError``, waits longer than
``max_wait`` the core's ``GeneratorTimeoutError`` (the item is canceled first).
"""

from __future__ import annotations

from typing import Any

from degrees37_imagegen.errors import GeneratorError, InvalidRequestError

__all__ = ["InvokeAIRequestError", "InvokeAIServerError", "QueueItemError"]


class QueueItemError(GeneratorError):
    """The queue item ended ``failed`` (or ``canceled`` by someone else) on the server.

    ``error_type`` and ``error_message`` are InvokeAI's own (e.g. ``Exception`` and
    ``Unknown model: <key>``); ``error_traceback`` is the server's traceback, kept out of
    the message.
    """

    def __init__(
        self,
        message: str,
        *,
        item_id: int,
        status: str,
        error_type: str | None = None,
        error_message: str | None = None,
        error_traceback: str | None = None,
        generator: str | None = None,
    ) -> None:
        super().__init__(message, generator=generator)
        self.item_id = item_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message
        self.error_traceback = error_traceback


class _HTTPError(GeneratorError):
    """The request and InvokeAI's answer, shared by the HTTP errors.

    ``status_code``, ``method`` and ``path`` say what was refused; ``detail`` is InvokeAI's
    ``detail`` field, whole.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        detail: Any = None,
        generator: str | None = None,
    ) -> None:
        super().__init__(message, generator=generator)
        self.status_code = status_code
        self.method = method
        self.path = path
        self.detail = detail


class InvokeAIRequestError(_HTTPError, InvalidRequestError):
    """InvokeAI refused the request (4xx). ``detail`` is its ``detail`` field, whole."""


class InvokeAIServerError(_HTTPError):
    """InvokeAI failed to handle the request (5xx)."""
