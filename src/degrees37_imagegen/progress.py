"""Progress events that generators report while an image is being made."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Progress", "ProgressCallback", "Stage", "guard_progress"]

log = logging.getLogger(__name__)

#: Where an image is in its life: waiting on the server's queue, running, downloading, done.
#: The core reports ``submitted`` when the server has accepted a job, ``downloading`` and
#: ``done`` when it saves the image; a plugin's job updates carry ``queued``, ``running`` and
#: ``step`` reports.
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


def guard_progress(callback: ProgressCallback | None) -> ProgressCallback:
    """Wrap ``callback`` so that an exception it raises never reaches the caller.

    A progress display that fails must not cost the image: the first exception is logged
    (with its traceback, at warning level), later ones are dropped silently. ``None`` gives
    a callback that does nothing.
    """
    if callback is None:
        return _ignore
    failed = threading.Event()

    def report(progress: Progress) -> None:
        try:
            callback(progress)
        except Exception:
            if not failed.is_set():
                failed.set()
                log.warning(
                    "progress callback %r failed; ignoring it from now on", callback, exc_info=True
                )

    return report


def _ignore(progress: Progress) -> None:
    """A progress callback that does nothing."""
