"""The clock generators wait with, so that tests can inject one and never wait real time."""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "SYSTEM_CLOCK"]


class Clock(Protocol):
    """What the core and plugins read the time from and wait with."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` have passed; return whether it is set.

        What a plugin waiting on pushed events (a WebSocket) blocks on, so that tests with
        a fake clock do not wait real time either.
        """


class SystemClock:
    """The real clock: :func:`time.monotonic` and :func:`time.sleep`."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (nothing for 0 or less)."""
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Block until ``event`` is set or ``seconds`` have passed; return whether it is set."""
        return event.wait(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock a generator uses when none is given.
SYSTEM_CLOCK = SystemClock()
