"""Making one image and putting it, with its request in its metadata, at a final path."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._pipeline import wait_or_cancel
from .base import BaseImageGenerator, ImageInfo
from .files import check_output
from .job import ImageJob
from .progress import ProgressCallback

__all__ = ["GenerationResult", "generate_to_file"]


@dataclass
class GenerationResult:
    """What :func:`generate_to_file` made: where, from which request, and how long it took.

    ``timings`` holds seconds for ``generate`` (request to image done), ``download`` (image
    done to file in place) and ``total``; ``job`` is the job's handle.
    """

    path: Path
    image_id: str
    info: ImageInfo
    size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)
    job: ImageJob | None = None


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
    timeout: float | None = None,
    on_submit: Callable[[ImageJob], None] | None = None,
    **kwargs: Any,
) -> GenerationResult:
    """Generate one image and write it to ``output_path``, whole or not at all.

    ``submit``, ``wait`` and ``save`` of an :class:`ImageJob` in one call. The request
    (prompt, negative prompt, seed really used, size, generator, model) is added to a PNG's
    text metadata under ``imagegen:`` keys, next to whatever the server wrote; ``.jpg`` and
    ``.webp`` paths get that format. ``on_submit`` receives the job as soon as the server
    has accepted it (to cancel it on Ctrl-C, or to save it to a journal). ``timeout``
    (seconds, default the generator's own) bounds the wait; past it the job is canceled.
    """
    check_output(output_path)  # a path that cannot be written costs no work on a server
    t0 = time.perf_counter()
    job = generator.submit(
        prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=seed,
        on_progress=on_progress,
        **kwargs,
    )
    if on_submit is not None:
        on_submit(job)
    wait_or_cancel(
        job,
        timeout if timeout is not None else generator.job_timeout(),
        on_interrupt=on_submit is None,  # else the caller holds the job and decides
    )
    t1 = time.perf_counter()
    path = job.save(output_path, metadata=metadata)
    t2 = time.perf_counter()
    info = job.info
    assert info is not None  # a done job has its info
    return GenerationResult(
        path=path,
        image_id=job.id,
        info=info,
        size=(info.width, info.height),
        timings={"generate": t1 - t0, "download": t2 - t1, "total": t2 - t0},
        job=job,
    )
