"""Hiding secret values (API keys, tokens, passwords) from anything shown to a person."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text", "redact_url"]

#: What a secret value is replaced with.
REDACTED = "***"

_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|apikey|auth|credential|cookie|private[_-]?key)",
    re.IGNORECASE,
)


def is_secret_key(key: str, extra: Collection[str] = ()) -> bool:
    """Whether a setting or header named ``key`` holds a secret."""
    return key in extra or bool(_SECRET_KEY.search(key))


_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_QUERY_SECRET = re.compile(
    r"((?:token|secret|password|passwd|api[_-]?key|apikey|auth)[^=&\s]*=)[^&\s\"']+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def redact_text(text: str) -> str:
    """Hide URL passwords, secret query parameters and bearer tokens in free text (logs)."""
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    return _BEARER.sub(rf"\1{REDACTED}", text)


def redact_url(url: str) -> str:
    """Hide the password in ``scheme://user:password@host/...`` (and a lone ``token@host``,
    which is how some proxies take a key)."""
    if "@" not in url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _URL_PASSWORD.sub(rf"\1{REDACTED}@", url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    if parts.password is None:
        return urlunsplit(parts._replace(netloc=f"{REDACTED}@{host}"))
    netloc = f"{parts.username}:{REDACTED}@{parts.hostname}"
    if port is not None:
        netloc += f":{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def redact(value: Any, extra: Collection[str] = (), *, _secret: bool = False) -> Any:
    """Return a copy of ``value`` with every secret replaced by :data:`REDACTED`.

    A value is secret when its key looks like one (``api_key``, ``token``, ``Authorization``...)
    or is listed in ``extra``; everything below a secret key is hidden too, and passwords in
    URLs are hidden wherever they appear.
    """
    if isinstance(value, Mapping):
        return {
            k: redact(v, extra, _secret=_secret or is_secret_key(str(k), extra))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, extra, _secret=_secret) for v in value)
    if _secret and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_url(value)
    return value
