"""``imagegen generate``: one image to a file."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import GeneratorError, InvalidRequestError
from ._errors import EXIT_INTERRUPTED, cli_errors, echo_err
from ._options import (
    ConfigOption,
    GeneratorOption,
    NegativeOption,
    OutputOption,
    ParamOption,
    PromptArgument,
)
from ._registry import open_registry

if TYPE_CHECKING:  # the rest loads when a command runs, not for --help
    from ..job import ImageJob

__all__ = ["generate", "parse_params"]


def parse_params(params: list[str]) -> dict[str, Any]:
    """``["steps=30", "colour=0xFF8800"]`` to ``{"steps": 30, "colour": 16746496}``.

    Values are read as YAML scalars (numbers, booleans, strings), as in the config file.
    Raises :class:`InvalidRequestError` naming a malformed item.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in params:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InvalidRequestError(f"--param {item!r}: expected KEY=VALUE, e.g. steps=30")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out[key] = value if isinstance(value, (int, float, bool, str)) else text
    return out


def image_options(
    init_image: Path | None, strength: float | None, loras: list[str] | None
) -> dict[str, Any]:
    """The options of ``--init-image``, ``--strength`` and ``--lora``, checked (a bad image
    is an :class:`InvalidRequestError` before any generator is made)."""
    from ..images import prepare_image_options

    out: dict[str, Any] = {}
    if init_image is not None:
        out["init_image"] = str(init_image)
    if strength is not None:
        out["strength"] = strength
    if loras:
        out["loras"] = list(loras)
    return prepare_image_options(out)


def _default_output(prompt: str, folder: Path | None = None) -> Path:
    """A new file name made from the prompt, in ``folder`` (default: here)."""
    from ..files import slugify

    stem = slugify(prompt)
    where = folder if folder is not None else Path()
    path = where / f"{stem}.png"
    n = 2
    while path.exists():
        path = where / f"{stem}-{n}.png"
        n += 1
    return path


def _cancel(job: ImageJob | None, keep_queued: bool) -> None:
    """After Ctrl-C: cancel our job on the server (or say that it was left there)."""
    if job is None or job.done:
        return
    from ..redaction import redact_url

    where = f"{job.generator.name}" + (f" at {redact_url(job.server)}" if job.server else "")
    if keep_queued:
        echo_err(f"left job {job.id} on {where} (--keep-queued)")
        return
    try:
        acted = job.cancel()
    except GeneratorError as exc:
        echo_err(f"warning: could not cancel job {job.id} on {where}: {exc}")
        return
    if acted:
        echo_err(f"canceled job {job.id} on {where}")
    elif not job.cancelable:
        echo_err(f"warning: job {job.id} on {where} cannot be canceled by this generator")


def generate(
    prompt: PromptArgument,
    negative: NegativeOption = "",
    width: Annotated[
        int, typer.Option("--width", "-W", metavar="N", help="Width in pixels.")
    ] = 1080,
    height: Annotated[
        int, typer.Option("--height", "-H", metavar="N", help="Height in pixels.")
    ] = 1920,
    seed: Annotated[
        int, typer.Option("--seed", "-s", metavar="N", help="Seed; -1 picks a random one.")
    ] = -1,
    generator: GeneratorOption = None,
    output: OutputOption = None,
    config: ConfigOption = None,
    keep_queued: Annotated[
        bool,
        typer.Option(
            "--keep-queued",
            help="On Ctrl-C, leave the job on the server instead of canceling it.",
        ),
    ] = False,
    param: ParamOption = None,
    init_image: Annotated[
        Optional[Path],
        typer.Option(
            "--init-image",
            metavar="PATH",
            help="Start from this image (img2img, or a template's {{init_image}}).",
            show_default=False,
        ),
    ] = None,
    strength: Annotated[
        Optional[float],
        typer.Option(
            "--strength",
            metavar="NUMBER",
            help="With --init-image: the share of the image regenerated, 0 to 1 (default 0.75).",
            show_default=False,
        ),
    ] = None,
    lora: Annotated[
        Optional[list[str]],
        typer.Option(
            "--lora",
            metavar="NAME:WEIGHT",
            help="Apply a LoRA the server has (e.g. detail:0.8); repeat for several.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Generate one image and write it (atomically) to a file; print where.

    The file's extension names its format: .png (default), .jpg or .webp. Ctrl-C cancels
    the job on the server (unless --keep-queued), then exits with 130.
    """
    with cli_errors():
        from ..batch.jobs import check_prompt

        check_prompt(prompt)
        extra = parse_params(param or [])
        extra.update(image_options(init_image, strength, lora))
        registry = open_registry(config)
        gen = registry.get_generator(generator)
        from ..generation import generate_to_file
        from ._progress import ProgressLine

        target = _default_output(prompt, output) if output is None or output.is_dir() else output
        started = time.perf_counter()
        submitted: list[ImageJob] = []
        with gen:
            try:
                with ProgressLine(gen.name, stream=sys.stderr) as progress:
                    result = generate_to_file(
                        gen,
                        target,
                        prompt,
                        negative_prompt=negative,
                        width=width,
                        height=height,
                        seed=seed,
                        on_progress=progress,
                        on_submit=submitted.append,
                        **extra,
                    )
            except KeyboardInterrupt:
                echo_err("interrupted")
                _cancel(submitted[0] if submitted else None, keep_queued)
                raise typer.Exit(EXIT_INTERRUPTED) from None
        elapsed = time.perf_counter() - started
        typer.echo(str(result.path))
        seed_text = "seed: not used" if result.info.seed is None else f"seed {result.info.seed}"
        typer.echo(
            f"generator {gen.name}, {result.size[0]}x{result.size[1]}, {seed_text}, {elapsed:.2f}s",
            err=True,
        )
