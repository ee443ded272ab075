"""The :class:`MockGenerator`: placeholder images made locally, with simulated delay and
failures so that callers can exercise their progress, retry and error paths."""

from __future__ import annotations

import io
import random
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

from degrees37_imagegen import (
    BaseImageGenerator,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    ImageInfo,
    Progress,
    write_image_atomically,
)

from .drawing import STYLES, PlaceholderRequest, render_placeholder

__all__ = ["FAILURES", "MockGenerator"]

#: The ``failure`` setting: which error a simulated failure raises.
FAILURES: dict[str, type[GeneratorError]] = {
    "generation": GeneratorError,
    "connection": GeneratorConnectionError,
    "timeout": GeneratorTimeoutError,
    "limit": GeneratorLimitError,
}

_CACHE_SIZE = 32  # rendered PNGs kept; older ones are re-rendered on download


class MockGenerator(BaseImageGenerator):
    """Draws a legible placeholder of the requested size: no server, no model.

    Settings: ``delay`` (seconds per image), ``fail_rate`` (0 to 1, the chance an image
    fails), ``failure`` (which error a failure raises: ``generation``, ``connection``,
    ``timeout`` or ``limit``), ``retry_after`` (seconds, carried by ``limit`` failures),
    ``placeholder_style`` (``simple``, ``detailed`` or ``debug``) and ``label``.

    The same prompt, size, seed and style give the same pixels (``debug`` also prints the
    image id, which is unique per image).
    """

    default_settings: ClassVar[dict[str, Any]] = {
        "delay": 0.0,
        "fail_rate": 0.0,
        "failure": "generation",
        "retry_after": None,
        "placeholder_style": "simple",
        "label": "MOCK",
    }

    def __init__(self, config: dict[str, Any] | None = None, *, name: str | None = None):
        super().__init__(config, name=name or "mock")
        self._png: OrderedDict[str, bytes] = OrderedDict()
        self._png_lock = threading.Lock()
        self._failures = random.Random()

    def validate_config(self) -> None:
        """Reject an unknown style or failure, a negative delay, a fail rate outside 0..1."""
        cfg = self.config
        delay = cfg["delay"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(
                f"must be a number of seconds, 0 or more (got {delay!r})", key="delay"
            )
        rate = cfg["fail_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ConfigError(f"must be a number from 0 to 1 (got {rate!r})", key="fail_rate")
        if cfg["placeholder_style"] not in STYLES:
            raise ConfigError(
                f"unknown style {cfg['placeholder_style']!r}; use one of: {', '.join(STYLES)}",
                key="placeholder_style",
            )
        if cfg["failure"] not in FAILURES:
            raise ConfigError(
                f"unknown failure {cfg['failure']!r}; use one of: {', '.join(FAILURES)}",
                key="failure",
            )
        retry_after = cfg["retry_after"]
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, (int, float))
        ):
            raise ConfigError(
                f"must be a number of seconds (got {retry_after!r})", key="retry_after"
            )

    def test_connection(self) -> bool:
        """Always ready: there is no server."""
        return True

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        """Draw a placeholder and return its id (``mock-<hex>``).

        Accepts ``placeholder_style=`` to override the setting for one image, and
        ``on_progress=`` for progress reports.
        """
        on_progress = kwargs.pop("on_progress", None)
        style = kwargs.pop("placeholder_style", self.config["placeholder_style"])
        if style not in STYLES:
            from degrees37_imagegen import InvalidRequestError

            raise InvalidRequestError(
                f"unknown placeholder style {style!r}; use one of: {', '.join(STYLES)}"
            )
        width, height = self.validate_dimensions(width, height)
        seed = self.resolve_seed(seed)
        self.report(on_progress, Progress("running", "drawing placeholder", generator=self.name))
        self._wait(on_progress)
        if self._failures.random() < self.config["fail_rate"]:
            self._fail()
        image_id = f"mock-{uuid.uuid4().hex[:16]}"
        info = ImageInfo(
            image_id=image_id,
            generator=self.name,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            seed=seed,
            model="mock",
            extra={"placeholder_style": style},
        )
        png = self._render(info)
        self.record_image(info)
        with self._png_lock:
            self._png[image_id] = png
            while len(self._png) > _CACHE_SIZE:
                self._png.popitem(last=False)
        return image_id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        """Write the placeholder ``image_id`` to ``output_path`` (atomically) and return True."""
        with self._png_lock:
            png = self._png.get(image_id)
        if png is None:
            info = self.image_info(image_id)
            if info is None:
                raise GeneratorError(
                    f"generator {self.name!r}: unknown image id {image_id!r}", generator=self.name
                )
            png = self._render(info)
        write_image_atomically(output_path, png)
        return True

    def _render(self, info: ImageInfo) -> bytes:
        image = render_placeholder(
            PlaceholderRequest(
                prompt=info.prompt,
                negative_prompt=info.negative_prompt,
                width=info.width,
                height=info.height,
                seed=info.seed,
                style=str(info.extra.get("placeholder_style", "simple")),
                generator=self.name,
                image_id=info.image_id,
                label=str(self.config["label"]),
            )
        )
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()

    def _wait(self, on_progress: Any) -> None:
        delay = float(self.config["delay"])
        if delay <= 0:
            return
        steps = 10
        for step in range(1, steps + 1):
            time.sleep(delay / steps)
            self.report(on_progress, Progress("step", step=step, total=steps, generator=self.name))

    def _fail(self) -> None:
        kind = self.config["failure"]
        rate = self.config["fail_rate"]
        message = f"generator {self.name!r}: simulated {kind} failure (fail_rate={rate})"
        if kind == "limit":
            raise GeneratorLimitError(message, self.config["retry_after"], generator=self.name)
        raise FAILURES[kind](message, generator=self.name)
