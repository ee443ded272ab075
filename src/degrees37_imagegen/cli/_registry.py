"""Making the registry the CLI commands share, honouring ``--config``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..registry import GeneratorRegistry

__all__ = ["open_registry"]


def open_registry(config: Path | None) -> GeneratorRegistry:
    """A registry using ``config``, or the configuration found in the usual places."""
    # Imported here, not at module level, so that `imagegen --help` never loads YAML & co.
    from ..config import find_config
    from ..registry import GeneratorRegistry

    return GeneratorRegistry(find_config(config))
