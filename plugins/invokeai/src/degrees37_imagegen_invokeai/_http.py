"""Turning httpx failures and InvokeAI's error answers into the library's errors (no I/O).

Transport failures say in ``work`` whether the request reached the server: ``not_sent``
when it cannot have (nothing to find or undo), ``unknown`` when the answer was lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from degrees37_imagegen._lazy import lazy_module
from degrees37_imagegen.errors import (
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    Work,
)
from degrees37_imagegen.redaction import redact_url

from .errors import InvokeAIAuthenticationError, InvokeAIRequestError, InvokeAIServerError

if TYPE_CHECKING:
    import httpx
else:  # imported when a request is made (see degrees37_imagegen._lazy)
    httpx = lazy_module("httpx")

__all__ = [
    "check_response",
    "is_not_sent_error",
    "json_body",
    "summarize_validation_errors",
    "transport_error",
    "was_not_sent",
]


def is_not_sent_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is an httpx error raised before any byte of the request reached the
    server (retrying the request cannot make the server act twice)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


_MAX_SHOWN_ERRORS = 3
_MAX_SUMMARY = 200
_MAX_ERROR_MESSAGE = 100
_MAX_MESSAGE = 160


def was_not_sent(error: BaseException) -> bool:
    """Whether ``error`` (or the httpx error it wraps) happened before the request was sent."""
    if isinstance(error, GeneratorError) and error.work == "not_sent":
        return True
    cause = error if isinstance(error, httpx.HTTPError) else error.__cause__
    return is_not_sent_error(cause)


def transport_error(
    exc: httpx.HTTPError, method: str, url: str, generator: str | None = None
) -> GeneratorError:
    """The library error for an httpx transport failure (no answer from the server); a
    password in ``url`` is not shown."""
    what = f"{method} {redact_url(url)}"
    work: Work = "not_sent" if is_not_sent_error(exc) else "unknown"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return GeneratorConnectionError(
            f"cannot connect to InvokeAI for {what}: {exc or type(exc).__name__}",
            generator=generator,
            work=work,
        )
    if isinstance(exc, httpx.TimeoutException):
        return GeneratorTimeoutError(
            f"InvokeAI did not answer {what} in time ({type(exc).__name__})",
            generator=generator,
            work=work,
        )
    return GeneratorConnectionError(
        f"connection to InvokeAI failed during {what}: {exc or type(exc).__name__}",
        generator=generator,
        work=work,
    )


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:_MAX_MESSAGE] if text else None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    # A bad node type's message lists all ~300 valid types; the sentence before is enough.
    head, sep, _ = text.partition(": '")
    if sep and len(text) > limit and len(head) < limit:
        return head
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _location(loc: list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    # Inside a node, pydantic adds the node type (the union's tag) after the node id.
    if "nodes" in parts:
        i = parts.index("nodes")
        if len(parts) > i + 3:
            del parts[i + 2]
    return ".".join(parts)


def summarize_validation_errors(detail: Any) -> str:
    """A short, readable summary of FastAPI's 422 ``detail`` list.

    ``[{"loc": ["body", "batch", "graph", "nodes", "n", "noise", "width"], "msg": "Input
    should be a multiple of 8", "input": 1001}]`` becomes ``batch.graph.nodes.n.width:
    Input should be a multiple of 8 (got 1001)``. At most three errors are shown, fewer
    when they are long.
    """
    if not isinstance(detail, list):
        return _shorten(str(detail))
    parts: list[str] = []
    for error in detail[:_MAX_SHOWN_ERRORS]:
        if not isinstance(error, dict):
            part = _shorten(str(error), _MAX_ERROR_MESSAGE)
        else:
            where = _location(error.get("loc") or [])
            part = _shorten(str(error.get("msg", "invalid")), _MAX_ERROR_MESSAGE)
            value = error.get("input")
            if isinstance(value, (str, int, float, bool)) and len(repr(value)) <= 40:
                part += f" (got {value!r})"
            if where:
                part = f"{where}: {part}"
        if parts and sum(map(len, parts)) + len(part) > _MAX_SUMMARY:
            break
        parts.append(part)
    more = len(detail) - len(parts)
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def check_response(response: httpx.Response, generator: str | None = None) -> None:
    """Raise the library error for an InvokeAI error answer; do nothing on success.

    An error answer means the server handled the request and did not act on it: the
    errors say ``work="not_sent"``, except a 5xx (it may have acted before failing).
    """
    status = response.status_code
    if status < 400:
        return
    method = response.request.method
    path = response.request.url.path
    detail = _detail(response)
    what = f"{method} {path}"
    if status in (401, 403):
        raise InvokeAIAuthenticationError(
            f"InvokeAI refused {what} ({status}: {_shorten(str(detail))}); check the token setting",
            status_code=status,
            method=method,
            path=path,
            detail=detail,
            generator=generator,
            work="not_sent",
        )
    if status == 429 or status == 503:
        raise GeneratorLimitError(
            f"InvokeAI is busy ({status}) for {what}: {_shorten(str(detail))}",
            retry_after=_retry_after(response),
            generator=generator,
            work="not_sent",
        )
    if status == 409:
        # InvokeAI answers 409 while image storage maintenance runs: worth retrying later.
        raise GeneratorLimitError(
            f"InvokeAI cannot serve {what} right now (409): {_shorten(str(detail))}",
            retry_after=_retry_after(response),
            generator=generator,
            work="not_sent",
        )
    if status in (502, 504):
        raise GeneratorConnectionError(
            f"a proxy in front of InvokeAI answered {status} to {what}",
            generator=generator,
            work="unknown",
        )
    if status >= 500:
        raise InvokeAIServerError(
            f"InvokeAI failed on {what} ({status}): {_shorten(str(detail))}",
            status_code=status,
            method=method,
            path=path,
            detail=detail,
            generator=generator,
            work="unknown",
        )
    summary = summarize_validation_errors(detail) if status == 422 else _shorten(str(detail))
    raise InvokeAIRequestError(
        f"InvokeAI rejected {what} ({status}): {summary}",
        status_code=status,
        method=method,
        path=path,
        detail=detail,
        generator=generator,
        work="not_sent",
    )


def json_body(response: httpx.Response, generator: str | None = None) -> Any:
    """The JSON body of a successful answer.

    InvokeAI answers unknown paths with its web UI's HTML page (status 200), so an answer
    that is not JSON means the URL does not lead to InvokeAI's API.
    """
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        raise GeneratorError(
            f"{response.request.method} {response.request.url} answered "
            f"{content_type.split(';')[0] or 'no content type'}, not InvokeAI's JSON: is "
            "base_url the root of an InvokeAI server (e.g. http://localhost:9090)?",
            generator=generator,
        )
    try:
        return response.json()
    except ValueError as exc:
        raise GeneratorError(
            f"{response.request.method} {response.request.url} answered malformed JSON",
            generator=generator,
        ) from exc
