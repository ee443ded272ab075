"""TLS contexts shared by every HTTP client of the process.

Each ``httpx`` client made with ``verify=True`` builds a context of its own, reading the
whole CA bundle (~50 ms of CPU); a pool of servers, each with a sync and an async client,
paid that again and again. These are made once per setting and handed to every client,
and a client of a plain ``http://`` server gets one that reads no CA bundle at all.
:mod:`ssl` is imported when a context is first made, not with this module (the plugins
import it at start-up).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

__all__ = ["http_verify", "ssl_context", "ssl_context_for"]


def ssl_context(verify: bool = True) -> ssl.SSLContext:
    """The process's TLS context for clients that check certificates (``verify``) or not.

    Made as ``httpx`` makes its own: the CAs of ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when
    one is set, else certifi's; with ``verify`` off, a context that checks nothing.
    """
    if not verify:
        return _context(False, None, None)
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = None if cafile else os.environ.get("SSL_CERT_DIR") or None
    return _context(True, cafile, capath)


def ssl_context_for(url: str, verify: bool = True) -> ssl.SSLContext | None:
    """The context a client of ``url`` needs: :func:`ssl_context` for ``https`` and ``wss``;
    ``None`` for plain ``http`` and ``ws``, whose clients never read the CA bundle."""
    if url.lower().startswith(("https:", "wss:")):
        return ssl_context(verify)
    return None


def http_verify(url: str, verify: bool = True) -> ssl.SSLContext:
    """What an HTTP client of ``url`` takes as its context (httpx's ``verify``): that of
    :func:`ssl_context_for` for ``https``; for plain ``http``, one that loads no CA (the
    bundle costs ~50 ms of CPU) and so trusts no TLS server: such a client never speaks
    TLS, and if it were ever sent to an ``https`` URL it would fail, not connect unchecked.
    With an ``https://`` proxy in the environment (httpx reaches it with this context) it is
    :func:`ssl_context`'s.
    """
    context = ssl_context_for(url, verify)
    if context is not None:
        return context
    from urllib.request import getproxies  # as httpx reads them (imported by httpx anyway)

    if any(str(proxy).lower().startswith("https:") for proxy in getproxies().values()):
        return ssl_context(verify)
    return _trusting_none()


@functools.lru_cache(maxsize=1)
def _trusting_none() -> ssl.SSLContext:
    import ssl

    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # checks certificates, knows no CA


@functools.lru_cache(maxsize=8)
def _context(verify: bool, cafile: str | None, capath: str | None) -> ssl.SSLContext:
    import ssl

    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if cafile is None and capath is None:
        try:
            import certifi
        except ImportError:  # the core alone: the system's CAs
            return ssl.create_default_context()
        cafile = certifi.where()
    return ssl.create_default_context(cafile=cafile, capath=capath)
