"""Whether a generator is ready, and if not, why: :func:`check_generator`.

``test_connection()`` answers yes or no. A person wants the reason, e.g.
``connection refused at 127.0.0.1:8188``. :func:`check_generator` finds one without asking
every plugin for a new method: the error ``test_connection()`` raised, else a probe of the
server the generator addresses (a TCP connection, 2 s at most), else the last message the
plugin logged while it tested.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .errors import GeneratorError
from .redaction import redact_text

if TYPE_CHECKING:
    from .base import BaseImageGenerator
    from .batch.pool import PoolMember

__all__ = ["PROBE_TIMEOUT", "check_generator", "probe_server", "server_address"]

#: How long :func:`probe_server` waits for a TCP connection (seconds).
PROBE_TIMEOUT = 2.0

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def server_address(server: str) -> tuple[str, int] | None:
    """``("127.0.0.1", 8188)`` from ``http://127.0.0.1:8188/`` or ``127.0.0.1:8188``;
    ``None`` when no host and port can be told (credentials in a URL are never kept)."""
    text = server.strip()
    try:
        parts = urlsplit(text if "://" in text else f"//{text}")
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not host:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(parts.scheme.lower())
    return (host, port) if port is not None else None


def probe_server(server: str, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Try a TCP connection to ``server``: ``(True, "HOST:PORT answers")`` or
    ``(False, reason)`` such as ``connection refused at 127.0.0.1:8188``."""
    address = server_address(server)
    if address is None:
        return False, f"cannot tell host and port from {redact_text(server)!r}"
    host, port = address
    where = f"{host}:{port}"
    try:
        with socket.create_connection(address, timeout=timeout):
            return True, f"{where} answers"
    except ConnectionRefusedError:
        return False, f"connection refused at {where}"
    except socket.gaierror:
        return False, f"cannot resolve host {host}"
    except TimeoutError:
        return False, f"no answer from {where} within {timeout:g}s"
    except OSError as exc:
        return False, f"cannot connect to {where}: {exc.strerror or exc}"


class _LastMessage(logging.Handler):
    """Keeps the last message logged at INFO or above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # A badly formatted log call gives no reason, that is all.
        with contextlib.suppress(Exception):
            self.message = record.getMessage()


@contextmanager
def _last_logged() -> Iterator[_LastMessage]:
    root = logging.getLogger()
    handler = _LastMessage()
    level = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # plugins log why they are not ready at INFO
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _test(gen: BaseImageGenerator) -> tuple[bool, str | None, str | None]:
    """``(ok, error, last logged message)`` of ``gen.test_connection()``."""
    with _last_logged() as logged:
        try:
            ok = bool(gen.test_connection())
            error = None
        except GeneratorError as exc:
            ok, error = False, str(exc)
        except Exception as exc:  # a plugin's own failure is a reason like any other
            ok, error = False, f"test_connection() failed: {type(exc).__name__}: {exc}"
    return ok, error, logged.message


def check_generator(gen: BaseImageGenerator, *, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Whether ``gen`` is ready, and why: ``(True, "ready")`` or ``(False, reason)``.

    Never raises for a generator that fails. The reason of a failure is the error
    ``test_connection()`` raised; else, for a generator that addresses a server, why a TCP
    connection to it fails (``connection refused at 127.0.0.1:8188``); else the last message
    the plugin logged while testing; else that ``test_connection()`` said no. A pool is
    ready when every server is; its reason names the servers that are not.
    """
    from .batch.pool import GeneratorPool

    if isinstance(gen, GeneratorPool):
        return _check_pool(gen.members, timeout)
    ok, error, logged = _test(gen)
    if ok:
        return _can_make_images(gen)
    if error is not None:
        return False, redact_text(error)
    server = gen.server
    if server:
        reachable, reason = probe_server(server, timeout)
        if not reachable:
            return False, reason
        if logged:
            return False, redact_text(logged)
        return False, f"{reason}, but test_connection() says it is not ready"
    if logged:
        return False, redact_text(logged)
    return False, "test_connection() says it is not ready"


def _can_make_images(gen: BaseImageGenerator) -> tuple[bool, str]:
    """A server that answers may still lack what an image needs (a model, a checkpoint):
    ``check_ready()`` says why not, or ``None``."""
    try:
        reason = gen.check_ready()
    except Exception as exc:  # a plugin's own failure is a reason like any other
        return False, f"check_ready() failed: {type(exc).__name__}: {exc}"
    return (True, "ready") if reason is None else (False, redact_text(str(reason)))


def _check_pool(members: list[PoolMember], timeout: float) -> tuple[bool, str]:
    failures: list[str] = []
    for member in members:
        ok, reason = check_generator(member.generator, timeout=timeout)
        if not ok:
            failures.append(f"{member.label}: {reason}")
    if not failures:
        return True, f"ready ({len(members)} servers)"
    ready = len(members) - len(failures)
    return False, f"{ready} of {len(members)} servers ready; " + "; ".join(failures)
