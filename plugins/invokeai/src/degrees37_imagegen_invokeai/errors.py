"""The errors the InvokeAI generator raises on top of the core's.

Each one carries what InvokeAI said, so callers can branch on data rather than on text::

    GeneratorError (core)
    ├── JobFailedError (core)
    │   └── QueueItemError                 the queue item failed on the server
    └── ServerError (core)                 InvokeAI answered an error status
        └── InvokeAIHTTPError              ... with the request and InvokeAI's ``detail``
            ├── InvokeAIRequestError       4xx, e.g. a 422 (also the core's InvalidRequestError)
            ├── InvokeAIAuthenticationError 401/403 (also the core's AuthenticationError)
            └── InvokeAIServerError        5xx

Connection problems are the core's ``GeneratorConnectionError``, waits longer than
``max_wait`` the core's ``GeneratorTimeoutError`` (the item is canceled first). Every error
says in ``work`` whether the image may exist on the server (see the core's ``Work``).
"""

from __future__ import annotations

import json
from typing import Any

from degrees37_imagegen.errors import (
    AuthenticationError,
    InvalidRequestError,
    JobFailedError,
    ServerError,
    Work,
)

__all__ = [
    "InvokeAIAuthenticationError",
    "InvokeAIHTTPError",
    "InvokeAIRequestError",
    "InvokeAIServerError",
    "QueueItemError",
]

_MAX_BODY = 500


class QueueItemError(JobFailedError):
    """The queue item ended ``failed`` on the server (``work="ran"``).

    ``error_type`` and ``error_message`` are InvokeAI's own (e.g. ``Exception`` and
    ``Unknown model: <key>``); ``error_traceback`` is the server's traceback, kept out of
    the message. ``item_id`` is the queue item, ``job_id`` the same as text.
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
        super().__init__(
            message,
            job_id=str(item_id),
            error_type=error_type,
            error_message=error_message,
            generator=generator,
        )
        self.item_id = item_id
        self.status = status
        self.error_traceback = error_traceback


class InvokeAIHTTPError(ServerError):
    """InvokeAI answered an error status.

    ``status_code`` (also ``status``), ``method`` and ``path`` say what was refused;
    ``detail`` is InvokeAI's ``detail`` field, whole; ``body`` its start, as text.
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
        work: Work | None = None,
    ) -> None:
        super().__init__(
            message, status=status_code, body=_text(detail), generator=generator, work=work
        )
        self.status_code = status_code
        self.method = method
        self.path = path
        self.detail = detail


class InvokeAIRequestError(InvokeAIHTTPError, InvalidRequestError):
    """InvokeAI refused the request (4xx): sending it again gives the same answer."""


class InvokeAIAuthenticationError(InvokeAIHTTPError, AuthenticationError):
    """InvokeAI (or a proxy in front of it) refused our credentials: check ``token``."""


class InvokeAIServerError(InvokeAIHTTPError):
    """InvokeAI failed to handle the request (5xx)."""


def _text(detail: Any) -> str | None:
    if detail is None:
        return None
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return text[:_MAX_BODY]
