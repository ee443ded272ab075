"""The :class:`ImageRequest`: what was asked of a generator for one image."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequestError

__all__ = ["ImageRequest"]


@dataclass(frozen=True)
class ImageRequest:
    """One image's request, as the core hands it to a plugin's :meth:`start_job`.

    The core has already validated the size (``width``/``height`` are what the generator
    will produce) and resolved the seed: ``seed`` is never ``-1`` here. ``options`` holds the
    generator-specific keyword arguments given to ``submit`` (steps, model, template
    fields...), JSON-safe so that a job can be saved and re-attached.

    ``key`` is the job's idempotency key, chosen by the core before anything is sent (a
    UUID). A plugin that can find its jobs by it (:meth:`BaseImageGenerator.find_job`)
    sends it along (as ComfyUI's ``prompt_id``, in InvokeAI's ``destination``), so that a
    submission whose answer was lost, or whose client was killed, is found again instead
    of being made twice. It takes no part in comparing requests.
    """

    prompt: str
    negative_prompt: str = ""
    width: int = 1080
    height: int = 1920
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str):
            raise InvalidRequestError(f"prompt must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.negative_prompt, str):
            raise InvalidRequestError(
                f"negative_prompt must be text, got {type(self.negative_prompt).__name__}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-safe data (see :meth:`from_dict`).

        Raises :class:`InvalidRequestError` naming the option that JSON cannot hold.
        """
        for key, value in self.options.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise InvalidRequestError(
                    f"option {key!r} ({type(value).__name__}) cannot be saved as JSON, "
                    "so this job cannot be saved or re-attached"
                ) from exc
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
            "options": dict(self.options),
            **({"key": self.key} if self.key else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageRequest:
        """The request that :meth:`to_dict` gave."""
        try:
            return cls(
                prompt=data["prompt"],
                negative_prompt=data.get("negative_prompt", ""),
                width=int(data["width"]),
                height=int(data["height"]),
                seed=int(data["seed"]),
                options=dict(data.get("options") or {}),
                key=str(data.get("key") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequestError(f"not a saved image request: {exc}") from exc
