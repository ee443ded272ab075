"""What an InvokeAI server has, and the inputs a request brings to it: input images
(uploaded once per content), LoRAs (found in its model manager), and the lists behind
``list_models`` and ``check_ready``. A mixin of :class:`InvokeAIGenerator`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from degrees37_imagegen.errors import GeneratorError, InvalidRequestError
from degrees37_imagegen.images import image_inputs, load_image, parse_loras

from ._img2img import INIT_IMAGE, image_placeholders
from ._loras import resolve_loras
from ._settings import SCHEDULERS
from ._upload import upload_image

if TYPE_CHECKING:
    from collections.abc import Callable

    from degrees37_imagegen.images import UploadCache

    from ._api import InvokeAIAPI
    from ._templates import GraphTemplate

__all__ = ["Inventory"]

log = logging.getLogger(__name__)


class Inventory:
    """Input images, LoRAs and the server's lists, for :class:`InvokeAIGenerator`."""

    if TYPE_CHECKING:  # what the generator provides
        name: str
        config: dict[str, Any]
        _template: GraphTemplate | None
        _uploads: UploadCache
        _api: InvokeAIAPI
        retrying: Callable[..., Any]

        def _read(self, path: str, params: Mapping[str, Any] | None = None) -> Any: ...
        def models(self, refresh: bool = False) -> list[dict[str, Any]]: ...
        def resolve_model(
            self, spec: Any, *, setting: str | None = "default_model"
        ) -> dict[str, Any]: ...
        def style_presets(self, refresh: bool = False) -> list[dict[str, Any]]: ...

    def _loras_for(
        self, options: Mapping[str, Any], model: Mapping[str, Any] | None
    ) -> list[tuple[dict[str, Any], float]]:
        wanted = options.get("loras")
        wanted = self.config["loras"] if wanted is None else parse_loras(wanted)
        if not wanted:
            return []
        if self._template is not None or model is None:
            raise InvalidRequestError(
                "loras: the built-in graphs add LoRAs; with a graph_template, put LoRA nodes "
                "in the template"
            )
        base = str(model.get("base"))
        if self._known_loras is not None:  # asked once; again only for a name not in it
            try:
                return resolve_loras(wanted, self._known_loras, base)
            except InvalidRequestError:
                pass
        self._known_loras = self._lora_records()
        return resolve_loras(wanted, self._known_loras, base)

    _known_loras: list[dict[str, Any]] | None = None

    def _lora_records(self) -> list[dict[str, Any]]:
        data = self._read("/api/v2/models/", {"model_type": "lora"})
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise GeneratorError("GET /api/v2/models/ answered no model list")
        return [m for m in models if isinstance(m, dict)]

    def _upload_inputs(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Upload the request's input images (once per content); placeholder -> image name."""
        named = image_inputs(options)
        template = self._template
        if template is not None:
            wanted = image_placeholders(template.graph)
            missing = sorted(wanted - set(named))
            if missing:
                raise InvalidRequestError(
                    f"the graph template ({template.source}) needs the image "
                    + ", ".join(missing)
                    + ": pass init_image=... or images={name: path}"
                )
            unused = sorted(set(named) - wanted)
        else:
            unused = sorted(set(named) - {INIT_IMAGE})
        if unused:
            raise InvalidRequestError(
                f"the graph has no place for the image {', '.join(unused)} (a graph_template "
                "takes images where an image field holds {{name}})"
            )
        loaded = {name: load_image(ref, label=name) for name, ref in named.items()}
        return {
            name: self._uploads.name(
                image, lambda i: upload_image(self._api, i, self.retrying, self.name)
            )
            for name, image in loaded.items()
        }

    def list_models(self, kind: str = "models") -> list[str]:
        """Names the server has: ``models`` (main models), ``loras``, ``schedulers`` (also
        ``samplers``: InvokeAI calls its samplers schedulers), ``boards``, ``style_presets``."""
        if kind == "models":
            return sorted(str(m.get("name")) for m in self.models(refresh=True))
        if kind == "loras":
            return sorted(str(m.get("name")) for m in self._lora_records())
        if kind in ("schedulers", "samplers"):
            return self._schedulers()
        if kind == "boards":
            boards = self._read("/api/v1/boards/", {"all": "true"})
            return sorted(str(b.get("board_name")) for b in boards if isinstance(b, dict))
        if kind == "style_presets":
            return sorted(str(p.get("name")) for p in self.style_presets(refresh=True))
        raise InvalidRequestError(
            f"unknown kind {kind!r}; InvokeAI lists models, loras, samplers, schedulers, "
            "boards, style_presets"
        )

    def _schedulers(self) -> list[str]:
        """The scheduler enum of the server's own schema (the known list if it cannot tell)."""
        try:
            schema = self._read("/openapi.json")
            props = schema["components"]["schemas"]["DenoiseLatentsInvocation"]["properties"]
            names = props["scheduler"]["enum"]
            if isinstance(names, list) and names:
                return [str(n) for n in names]
        except (GeneratorError, KeyError, TypeError) as exc:
            log.info("cannot read the schedulers from the schema (%s); the known list", exc)
        return list(SCHEDULERS)

    def check_ready(self) -> str | None:
        """Why no image can be made with these settings (the model is missing), or ``None``."""
        template = self._template
        if template is not None and "model" not in template.placeholders:
            return None
        try:
            model = self.resolve_model(self.config["default_model"])
            keys = {m.get("key") for m in self.models(refresh=True)}
        except GeneratorError as exc:
            return str(exc)
        if model.get("key") not in keys:  # a full identifier is used as given: is it there?
            return f"InvokeAI has no model with key {model.get('key')!r} ({model.get('name')})"
        return None
