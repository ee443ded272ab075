"""``imagegen generate``: one image to a file."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InvalidRequestError
from ..files import slugify
from ._errors import cli_errors
from ._options import ConfigOption
from ._progress import ProgressLine
from ._registry import open_registry

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


def _default_output(prompt: str) -> Path:
    stem = slugify(prompt)
    path = Path(f"{stem}.png")
    n = 2
    while path.exists():
        path = Path(f"{stem}-{n}.png")
        n += 1
    return path


def generate(
    prompt: Annotated[str, typer.Argument(help="What the image should show.")],
    negative: Annotated[
        str, typer.Option("--negative", "-n", help="What the image should not show.")
    ] = "",
    width: Annotated[int, typer.Option("--width", "-W", help="Width in pixels.")] = 1080,
    height: Annotated[int, typer.Option("--height", "-H", help="Height in pixels.")] = 1920,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed; -1 picks a random one.")] = -1,
    generator: Annotated[
        Optional[str],
        typer.Option(
            "--generator",
            "-g",
            help="Configured generator or plugin name (default: the config's "
            "default_generator; mock when TESTING=true).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="Where to write the PNG (default: a name made from the prompt, in the "
            "current folder, never overwriting).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param",
            "-p",
            help="KEY=VALUE passed to the generator (e.g. steps=30, style_preset=Anime, or a "
            "template's own field); repeat for several.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Generate one image and write it (atomically) to a file; print where."""
    with cli_errors():
        extra = parse_params(param or [])
        registry = open_registry(config)
        gen = registry.get_generator(generator)
        from ..generation import generate_to_file

        target = output if output is not None else _default_output(prompt)
        started = time.perf_counter()
        with gen, ProgressLine(gen.name, enabled=sys.stderr.isatty()) as progress:
            result = generate_to_file(
                gen,
                target,
                prompt,
                negative_prompt=negative,
                width=width,
                height=height,
                seed=seed,
                on_progress=progress,
                **extra,
            )
        elapsed = time.perf_counter() - started
        typer.echo(str(result.path))
        typer.echo(
            f"generator {gen.name}, {result.size[0]}x{result.size[1]}, seed {result.info.seed}, "
            f"{elapsed:.2f}s",
            err=True,
        )
