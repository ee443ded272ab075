"""The ``imagegen`` command line: ``generate``, ``batch``, ``plugins``, ``config``, ``check``.

Start-up is kept light: heavy modules (Pillow, httpx, a plugin's generator) are imported by
the command that needs them, never to show ``--help``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import _errors
from ._options import ReadableCommand
from ._usage import OneLineGroup
from .batch import batch
from .generate import generate
from .info import check, config_command, plugins
from .models import models
from .new_plugin import new_plugin

__all__ = ["app", "main"]

app = typer.Typer(
    name="imagegen",
    cls=OneLineGroup,
    help="Generate images with any configured generator (InvokeAI, ComfyUI, mock, plugins).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: no "<bool>" after flags, no boxes; it reads the same when piped.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"imagegen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show full tracebacks and the requests made (secrets hidden)."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Generate images with any configured generator (InvokeAI, ComfyUI, mock, plugins).

    Exit codes: 0 success, 1 generation failed, 2 usage or configuration error.
    """
    _errors.setup(debug)


app.command(cls=ReadableCommand)(generate)
app.command(cls=ReadableCommand)(batch)
app.command(cls=ReadableCommand)(plugins)
app.command("config", cls=ReadableCommand)(config_command)
app.command(cls=ReadableCommand)(check)
app.command(cls=ReadableCommand)(models)
app.command("new-plugin", cls=ReadableCommand)(new_plugin)


def main() -> None:
    """Run the ``imagegen`` command."""
    _errors.setup(False)
    app()
