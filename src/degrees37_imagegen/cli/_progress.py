"""Showing progress on one terminal line while a generator works."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from ..progress import Progress

__all__ = ["ProgressLine"]

#: How often the line is redrawn between events, so the elapsed time keeps moving.
TICK_SECONDS = 0.5


class ProgressLine:
    """A progress callback that redraws one line (``enabled=False``: prints nothing).

    It shows the stage, the queue position, the node being run, steps and elapsed time, e.g.
    ``invokeai: running denoise_latents step 12/30 (40%) 3.1s``. Used as a context manager,
    it redraws every :data:`TICK_SECONDS` while waiting and clears the line at the end.
    """

    def __init__(self, name: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.name = name
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._started = time.perf_counter()
        self._status = ""
        self._last = ""
        self._node: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

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
            parts.append(f"step {progress.step}/{progress.total} ({progress.fraction or 0.0:.0%})")
        elif progress.message and progress.stage != "done":
            parts.append(progress.message)
        with self._lock:
            self._status = " ".join(parts)
        self._draw()

    def _draw(self) -> None:
        with self._lock:
            if not self._status:
                return
            line = f"{self._status} {time.perf_counter() - self._started:.1f}s"
            pad = max(0, len(self._last) - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._last = line

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._draw()

    def __enter__(self) -> ProgressLine:
        if self.enabled:
            self._ticker = threading.Thread(target=self._tick, name="progress-line", daemon=True)
            self._ticker.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            if self.enabled and self._last:
                self.stream.write("\r" + " " * len(self._last) + "\r")
                self.stream.flush()
                self._last = ""
