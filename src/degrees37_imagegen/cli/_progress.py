"""Showing progress on one terminal line while a generator works."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType

from ..progress import Progress

__all__ = ["ProgressLine"]


class ProgressLine:
    """A progress callback that redraws one stderr line (``enabled=False``: prints nothing).

    It shows the stage, the queue position, the node being run, steps and elapsed time, e.g.
    ``invokeai: running denoise_latents step 12/30 (40%) 3.1s``.
    """

    def __init__(self, name: str, *, enabled: bool = True) -> None:
        self.name = name
        self.enabled = enabled
        self._started = time.perf_counter()
        self._last = ""
        self._node: str | None = None
        self._lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if progress.node:
            self._node = progress.node
        parts = [f"{self.name}: {progress.stage}"]
        if progress.position is not None:
            parts.append(f"(position {progress.position})")
        if self._node and progress.stage in {"running", "step"}:
            parts.append(self._node)
        if progress.step is not None and progress.total:
            fraction = progress.fraction or 0.0
            parts.append(f"step {progress.step}/{progress.total} ({fraction:.0%})")
        elif progress.message and progress.stage not in {"done"}:
            parts.append(progress.message)
        parts.append(f"{time.perf_counter() - self._started:.1f}s")
        line = " ".join(parts)
        with self._lock:
            pad = max(0, len(self._last) - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            sys.stderr.flush()
            self._last = line

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\r" + " " * len(self._last) + "\r")
            sys.stderr.flush()
