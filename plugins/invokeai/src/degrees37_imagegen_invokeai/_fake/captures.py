"""The recordings of a real InvokeAI 6.14.2 that the fake answers from (package data)."""

from __future__ import annotations

import copy
import json
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import httpx

from .schema import OpenAPISchema

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["CAPTURES", "CaptureFolder", "Captures", "schema_of"]

#: A folder of captures: a directory, or the package data shipped with the plugin.
CaptureFolder = Union[Path, "Traversable"]

#: The captures the fake reads, recorded from a real InvokeAI 6.14.2 (package data).
CAPTURES: CaptureFolder = resources.files("degrees37_imagegen_invokeai") / "_captures"

_SCHEMAS: dict[str, OpenAPISchema] = {}
_SCHEMAS_LOCK = threading.Lock()


class Captures:
    """The capture files, read once: by default the ones shipped with the plugin."""

    def __init__(self, folder: CaptureFolder = CAPTURES) -> None:
        self.folder = folder
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    def record(self, name: str) -> dict[str, Any]:
        """A ``{request, status, elapsed_s, headers, body}`` record (a deep copy)."""
        with self._lock:
            if name not in self._cache:
                self._cache[name] = json.loads((self.folder / name).read_text(encoding="utf-8"))
            return copy.deepcopy(self._cache[name])

    def body(self, name: str) -> Any:
        """The body of a captured answer."""
        return self.record(name)["body"]

    def bytes(self, name: str) -> bytes:
        """A captured binary file."""
        return (self.folder / name).read_bytes()

    def response(self, name: str, body: Any = None, status: int | None = None) -> httpx.Response:
        """The captured answer ``name`` (status, content type), with ``body`` if given."""
        rec = self.record(name)
        content = rec["body"] if body is None else body
        headers = {"content-type": rec["headers"].get("content-type", "application/json")}
        if isinstance(content, str) and not headers["content-type"].startswith("application/json"):
            return httpx.Response(status or rec["status"], text=content, headers=headers)
        return httpx.Response(
            status or rec["status"], content=json.dumps(content).encode(), headers=headers
        )


def schema_of(captures: Captures) -> OpenAPISchema:
    """The validator over ``openapi.json`` in ``captures``' folder (parsed once per folder)."""
    key = str(captures.folder)
    with _SCHEMAS_LOCK:
        if key not in _SCHEMAS:
            text = (captures.folder / "openapi.json").read_text(encoding="utf-8")
            _SCHEMAS[key] = OpenAPISchema(json.loads(text))
        return _SCHEMAS[key]
