"""The async drivers' HTTP client: ``httpx.AsyncClient``, made cheaper per request.

The drivers talk httpx (its ``AsyncClient``, its errors, and the ``transport=`` seam tests
inject). :class:`AsyncClient` trims what httpx does per request that a driver's requests
never need; the drivers give it the lean HTTP/1.1 transport of
:mod:`degrees37_imagegen._http11`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import httpx
from httpx._client import ClientState

__all__ = ["AsyncClient"]

#: A path that needs no escaping: merged with the base URL without parsing it on its own.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~/-]*\Z")
#: Merged URLs kept per client (the fixed paths of a protocol, seen first).
_KEPT = 64


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` that joins a plain path to its ``base_url`` without parsing a
    URL, keeps the URLs of the first paths it sees (``/prompt``, ``/queue``...), and skips
    the cookie jar on responses that set no cookie.

    httpx parses a relative URL, then the merged one, checking each character in Python
    (~50 µs a request), and runs every response through ``http.cookiejar`` (~45 µs), even
    without a ``Set-Cookie``: a good part of its cost per request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._merged: dict[str, httpx.URL] = {}
        self._cookies = _Cookies(self._cookies)  # httpx's __init__ does not use the setter

    @property
    def cookies(self) -> httpx.Cookies:
        """The client's cookies (as httpx keeps them)."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: httpx._types.CookieTypes) -> None:
        self._cookies = _Cookies(cookies)

    def build_request(
        self, method: str, url: httpx.URL | str, *, params: Any = None, **kwargs: Any
    ) -> httpx.Request:
        """httpx's ``build_request``; a plain path's string ``params`` are encoded here, as
        httpx encodes them (``urlencode``), without parsing the URL they make again."""
        if params and isinstance(url, str) and not self.params and isinstance(params, dict):
            with_query = _with_query(self._merge_url(url), params)
            if with_query is not None:
                url, params = with_query, None
        return super().build_request(method, url, params=params, **kwargs)

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """httpx's ``send``; a request with no auth to apply (none given, none on the client,
        no user in its URL), no event hooks and no redirect to follow goes straight to the
        transport, without httpx's auth and redirect loops around it (two async generators
        and a loop per request, that would do nothing)."""
        if (
            auth is httpx.USE_CLIENT_DEFAULT
            and self._auth is None
            and not (
                follow_redirects is True
                or (follow_redirects is httpx.USE_CLIENT_DEFAULT and self.follow_redirects)
            )
            and not self._event_hooks["request"]
            and not self._event_hooks["response"]
            and not request.url.userinfo
            and self._state is not ClientState.CLOSED
        ):
            self._state = ClientState.OPENED
            self._set_timeout(request)
            response = await self._send_single_request(request)
            try:
                if response.has_redirect_location:  # as httpx: said, not followed
                    response.next_request = self._build_redirect_request(request, response)
                if not stream:
                    await response.aread()
            except BaseException:
                await response.aclose()
                raise
            return response
        return await super().send(
            request, stream=stream, auth=auth, follow_redirects=follow_redirects
        )

    def _merge_url(self, url: httpx.URL | str) -> httpx.URL:
        if not isinstance(url, str) or not _PLAIN_PATH.match(url) or "/." in url:
            return super()._merge_url(url)
        merged = self._merged.get(url)
        if merged is None:
            merged = _joined(self.base_url, url)
            if len(self._merged) < _KEPT:
                self._merged[url] = merged
        return merged


def _joined(base: httpx.URL, path: str) -> httpx.URL:
    """``base`` (a base URL: ends with ``/``) with the plain ``path`` (``/a/b``: no dot
    segment, nothing to escape) after it, as httpx joins them, but without parsing it: its
    parsed form (a named tuple) with the path replaced. Parsed by httpx when that form is
    not one (another httpx)."""
    parts = getattr(base, "_uri_reference", None)
    if not isinstance(parts, tuple) or parts.query is not None:  # type: ignore[attr-defined]
        return base.copy_with(raw_path=base.raw_path + path[1:].encode("ascii"))
    url = httpx.URL.__new__(httpx.URL)
    url._uri_reference = parts._replace(path=(parts.path or "/") + path[1:])  # type: ignore[attr-defined]
    return url


def _with_query(url: httpx.URL, params: dict[Any, Any]) -> httpx.URL | None:
    """``url`` (without a query) with ``params`` (strings and whole numbers) as its query,
    encoded as httpx encodes them; ``None`` when httpx should do it."""
    parts = getattr(url, "_uri_reference", None)
    if not isinstance(parts, tuple) or parts.query is not None:  # type: ignore[attr-defined]
        return None
    for key, value in params.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (str, int)):
            return None
    joined = httpx.URL.__new__(httpx.URL)
    joined._uri_reference = parts._replace(query=urlencode(params))  # type: ignore[attr-defined]
    return joined


class _Cookies(httpx.Cookies):
    """httpx's cookies, that leave a response without ``Set-Cookie`` alone (the jar would
    find nothing in it, after building two adapter objects to look)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        """Load the cookies the response sets, if it sets any."""
        if "set-cookie" in response.headers:
            super().extract_cookies(response)
