"""Progress events that generators report while an image is being made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Progress", "ProgressCallback", "Stage"]

#: Where an image is in its life: waiting on the server's queue, running, downloading, done.
#: Generators report ``submitted`` to ``step`` from ``generate_image``; ``downloading`` and
#: ``done`` come from :func:`~degrees37_imagegen.generate_to_file` (and the batch runner),
#: which know when the file is really in place.
Stage = Literal["submitted", "queued", "running", "step", "downloading", "done"]


@dataclass(frozen=True)
class Progress:
    """One progress report.

    ``step``/``total`` count sampler steps (or any unit the server reports) when known;
    ``node`` names the node being executed on graph-based servers; ``position`` is the
    place in the server's queue when known.
    """

    stage: Stage
    message: str = ""
    step: int | None = None
    total: int | None = None
    node: str | None = None
    position: int | None = None
    generator: str | None = None

    @property
    def fraction(self) -> float | None:
        """``step / total`` when both are known, else ``None``."""
        if self.step is None or not self.total:
            return None
        return min(1.0, self.step / self.total)


#: What a generator calls with each :class:`Progress` report. It must return quickly.
ProgressCallback = Callable[[Progress], None]
