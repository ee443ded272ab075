"""Options that several commands share, declared once, and help that a person reads.

:class:`ReadableCommand` is the command class of every subcommand: its ``--help`` shows
``--width N``, ``--output PATH``, ``PROMPT`` (not ``<int>``, ``<path>``, ``{prompt}``), and
nothing after a flag. Options that name their own ``metavar`` keep it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

__all__ = [
    "ConfigOption",
    "GeneratorOption",
    "NegativeOption",
    "OutputOption",
    "ParamOption",
    "PromptArgument",
    "ReadableCommand",
    "readable_metavar",
]

#: ``--config/-c PATH``: the configuration file, instead of the usual places.
ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        metavar="PATH",
        help="Configuration file (YAML) (default: $IMAGEGEN_CONFIG, ./config/generators.yaml, "
        "then the user config folder).",
        show_default=False,
    ),
]

#: ``PROMPT``: what the image should show.
PromptArgument = Annotated[
    str, typer.Argument(metavar="PROMPT", help="What the image should show.", show_default=False)
]

#: ``--negative/-n TEXT``.
NegativeOption = Annotated[
    str,
    typer.Option("--negative", "-n", metavar="TEXT", help="What the image should not show."),
]

#: ``--generator/-g NAME``.
GeneratorOption = Annotated[
    Optional[str],
    typer.Option(
        "--generator",
        "-g",
        metavar="NAME",
        help="Configured generator or plugin name (default: the config's "
        "default_generator; mock when TESTING=true).",
        show_default=False,
    ),
]

#: ``--output/-o PATH``.
OutputOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="PATH",
        help="Where to write the image: .png, .jpg or .webp, or an existing folder (default: "
        "a name made from the prompt, in the current folder, never overwriting).",
        show_default=False,
    ),
]

#: ``--param/-p KEY=VALUE`` (repeatable).
ParamOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="Passed to the generator (e.g. steps=30, style_preset=Anime, or a template's "
        "own field); repeat for several.",
        show_default=False,
    ),
]

#: The metavar shown for an option of each type when it names none.
_TYPE_METAVARS: dict[str, str] = {"int": "N", "float": "NUMBER", "str": "TEXT"}


def readable_metavar(param: Any) -> str:
    """What ``--help`` shows for ``param``'s value when it names none: ``N``, ``PATH``..."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and getattr(desc, "is_path", False):
        return "PATH"
    if desc is not None and getattr(desc, "is_ranged", False):
        return "N"
    bare = getattr(param, "bare_type", None)
    name = bare() if callable(bare) else getattr(param.type, "name", "")
    name = str(name).removeprefix("list[").removesuffix("]")
    return _TYPE_METAVARS.get(name, "VALUE")


class ReadableCommand(TyperCommand):
    """A command whose help shows plain metavars: ``--width N``, ``PROMPT``, flags bare."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument):
                if param.metavar is None and param.name:
                    param.metavar = param.name.upper()
                # The name says it; no "<str>" after it (typer >= 0.2x shows one).
                setattr(param, "display_type_rich", _no_type)  # noqa: B010
            elif isinstance(param, TyperOption) and _takes_value(param) and param.metavar is None:
                param.metavar = readable_metavar(param)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``imagegen generate [OPTIONS] PROMPT``, as click writes usage (no ``{PROMPT}``)."""
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


def _takes_value(param: TyperOption) -> bool:
    return not (param.is_flag or param.count)


def _no_type(ctx: Any) -> None:
    return None
