"""The checks' own helpers: failing with what the contract expects, skipping, pixels."""

from __future__ import annotations

import io
import unittest
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ..base import BaseImageGenerator
from ..errors import GeneratorError, PluginError
from ..files import verify_image
from ..job import ImageJob

__all__ = ["describe", "expect", "expect_core_error", "fail", "pixels", "save_whole", "skip"]

_PREFIX = "generator contract: "


def expect(condition: object, message: str) -> None:
    """Raise :class:`AssertionError` with ``message`` (what the contract expects) unless
    ``condition`` holds."""
    __tracebackhide__ = True  # pytest shows the check that failed, not this helper
    if not condition:
        raise AssertionError(_PREFIX + message)


def fail(message: str) -> NoReturn:
    """Fail with ``message``: what the contract expects."""
    __tracebackhide__ = True
    raise AssertionError(_PREFIX + message)


def skip(reason: str) -> NoReturn:
    """Skip a check that does not apply (with or without pytest)."""
    try:
        import pytest
    except ImportError:  # run as plain functions, without pytest
        raise unittest.SkipTest(reason) from None
    pytest.skip(reason)


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    """An image's mode, size and raw pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.mode, img.size, img.tobytes()


def describe(exc: BaseException) -> str:
    """``Type: message``."""
    return f"{type(exc).__name__}: {exc}"


def save_whole(job: ImageJob, target: Path) -> Path:
    """``job.save(target)``, failing the contract unless a whole image is at ``target``."""
    try:
        saved = job.save(target)
    except GeneratorError as exc:
        fail(
            f"save({target.name}) must write the whole image, it raised {describe(exc)} "
            "(does fetch_image return the whole image?)"
        )
    expect(target.is_file(), f"save() must write {target}")
    try:
        verify_image(target)
    except GeneratorError as exc:
        fail(f"the image at the final path must verify as whole: {exc}")
    return saved


def expect_core_error(gen: BaseImageGenerator, what: str, call: Callable[[], object]) -> None:
    """Fail the contract unless ``call()`` raises a core error naming ``gen``."""
    try:
        call()
    except PluginError as exc:
        fail(
            f"{what} must raise a GeneratorError subclass from the plugin, but a foreign "
            f"exception leaked and was wrapped: {exc}"
        )
    except GeneratorError as exc:
        expect(
            exc.generator == gen.name,
            f"the error for {what} must name the generator {gen.name!r} "
            f"(error.generator), got {exc.generator!r}",
        )
    except Exception as exc:
        fail(f"{what} must raise a GeneratorError subclass, got {describe(exc)}")
    else:
        fail(f"{what} must raise a GeneratorError subclass, nothing was raised")
