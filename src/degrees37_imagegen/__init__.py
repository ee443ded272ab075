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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .aio import AsyncImageJob
    from .arguments import UnknownOptionWarning
    from .base import (
        COMMON_SETTINGS,
        MAX_SEED,
        BaseImageGenerator,
        ImageInfo,
        UnknownSettingWarning,
    )
    from .batch import (
        BatchRunner,
        GeneratorPool,
        Job,
        JobResult,
        JobsFileError,
        load_jobs,
        parse_jobs,
        run_batch,
    )
    from .batch.arunner import run_batch_async
    from .clock import SYSTEM_CLOCK, Clock, SystemClock
    from .config import GeneratorsConfig, expand_env, find_config, load_config
    from .errors import (
        RETRYABLE_ERRORS,
        AuthenticationError,
        ConfigError,
        GeneratorConnectionError,
        GeneratorError,
        GeneratorLimitError,
        GeneratorNotFoundError,
        GeneratorTimeoutError,
        IncompleteImageError,
        InvalidRequestError,
        JobCanceledError,
        JobFailedError,
        OutputError,
        PluginError,
        ServerError,
        Work,
    )
    from .files import (
        add_png_text,
        atomic_file,
        atomic_path,
        output_format,
        read_png_text,
        slugify,
        verify_image,
        write_image,
        write_image_atomically,
    )
    from .generation import GenerationResult, generate_to_file
    from .hookspecs import hookimpl, hookspec
    from .job import TERMINAL, ImageData, ImageJob, JobRef, JobStatus, JobUpdate
    from .plugins import PluginInfo, PluginLoadError, PluginWarning
    from .progress import Progress, ProgressCallback, guard_progress
    from .redaction import redact, redact_text, redact_url
    from .registry import GeneratorRegistry
    from .request import ImageRequest
    from .retry import retry_with_backoff

__version__ = "0.1.0"

# Names are imported on first use (PEP 562), so that ``import degrees37_imagegen`` and the
# CLI's ``--help`` stay fast: YAML, tenacity and friends load only when something needs them.
_LAZY: dict[str, str] = {
    "AsyncImageJob": "aio",
    "run_batch_async": "batch.arunner",
    "SYSTEM_CLOCK": "clock",
    "Clock": "clock",
    "SystemClock": "clock",
    "AuthenticationError": "errors",
    "IncompleteImageError": "errors",
    "JobCanceledError": "errors",
    "JobFailedError": "errors",
    "PluginError": "errors",
    "ServerError": "errors",
    "Work": "errors",
    "output_format": "files",
    "write_image": "files",
    "TERMINAL": "job",
    "ImageData": "job",
    "ImageJob": "job",
    "JobRef": "job",
    "JobStatus": "job",
    "JobUpdate": "job",
    "guard_progress": "progress",
    "ImageRequest": "request",
    "BaseImageGenerator": "base",
    "BatchRunner": "batch",
    "GeneratorPool": "batch",
    "Job": "batch",
    "JobResult": "batch",
    "JobsFileError": "batch",
    "load_jobs": "batch",
    "parse_jobs": "batch",
    "run_batch": "batch",
    "COMMON_SETTINGS": "base",
    "ConfigError": "errors",
    "GenerationResult": "generation",
    "GeneratorConnectionError": "errors",
    "GeneratorError": "errors",
    "GeneratorLimitError": "errors",
    "GeneratorNotFoundError": "errors",
    "GeneratorRegistry": "registry",
    "GeneratorTimeoutError": "errors",
    "GeneratorsConfig": "config",
    "ImageInfo": "base",
    "InvalidRequestError": "errors",
    "OutputError": "errors",
    "MAX_SEED": "base",
    "PluginInfo": "plugins",
    "PluginLoadError": "plugins",
    "PluginWarning": "plugins",
    "Progress": "progress",
    "ProgressCallback": "progress",
    "RETRYABLE_ERRORS": "errors",
    "UnknownSettingWarning": "base",
    "UnknownOptionWarning": "arguments",
    "add_png_text": "files",
    "atomic_file": "files",
    "atomic_path": "files",
    "expand_env": "config",
    "find_config": "config",
    "generate_to_file": "generation",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "load_config": "config",
    "read_png_text": "files",
    "redact": "redaction",
    "redact_text": "redaction",
    "redact_url": "redaction",
    "slugify": "files",
    "retry_with_backoff": "retry",
    "verify_image": "files",
    "write_image_atomically": "files",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AsyncImageJob",
    "run_batch_async",
    "SYSTEM_CLOCK",
    "Clock",
    "SystemClock",
    "AuthenticationError",
    "IncompleteImageError",
    "JobCanceledError",
    "JobFailedError",
    "PluginError",
    "ServerError",
    "Work",
    "output_format",
    "write_image",
    "TERMINAL",
    "ImageData",
    "ImageJob",
    "JobRef",
    "JobStatus",
    "JobUpdate",
    "guard_progress",
    "ImageRequest",
    "COMMON_SETTINGS",
    "MAX_SEED",
    "RETRYABLE_ERRORS",
    "BaseImageGenerator",
    "BatchRunner",
    "ConfigError",
    "GenerationResult",
    "GeneratorConnectionError",
    "GeneratorError",
    "GeneratorLimitError",
    "GeneratorNotFoundError",
    "GeneratorPool",
    "GeneratorRegistry",
    "GeneratorTimeoutError",
    "GeneratorsConfig",
    "ImageInfo",
    "InvalidRequestError",
    "OutputError",
    "Job",
    "JobResult",
    "JobsFileError",
    "PluginInfo",
    "PluginLoadError",
    "PluginWarning",
    "Progress",
    "ProgressCallback",
    "UnknownOptionWarning",
    "UnknownSettingWarning",
    "__version__",
    "add_png_text",
    "atomic_file",
    "atomic_path",
    "expand_env",
    "find_config",
    "generate_to_file",
    "hookimpl",
    "hookspec",
    "load_config",
    "load_jobs",
    "parse_jobs",
    "read_png_text",
    "redact",
    "redact_text",
    "redact_url",
    "retry_with_backoff",
    "slugify",
    "run_batch",
    "verify_image",
    "write_image_atomically",
]
