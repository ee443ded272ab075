"""ComfyUI's HTTP API: one lazily created ``httpx.Client``, and errors turned into ours.

Only the routes the generator needs: ``POST /prompt``, ``GET /queue``, ``POST /queue``
(delete), ``POST /interrupt``, ``GET /history/{id}``, ``GET /view``, ``GET /object_info/{c}``
and ``GET /system_stats``. Header values are never put into messages or logs. What the
answers mean is decided in ``_protocol`` and ``_errors`` (no I/O); this module only talks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from degrees37_imagegen._lazy import lazy_module
from degrees37_imagegen.errors import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorTimeoutError,
    ServerError,
    Work,
)
from degrees37_imagegen.redaction import redact_url
from degrees37_imagegen.tls import http_verify

from ._errors import BODY_LIMIT, ComfyUIServerError, ComfyUIValidationError, http_error
from ._protocol import history_entry

if TYPE_CHECKING:
    import httpx
else:  # imported when a request is made (see degrees37_imagegen._lazy)
    httpx = lazy_module("httpx")

__all__ = [
    "DEFAULT_PORT",
    "ComfyUIAPI",
    "PromptMaybeSubmitted",
    "parse_server_address",
]

#: The port ComfyUI listens on unless told otherwise.
DEFAULT_PORT = 8188

_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def parse_server_address(value: str) -> tuple[str, str]:
    """``"host:port"`` or a URL -> ``(http base URL, WebSocket URL of /ws)``.

    ``ws://`` and ``wss://`` are read as ``http://`` and ``https://``; a path is kept as a
    prefix (a ComfyUI behind a reverse proxy at ``/comfy``). A bare host gets port 8188.
    Raises :class:`ConfigError` (key ``server_address``) when it cannot be read.
    """
    text = str(value).strip()
    if not text:
        raise ConfigError("must not be empty (e.g. 127.0.0.1:8188)", key="server_address")
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"cannot read {value!r}: {exc}", key="server_address") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ConfigError(
            f"unsupported scheme {parts.scheme!r} in {redact_url(str(value))!r} "
            "(use host:port, http://, https://, ws:// or wss://)",
            key="server_address",
        )
    if not parts.hostname:
        raise ConfigError(f"no host in {redact_url(str(value))!r}", key="server_address")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{redact_url(str(value))!r} has a query or fragment; give only the server's address",
            key="server_address",
        )
    netloc = parts.netloc
    if port is None and "://" not in str(value):
        netloc = f"{netloc}:{DEFAULT_PORT}"
    path = parts.path.rstrip("/")
    http_base = urlunsplit((scheme, netloc, path, "", ""))
    ws_url = urlunsplit(("wss" if scheme == "https" else "ws", netloc, f"{path}/ws", "", ""))
    return http_base, ws_url


class PromptMaybeSubmitted(GeneratorError):
    """``POST /prompt`` failed after the request was sent: the server may have queued it."""

    def __init__(self, cause: GeneratorError) -> None:
        super().__init__(cause.message, generator=cause.generator, work="unknown")
        self.cause = cause
        cause.work = "unknown"


class ComfyUIAPI:
    """A thread-safe client of one ComfyUI server (the ``httpx.Client`` is made on first use).

    Transport failures become :class:`GeneratorConnectionError` or
    :class:`GeneratorTimeoutError`; HTTP errors become the matching generator errors
    (:func:`~._errors.http_error`). ``transport`` is an ``httpx`` transport that tests
    inject (``httpx.MockTransport``, respx), or ``None`` for the network.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        verify: bool,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self.shown_url = redact_url(base_url)
        self._headers = dict(headers)
        self._timeouts = (timeout, connect_timeout)  # an httpx.Timeout with the client
        self._verify = verify
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> httpx.Client:
        """The ``httpx.Client`` shared by every thread, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url,
                    headers=self._headers,
                    timeout=httpx.Timeout(self._timeouts[0], connect=self._timeouts[1]),
                    verify=http_verify(self.base_url, self._verify),
                    follow_redirects=False,
                    transport=self._transport,
                )
            return self._client

    def close(self) -> None:
        """Close the client (a later request makes a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- plumbing ------------------------------------------------------------------------

    def _transport_error(
        self, exc: httpx.HTTPError, label: str, work: Work | None = None
    ) -> GeneratorError:
        name = type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            return GeneratorConnectionError(
                f"cannot connect to ComfyUI at {self.shown_url}: connection timed out",
                work=work,
            )
        if isinstance(exc, httpx.ConnectError):
            reason = str(exc) or name
            return GeneratorConnectionError(
                f"cannot connect to ComfyUI at {self.shown_url}: {reason}", work=work
            )
        if isinstance(exc, httpx.TimeoutException):
            return GeneratorTimeoutError(
                f"ComfyUI at {self.shown_url} did not answer {label} in time ({name})",
                work=work,
            )
        return GeneratorConnectionError(
            f"connection to ComfyUI at {self.shown_url} failed during {label}: {str(exc) or name}",
            work=work,
        )

    def _check(self, response: httpx.Response, label: str, work: Work | None = None) -> None:
        if response.status_code >= 400:
            raise http_error(
                response.status_code,
                _text(response),
                request=label,
                server=self.shown_url,
                retry_after=_retry_after(response),
                work=work,
            )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; raise a generator error for transport or HTTP failures."""
        label = f"{method} {path}"
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, label) from exc
        self._check(response, label)
        return response

    def _json(self, response: httpx.Response, label: str, work: Work | None = None) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ComfyUIServerError(
                response.status_code,
                _text(response),
                request=label,
                hint="expected JSON",
                work=work,
            ) from None

    # -- the routes ----------------------------------------------------------------------

    def post_prompt(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue a prompt (``body`` from :func:`~._protocol.prompt_body`); return ComfyUI's
        answer (``prompt_id``, ``number``...).

        Raises :class:`ComfyUIValidationError` for a 400, :class:`ComfyUIServerError` for
        a plain-text 500 (both ``work="not_sent"``), and :class:`PromptMaybeSubmitted` when
        the connection failed after the request went out, or a proxy gave up waiting for
        ComfyUI (so the caller can look for the prompt rather than submit it twice).
        """
        label = "POST /prompt"
        try:
            response = self.client.post("/prompt", json=dict(body))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._transport_error(exc, label, "not_sent") from exc
        except httpx.HTTPError as exc:
            raise PromptMaybeSubmitted(self._transport_error(exc, label)) from exc
        return self.prompt_answer(response)

    def prompt_answer(self, response: httpx.Response) -> dict[str, Any]:
        """What ``POST /prompt`` answered (the sync and async drivers read it here)."""
        label = "POST /prompt"
        status = response.status_code
        if status == 400:
            data = self._json(response, label, "not_sent")
            if isinstance(data, Mapping) and ("error" in data or "node_errors" in data):
                raise ComfyUIValidationError(
                    data.get("error"), data.get("node_errors"), body=_text(response)[:BODY_LIMIT]
                )
        if status == 500:
            raise ComfyUIServerError(
                500,
                _text(response),
                request=label,
                hint="ComfyUI answers 500 when it cannot read the workflow; its log says why",
                work="not_sent",
            )
        if status in (502, 504):  # a proxy gave up waiting: ComfyUI may have queued it
            error = http_error(status, _text(response), request=label, server=self.shown_url)
            raise PromptMaybeSubmitted(error)
        self._check(response, label, "not_sent")
        data = self._json(response, label, "unknown")
        if not isinstance(data, Mapping) or not isinstance(data.get("prompt_id"), str):
            raise ComfyUIServerError(
                status,
                _text(response),
                request=label,
                hint="the answer has no prompt_id",
                work="unknown",
            )
        return dict(data)

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of ``prompt_id``, or ``None`` while it has none."""
        label = f"GET /history/{prompt_id}"
        return history_entry(
            self._json(self.request("GET", f"/history/{prompt_id}"), label), prompt_id
        )

    def queue(self) -> Any:
        """``GET /queue`` as sent (read it with :func:`~._protocol.queue_state`)."""
        return self._json(self.request("GET", "/queue"), "GET /queue")

    def delete_from_queue(self, prompt_id: str) -> None:
        """Remove ``prompt_id`` from the pending queue (a no-op once it runs)."""
        self.request("POST", "/queue", json={"delete": [prompt_id]})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id``; the server does it only if that prompt is running."""
        self.request("POST", "/interrupt", json={"prompt_id": prompt_id})

    def object_info(self, class_type: str) -> dict[str, Any]:
        """``/object_info/{class_type}`` (``{}`` for a class the server does not know)."""
        label = f"GET /object_info/{class_type}"
        data = self._json(self.request("GET", f"/object_info/{class_type}"), label)
        return dict(data) if isinstance(data, Mapping) else {}

    def system_stats(self) -> dict[str, Any]:
        """``/system_stats``: versions and devices."""
        data = self._json(self.request("GET", "/system_stats"), "GET /system_stats")
        return dict(data) if isinstance(data, Mapping) else {}

    def view(self, image: Mapping[str, Any]) -> Iterator[bytes]:
        """Stream one output image (``{filename, subfolder, type}``) from ``/view``, chunk by
        chunk; the request starts at the first chunk and ends when the iterator is closed."""
        params = {
            "filename": str(image.get("filename", "")),
            "subfolder": str(image.get("subfolder", "")),
            "type": str(image.get("type", "output")),
        }
        label = f"GET /view?filename={params['filename']}"
        try:
            with self.client.stream("GET", "/view", params=params) as response:
                if response.status_code == 404:
                    raise ServerError(
                        f"ComfyUI at {self.shown_url} has no file {params['filename']!r} "
                        f"(type {params['type']!r}, subfolder {params['subfolder']!r}); "
                        "was it deleted?",
                        status=404,
                        work="ran",
                    )
                if response.status_code >= 400:
                    response.read()
                self._check(response, label)
                yield from response.iter_bytes()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, label) from exc


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except Exception:  # an undecodable body is still worth reporting by its size
        return f"<{len(response.content)} bytes>"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
