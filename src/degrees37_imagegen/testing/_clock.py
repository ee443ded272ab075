"""The :class:`FakeClock`: time that passes only when someone waits, so tests never wait."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`~degrees37_imagegen.Clock` whose ``sleep`` returns at once and moves time on.

    ``monotonic()`` starts at ``start`` and grows by every ``sleep(seconds)`` (from any
    thread) and every :meth:`advance`; :attr:`sleeps` lists the waits asked for, so that a
    test can check a backoff schedule. Pass it as ``clock=`` to any generator.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        #: Every ``sleep`` asked for, in order (seconds).
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        """The fake time now (seconds)."""
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        """Record the wait and move time on by ``seconds`` (0 or less: not at all)."""
        with self._lock:
            self.sleeps.append(float(seconds))
            if seconds > 0:
                self._now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Whether ``event`` is set; if it is not, time moves on by ``seconds`` first (a
        wait that nothing ended)."""
        if event.is_set():
            return True
        self.sleep(seconds)
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` without recording a sleep."""
        with self._lock:
            self._now += seconds

    @property
    def slept(self) -> float:
        """The total of every ``sleep`` so far (seconds)."""
        with self._lock:
            return sum(s for s in self.sleeps if s > 0)

    def __repr__(self) -> str:
        return f"FakeClock(now={self.monotonic():g})"
