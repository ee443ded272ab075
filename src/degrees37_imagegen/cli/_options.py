"""Options that several commands share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

__all__ = ["ConfigOption"]

#: ``--config/-c PATH``: the configuration file, instead of the usual places.
ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (YAML) (default: $IMAGEGEN_CONFIG, ./config/generators.yaml, "
        "then the user config folder).",
        show_default=False,
    ),
]
