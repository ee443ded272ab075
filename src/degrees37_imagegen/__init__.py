"""degrees37-imagegen: one Python interface over many image generators.

::

    from pathlib import Path
    from degrees37_imagegen import GeneratorRegistry

    registry = GeneratorRegistry()
    generator = registry.get_generator("mock", {"delay": 0})
    image_id = generator.generate_image("a lighthouse at dusk")
    generator.download_image(image_id, Path("lighthouse.png"))
"""

from __future__ import annotations

from .base import COMMON_SETTINGS, MAX_SEED, BaseImageGenerator, ImageInfo, UnknownSettingWarning
from .config import GeneratorsConfig, expand_env, find_config, load_config
from .errors import (
    RETRYABLE_ERRORS,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorNotFoundError,
    GeneratorTimeoutError,
    InvalidRequestError,
)
from .files import (
    add_png_text,
    atomic_path,
    read_png_text,
    verify_image,
    write_image_atomically,
)
from .generation import GenerationResult, generate_to_file
from .hookspecs import hookimpl, hookspec
from .plugins import PluginInfo, PluginLoadError, PluginWarning
from .progress import Progress, ProgressCallback
from .redact import redact
from .registry import GeneratorRegistry
from .retry import retry_with_backoff

__version__ = "0.1.0"

__all__ = [
    "COMMON_SETTINGS",
    "MAX_SEED",
    "RETRYABLE_ERRORS",
    "BaseImageGenerator",
    "ConfigError",
    "GenerationResult",
    "GeneratorConnectionError",
    "GeneratorError",
    "GeneratorLimitError",
    "GeneratorNotFoundError",
    "GeneratorRegistry",
    "GeneratorTimeoutError",
    "GeneratorsConfig",
    "ImageInfo",
    "InvalidRequestError",
    "PluginInfo",
    "PluginLoadError",
    "PluginWarning",
    "Progress",
    "ProgressCallback",
    "UnknownSettingWarning",
    "__version__",
    "add_png_text",
    "atomic_path",
    "expand_env",
    "find_config",
    "generate_to_file",
    "hookimpl",
    "hookspec",
    "load_config",
    "read_png_text",
    "redact",
    "retry_with_backoff",
    "verify_image",
    "write_image_atomically",
]
