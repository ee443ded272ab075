"""What a ComfyUI server has, and the inputs a request brings to it: input images
(uploaded once per content), LoRAs (a LoraLoader chain), the built-in img2img workflow, and
the lists behind ``list_models`` and ``check_ready``. A mixin of :class:`ComfyUIGenerator`."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from degrees37_imagegen.errors import ConfigError, GeneratorError, InvalidRequestError
from degrees37_imagegen.images import (
    DEFAULT_STRENGTH,
    UploadCache,
    image_inputs,
    load_image,
    parse_loras,
)
from degrees37_imagegen.request import ImageRequest

from ._img2img import (
    IMG2IMG_MAPPING,
    builtin_img2img_workflow,
    combo_options,
    resolve_loras,
    titled_image_nodes,
)
from ._img2img import norm_title as _norm
from ._upload import upload_image
from ._workflow import WorkflowTemplate

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._api import ComfyUIAPI

__all__ = ["Inventory", "config_mapping"]


class Inventory:
    """Input images, LoRAs and the server's lists, for :class:`ComfyUIGenerator`."""

    if TYPE_CHECKING:  # what the generator provides
        config: dict[str, Any]
        template: WorkflowTemplate
        retrying: Callable[..., Any]
        _api: ComfyUIAPI
        _uploads: UploadCache
        _lock: threading.Lock
        _loras: list[dict[str, Any]]
        _settings: dict[str, Any]
        _img2img_template: WorkflowTemplate | None

    def _inputs(
        self, request: ImageRequest
    ) -> tuple[WorkflowTemplate, ImageRequest, dict[str, str], list[tuple[str, float]]]:
        """The template for ``request`` (the built-in one starts from ``init_image`` when
        given), the request with its images' server names, the images for titled nodes, and
        the LoRAs: everything is checked before the first image is uploaded."""
        options = dict(request.options)
        named = image_inputs(options)
        template = self.template
        if template.builtin and "init_image" in named:
            template = self._builtin_img2img()
            if options.get("strength") is None:
                options["strength"] = DEFAULT_STRENGTH
        titled = titled_image_nodes(template.nodes)
        unplaced = sorted(n for n in named if not template.has(n) and _norm(n) not in titled)
        if unplaced:
            raise InvalidRequestError(
                f"the workflow ({template.name}) has no place for the image "
                + ", ".join(unplaced)
                + " (a LoadImage node titled after it, a mapping, or a {{placeholder}})"
            )
        wanted = options.get("loras")
        wanted = self._loras if wanted is None else parse_loras(wanted)
        loras = self._resolve_loras(wanted) if wanted else []
        uploaded = {
            name: self._uploads.name(
                load_image(ref, label=name), lambda i: self.retrying(upload_image, self._api, i)
            )
            for name, ref in named.items()
        }
        options.update({n: v for n, v in uploaded.items() if template.has(n)})
        return template, dataclasses.replace(request, options=options), uploaded, loras

    _known_loras: list[str] | None = None

    def _resolve_loras(self, wanted: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """The LoRAs by the server's names: its list is asked once, and again only when a
        name is not in it (a LoRA added since)."""
        if self._known_loras is not None:
            try:
                return resolve_loras(wanted, self._known_loras)
            except InvalidRequestError:
                pass
        self._known_loras = self.list_models("loras")
        return resolve_loras(wanted, self._known_loras)

    def _builtin_img2img(self) -> WorkflowTemplate:
        with self._lock:
            if self._img2img_template is None:
                mapping = {**IMG2IMG_MAPPING, **dict(config_mapping(self.config) or {})}
                self._img2img_template = WorkflowTemplate(
                    builtin_img2img_workflow(),
                    name="built-in img2img",
                    mapping=mapping,
                    builtin=True,
                )
            return self._img2img_template

    def list_models(self, kind: str = "models") -> list[str]:
        """Names the server has: ``models`` (checkpoints), ``loras``, ``samplers``,
        ``schedulers``, or the files of any model folder ComfyUI lists (``vae``...)."""
        if kind in ("samplers", "schedulers"):
            info = self.retrying(self._api.object_info, "KSampler").get("KSampler", {})
            name = "sampler_name" if kind == "samplers" else "scheduler"
            return combo_options(info, name)
        folder = {"models": "checkpoints"}.get(kind, kind)
        folders = self.retrying(self._api.request, "GET", "/models").json()
        if not isinstance(folders, list) or folder not in folders:
            raise InvalidRequestError(
                f"unknown kind {kind!r}; ComfyUI lists models, loras, samplers, schedulers"
                + (", " + ", ".join(map(str, folders)) if isinstance(folders, list) else "")
            )
        names = self.retrying(self._api.request, "GET", f"/models/{folder}").json()
        return [str(n) for n in names] if isinstance(names, list) else []

    def check_ready(self) -> str | None:
        """Why no image can be made with these settings (a missing checkpoint), or ``None``."""
        if not self.template.has("checkpoint"):
            return None
        checkpoint = self._settings.get("checkpoint")
        try:
            names = self.list_models("models")
        except GeneratorError as exc:
            return f"cannot list the checkpoints: {exc}"
        if checkpoint in names or (checkpoint is None and names):
            return None
        if not names:
            return (
                f"ComfyUI at {self._api.shown_url} has no checkpoints (models/checkpoints is "
                f"empty); the workflow needs {checkpoint!r}"
            )
        return f"ComfyUI has no checkpoint {checkpoint!r}; it has: {', '.join(names)}"


def config_mapping(cfg: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``mapping`` setting (``None`` when not given); a ``ConfigError`` if it is not one."""
    mapping = cfg["mapping"]
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ConfigError("must map field names to targets", key="mapping")
    return mapping
