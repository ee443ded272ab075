"""What a request names, looked up on the server once and cached: boards, models, presets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from degrees37_imagegen.errors import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorTimeoutError,
    InvalidRequestError,
)

from ._graphs import SD1_BASES, SDXL_BASES
from ._queue import match_model, model_identifier

__all__ = ["Catalog"]

log = logging.getLogger(__name__)

#: The request for the server's main models (path, query).
MODELS_READ: tuple[str, dict[str, str]] = ("/api/v2/models/", {"model_type": "main"})


def _main_models(data: Any) -> list[dict[str, Any]]:
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise GeneratorError("GET /api/v2/models/ answered no model list")
    return [m for m in models if isinstance(m, dict)]


#: ``read(path, params)``: a GET answered with JSON, retried when safe.
Read = Callable[[str, Mapping[str, Any] | None], Any]
#: ``send(method, path, params)``: a request that changes something, sent once.
Send = Callable[[str, str, Mapping[str, Any] | None], Any]


class Catalog:
    """Boards, models and style presets of one server, each read once under a lock."""

    def __init__(self, read: Read, send: Send) -> None:
        self._read = read
        self._send = send
        self._boards: dict[str, str] = {}
        self._boards_lock = threading.Lock()
        self._models: list[dict[str, Any]] | None = None
        self._models_lock = threading.Lock()
        self._presets: list[dict[str, Any]] | None = None
        self._presets_lock = threading.Lock()

    # -- boards ------------------------------------------------------------------------

    def board_id(self, board_name: str) -> str:
        """The id of the board called ``board_name``, created when there is none."""
        with self._boards_lock:
            cached = self._boards.get(board_name)
            if cached is not None:
                return cached
            board = self._find_board(board_name) or self._create_board(board_name)
            self._boards[board_name] = str(board["board_id"])
            return self._boards[board_name]

    def _find_board(self, board_name: str) -> dict[str, Any] | None:
        boards = self._read("/api/v1/boards/", {"all": "true"})
        matches = [b for b in boards if isinstance(b, dict) and b.get("board_name") == board_name]
        # Several boards may share a name; always take the oldest, so that every run agrees.
        return min(matches, key=lambda b: str(b.get("created_at", ""))) if matches else None

    def _create_board(self, board_name: str) -> dict[str, Any]:
        try:
            board = self._send("POST", "/api/v1/boards/", {"board_name": board_name})
        except (GeneratorConnectionError, GeneratorTimeoutError):
            # The board may exist though the answer was lost: look before failing.
            found = self._find_board(board_name)
            if found is None:
                raise
            return found
        log.info("created InvokeAI board %r (%s)", board_name, board.get("board_id"))
        return dict(board)

    # -- models --------------------------------------------------------------------------

    def models(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's main models (``GET /api/v2/models/?model_type=main``), cached."""
        with self._models_lock:
            if self._models is None or refresh:
                self._models = _main_models(self._read(*MODELS_READ))
            return list(self._models)

    @property
    def models_read(self) -> bool:
        """Whether the model list has been read (and is kept)."""
        return self._models is not None

    def keep_models(self, data: Any) -> None:
        """Keep the model list from an answer to :data:`MODELS_READ` read elsewhere (the
        async driver's own client)."""
        models = _main_models(data)
        with self._models_lock:
            self._models = models

    def resolve_model(self, spec: Any, *, setting: str | None = "default_model") -> dict[str, Any]:
        """The model record for ``spec``: a key, a name, a full identifier, or ``None``.

        ``None`` picks the first SDXL main model by name, else the first SD 1.x/2.x one. An
        unknown model is a :class:`ConfigError` naming ``setting`` (an
        :class:`InvalidRequestError` when ``setting`` is ``None``) listing installed models.
        """
        if isinstance(spec, Mapping):
            return model_identifier(spec)
        models = self.models()
        if spec is None:
            for bases in (SDXL_BASES, SD1_BASES):
                usable = sorted(
                    (m for m in models if m.get("base") in bases), key=lambda m: str(m.get("name"))
                )
                if usable:
                    log.info("default_model is not set; using %r", usable[0].get("name"))
                    return usable[0]
            raise _model_error(
                "is not set and InvokeAI has no SDXL or SD 1.x model", models, setting
            )
        found = match_model(models, str(spec))
        if found is None:
            models = self.models(refresh=True)  # installed since the list was read?
            found = match_model(models, str(spec))
        if found is None:
            raise _model_error(f"InvokeAI has no main model {spec!r}", models, setting)
        return found

    # -- style presets -------------------------------------------------------------------

    def style_presets(self, refresh: bool = False) -> list[dict[str, Any]]:
        """The server's style presets (``GET /api/v1/style_presets/``), cached."""
        with self._presets_lock:
            if self._presets is None or refresh:
                data = self._read("/api/v1/style_presets/", None)
                if not isinstance(data, list):
                    raise GeneratorError("GET /api/v1/style_presets/ answered no list")
                self._presets = [p for p in data if isinstance(p, dict)]
            return list(self._presets)

    def style_preset(self, preset_name: str) -> dict[str, Any]:
        """The style preset called ``preset_name`` (the exact name first, then any case).

        An unknown name raises :class:`InvalidRequestError` listing the available presets.
        """
        presets: list[dict[str, Any]] = []
        for refresh in (False, True):
            presets = self.style_presets(refresh=refresh)
            for exact in (True, False):
                for preset in presets:
                    name = str(preset.get("name", ""))
                    if name == preset_name or (
                        not exact and name.casefold() == preset_name.casefold()
                    ):
                        return preset
        names = ", ".join(sorted(str(p.get("name")) for p in presets)) or "none"
        raise InvalidRequestError(
            f"style_preset: InvokeAI has no style preset {preset_name!r}; available: {names}"
        )


def _model_error(problem: str, models: list[dict[str, Any]], setting: str | None) -> GeneratorError:
    installed = ", ".join(f"{m.get('name')} ({m.get('base')}, key {m.get('key')})" for m in models)
    message = f"{problem}; installed main models: {installed or 'none'}"
    if setting is None:
        return InvalidRequestError(f"model: {message}")
    return ConfigError(message, key=setting)
