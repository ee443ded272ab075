"""``imagegen models``: what a generator's server has (models, LoRAs, samplers...)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._errors import cli_errors
from ._options import ConfigOption, GeneratorOption
from ._registry import open_registry

__all__ = ["KINDS", "models"]

#: The kinds every generator that can list may be asked for (plugins may know more).
KINDS = ("models", "loras", "samplers", "schedulers")


def models(
    generator: GeneratorOption = None,
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help="What to list: models, loras, samplers, schedulers (or a plugin's own kind).",
        ),
    ] = "models",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON: {generator, kind, names}.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """List what the generator's server has of one kind, one name per line.

    Exit codes: 0 listed (even none), 1 the server cannot be asked or the generator cannot
    list, 2 an unknown generator or kind.
    """
    with cli_errors():
        registry = open_registry(config)
        gen = registry.get_generator(generator)
        with gen:
            names = gen.list_models(kind)
        if as_json:
            typer.echo(json.dumps({"generator": gen.name, "kind": kind, "names": names}))
            return
        for name in names:
            typer.echo(name)
        if not names:
            typer.echo(f"{gen.name} has no {kind}", err=True)
