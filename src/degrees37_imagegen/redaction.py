"""Hiding secret values (API keys, tokens, passwords) from anything shown to a person."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "RedactingLogger",
    "is_secret_key",
    "redact",
    "redact_text",
    "redact_url",
]

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
_BEARER = re.compile(r"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A header line as HTTP and WebSocket libraries log it: "> X-Api-Key: value".
_HEADER_SECRET = re.compile(
    r"^([^\w\n]*[\w-]*(?:token|secret|password|passwd|api[_-]?key|apikey|auth|credential|cookie)"
    r"[\w-]*\s*:\s*)\S.*$",
    re.IGNORECASE | re.MULTILINE,
)


def redact_text(text: str) -> str:
    """Hide URL passwords, secret query parameters, bearer tokens and secret header lines
    (``Authorization: ...``, ``X-Api-Key: ...``) in free text such as log lines."""
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    text = _QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    text = _HEADER_SECRET.sub(rf"\1{REDACTED}", text)
    return _BEARER.sub(rf"\1{REDACTED}", text)


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records have secrets hidden, for libraries that log what they send.

    ``websockets`` logs every handshake header at DEBUG (``"> %s: %s"``); pass
    ``RedactingLogger(logging.getLogger("websockets.client"), secret_keys)`` as its
    ``logger=`` so that header values named in ``secret_keys`` (or looking secret) are
    hidden before any handler sees them.
    """

    def __init__(self, logger: logging.Logger, secret_keys: Collection[str] = ()) -> None:
        super().__init__(logger, {})
        self.secret_keys = {k.lower() for k in secret_keys}

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Leave the message as it is; :meth:`log` does the work once it is formatted."""
        return msg, kwargs

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Format the record, hide its secrets, and pass it on."""
        if not self.isEnabledFor(level):
            return
        if len(args) == 2 and isinstance(args[0], str):
            name = args[0]
            if name.lower() in self.secret_keys or is_secret_key(name):
                args = (name, REDACTED)
        text = str(msg) % args if args else str(msg)
        self.logger.log(level, redact_text(text), **kwargs)


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
