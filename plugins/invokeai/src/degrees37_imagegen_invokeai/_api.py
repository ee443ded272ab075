"""InvokeAI's HTTP API: one ``httpx.Client`` per generator, each call made once.

Nothing here retries: the generator decides which calls are safe to repeat (it wraps those
in the core's ``retrying``). Failures become the library's errors (:mod:`._http`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from degrees37_imagegen._lazy import lazy_module
from degrees37_imagegen.errors import GeneratorError
from degrees37_imagegen.tls import http_verify

from ._http import check_response, json_body, transport_error

if TYPE_CHECKING:
    import httpx
else:  # imported when a request is made (see degrees37_imagegen._lazy)
    httpx = lazy_module("httpx")

__all__ = ["QUEUE", "InvokeAIAPI"]

log = logging.getLogger(__name__)

#: What the connection test asks: InvokeAI's JSON, not the web UI's HTML.
VERSION_PATH = "/api/v1/app/version"

#: The queue routes (InvokeAI has one queue, ``default``).
QUEUE = "/api/v1/queue/default"
_CHUNK = 1 << 16


class InvokeAIAPI:
    """The HTTP side of one InvokeAI server; ``transport`` is an httpx transport for tests."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._token = token
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        """The client (made on first use, after :meth:`close` again)."""
        with self._lock:
            if self._client is None:
                headers = {"Accept": "application/json"}
                if self._token:
                    headers["Authorization"] = f"Bearer {self._token}"
                self._client = httpx.Client(
                    base_url=self.base_url,
                    timeout=self._timeout,
                    headers=headers,
                    verify=http_verify(self.base_url),  # no CA bundle read for plain http
                    transport=self._transport,
                    limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
                )
            return self._client

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """One request answered with JSON; its answer's body."""
        log.debug("%s %s %s", method, path, dict(params or {}))
        try:
            response = self.client().request(method, path, params=params, json=json)
        except httpx.HTTPError as exc:
            raise transport_error(exc, method, self.base_url + path) from exc
        check_response(response)
        return json_body(response)

    def image_path(self, name: str) -> str:
        """The path of an image's full-size file."""
        return f"/api/v1/images/i/{quote(name, safe='')}/full"

    def stream_image(self, name: str, generator: str | None = None) -> Iterator[bytes]:
        """The image's bytes, in chunks, as they arrive.

        Errors raised while iterating carry ``generator`` (the core names the generator on
        errors of the steps it calls, not on those of the iterator they return).
        """
        path = self.image_path(name)
        url = self.base_url + path
        try:
            with self.client().stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    check_response(response, generator)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("image/"):
                    raise GeneratorError(
                        f"GET {url} answered {content_type or 'no content type'}, not an image",
                        generator=generator,
                    )
                yield from response.iter_bytes(chunk_size=_CHUNK)
        except httpx.HTTPError as exc:
            raise transport_error(exc, "GET", url, generator) from exc
