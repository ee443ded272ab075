"""Making one image and putting it, with its request in its metadata, at a final path."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import BaseImageGenerator, ImageInfo
from .errors import GeneratorError
from .files import add_png_text, atomic_path, verify_image
from .progress import Progress, ProgressCallback

__all__ = ["GenerationResult", "generate_to_file"]


@dataclass
class GenerationResult:
    """What :func:`generate_to_file` made: where, from which request, and how long it took.

    ``timings`` holds seconds for ``generate`` (request to image id), ``download`` (image id
    to file in place) and ``total``.
    """

    path: Path
    image_id: str
    info: ImageInfo
    size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)


def generate_to_file(
    generator: BaseImageGenerator,
    output_path: str | Path,
    prompt: str,
    negative_prompt: str = "",
    width: int = 1080,
    height: int = 1920,
    seed: int = -1,
    *,
    on_progress: ProgressCallback | None = None,
    metadata: bool = True,
    **kwargs: Any,
) -> GenerationResult:
    """Generate one image and write it to ``output_path``, whole or not at all.

    The request (prompt, negative prompt, seed really used, size, generator, model) is added
    to a PNG's text metadata under ``imagegen:`` keys, next to whatever the server wrote.
    """
    final = Path(output_path)
    t0 = time.perf_counter()
    if on_progress is not None:
        kwargs["on_progress"] = on_progress
    image_id = generator.generate_image(
        prompt, negative_prompt=negative_prompt, width=width, height=height, seed=seed, **kwargs
    )
    if not image_id:
        raise GeneratorError(
            f"generator {generator.name!r} returned no image", generator=generator.name
        )
    t1 = time.perf_counter()
    BaseImageGenerator.report(
        on_progress, Progress("downloading", image_id, generator=generator.name)
    )
    info = generator.image_info(image_id) or ImageInfo(
        image_id=image_id,
        generator=generator.name,
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
    )
    with atomic_path(final) as tmp:
        if not generator.download_image(image_id, tmp):
            raise GeneratorError(
                f"generator {generator.name!r} could not download image {image_id}",
                generator=generator.name,
            )
        fmt, size = verify_image(tmp)
        if metadata and fmt == "PNG":
            tmp.write_bytes(add_png_text(tmp.read_bytes(), info.as_metadata()))
    t2 = time.perf_counter()
    BaseImageGenerator.report(
        on_progress, Progress("done", f"saved {final}", generator=generator.name)
    )
    return GenerationResult(
        path=final,
        image_id=image_id,
        info=info,
        size=size,
        timings={"generate": t1 - t0, "download": t2 - t1, "total": t2 - t0},
    )
