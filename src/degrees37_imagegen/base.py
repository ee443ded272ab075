"""The :class:`BaseImageGenerator` abstract base class that every generator implements."""

from __future__ import annotations

import random
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .errors import InvalidRequestError
from .progress import Progress, ProgressCallback
from .redaction import redact

__all__ = [
    "COMMON_SETTINGS",
    "MAX_SEED",
    "BaseImageGenerator",
    "ImageInfo",
    "UnknownSettingWarning",
]

#: Seeds are drawn from ``0 .. MAX_SEED`` (the range every server we drive accepts).
MAX_SEED = 2**32 - 1

#: Settings every generator accepts, on top of its own ``default_settings``.
COMMON_SETTINGS = frozenset({"class", "plugin", "description"})


class UnknownSettingWarning(UserWarning):
    """A configured setting is not known to the generator it was given to (likely a typo)."""


@dataclass
class ImageInfo:
    """What a generator recorded about one image it made: the request and what it really used.

    ``seed`` is the seed really used (``-1`` requests are resolved to a concrete seed);
    ``generated_width``/``generated_height`` differ from the requested size when the server
    generated at another resolution that was then resized.
    """

    image_id: str
    generator: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    model: str | None = None
    generated_width: int | None = None
    generated_height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, str]:
        """The request as flat text fields, ready for PNG text chunks or a manifest."""
        meta: dict[str, str] = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": str(self.seed),
            "width": str(self.width),
            "height": str(self.height),
            "generator": self.generator,
        }
        if self.model:
            meta["model"] = self.model
        if self.generated_width and self.generated_height:
            meta["generated_size"] = f"{self.generated_width}x{self.generated_height}"
        for key, value in self.extra.items():
            meta.setdefault(key, str(value))
        return meta


class BaseImageGenerator(ABC):
    """Base class of every image generator.

    Subclasses declare the settings they know in :attr:`default_settings` (the keys are the
    known settings, the values their defaults), list secret settings in
    :attr:`secret_settings`, check values in :meth:`validate_config`, and implement
    :meth:`test_connection`, :meth:`generate_image` and :meth:`download_image`.

    ``self.config`` holds the effective settings: the defaults with the given ``config``
    merged over them. A generator may be used from several threads at once.
    """

    #: Known settings and their defaults.
    default_settings: ClassVar[Mapping[str, Any]] = {}
    #: Settings whose values are secret, on top of names that look secret (``*token*``...).
    secret_settings: ClassVar[frozenset[str]] = frozenset()
    #: Settings holding file paths; relative ones are resolved against the folder of the
    #: configuration file they came from (by the registry).
    path_settings: ClassVar[frozenset[str]] = frozenset()
    #: The setting that addresses one server, so that a pool can make one generator per server.
    server_setting: ClassVar[str | None] = None
    #: The largest width or height :meth:`validate_dimensions` accepts.
    max_dimension: ClassVar[int] = 16384
    #: The largest number of pixels :meth:`validate_dimensions` accepts.
    max_pixels: ClassVar[int] = 16384 * 16384
    #: How many images :meth:`image_info` remembers (the oldest are forgotten first).
    max_image_records: ClassVar[int] = 4096

    def __init__(self, config: Mapping[str, Any] | None = None, *, name: str | None = None):
        given = dict(config or {})
        self.name: str = name or str(given.get("plugin") or type(self).__name__)
        known = set(self.default_settings) | COMMON_SETTINGS
        for key in given:
            if key not in known:
                known_list = ", ".join(sorted(self.default_settings)) or "none"
                warnings.warn(
                    f"generator {self.name!r}: unknown setting {key!r} is ignored "
                    f"(known settings: {known_list})",
                    UnknownSettingWarning,
                    stacklevel=2,
                )
        self.config: dict[str, Any] = {**self.default_settings, **given}
        self._images: OrderedDict[str, ImageInfo] = OrderedDict()
        self._images_lock = threading.Lock()
        self.validate_config()

    # -- what subclasses implement -------------------------------------------------------

    def validate_config(self) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Check ``self.config``; raise :class:`ConfigError` with ``key=`` the bad setting.

        Called at the end of ``__init__``, so that bad settings are reported when the
        generator is created rather than at the first image.
        """

    @abstractmethod
    def test_connection(self) -> bool:
        """Return whether the generator is ready to make images (server up and answering)."""

    @abstractmethod
    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        """Make one image and return its id, to pass to :meth:`download_image`.

        ``seed=-1`` asks for a random seed; the seed really used is recorded in
        :meth:`image_info`. ``on_progress=callback`` in ``kwargs`` receives
        :class:`~degrees37_imagegen.Progress` reports. Failures raise a
        :class:`~degrees37_imagegen.GeneratorError` subclass.
        """

    @abstractmethod
    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        """Write the image to ``output_path``, whole or not at all, and return ``True``."""

    # -- helpers for subclasses and callers ---------------------------------------------

    def validate_dimensions(self, width: int, height: int) -> tuple[int, int]:
        """Return the size this generator will really produce for a requested size.

        The default accepts any positive size up to :attr:`max_dimension` per side and
        :attr:`max_pixels` in all, and raises :class:`InvalidRequestError` otherwise.
        """
        for label, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequestError(
                    f"{label} must be a whole number of pixels, got {value!r}",
                    generator=self.name,
                )
            if value <= 0:
                raise InvalidRequestError(
                    f"{label} must be positive, got {value}", generator=self.name
                )
            if value > self.max_dimension:
                raise InvalidRequestError(
                    f"{label} {value} is larger than {self.max_dimension} pixels",
                    generator=self.name,
                )
        if width * height > self.max_pixels:
            raise InvalidRequestError(
                f"{width}x{height} has more than {self.max_pixels} pixels", generator=self.name
            )
        return width, height

    @staticmethod
    def resolve_seed(seed: int) -> int:
        """Turn ``-1`` (or any negative seed) into a random seed; keep others as they are."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequestError(f"seed must be a whole number, got {seed!r}")
        if seed < 0:
            return random.randint(0, MAX_SEED)
        if seed > MAX_SEED:
            raise InvalidRequestError(f"seed must be at most {MAX_SEED}, got {seed}")
        return seed

    def record_image(self, info: ImageInfo) -> None:
        """Remember what was asked and used for an image (see :meth:`image_info`).

        The newest :attr:`max_image_records` are kept, so long runs use bounded memory.
        """
        with self._images_lock:
            self._images[info.image_id] = info
            self._images.move_to_end(info.image_id)
            while len(self._images) > self.max_image_records:
                self._images.popitem(last=False)

    def image_info(self, image_id: str) -> ImageInfo | None:
        """What this generator recorded about ``image_id`` (seed used, size...), if anything."""
        with self._images_lock:
            return self._images.get(image_id)

    @staticmethod
    def report(on_progress: ProgressCallback | None, progress: Progress) -> None:
        """Send ``progress`` to ``on_progress`` if there is one."""
        if on_progress is not None:
            on_progress(progress)

    def info(self) -> dict[str, Any]:
        """A description safe to show: name, class and settings with secrets hidden."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "settings": self.safe_config(),
        }

    def safe_config(self) -> dict[str, Any]:
        """``self.config`` with every secret value hidden."""
        return dict(redact(self.config, self.secret_settings))

    def close(self) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Release connections and other resources. The generator is not used afterwards."""

    def __enter__(self) -> BaseImageGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} config={self.safe_config()!r}>"
