"""What the generator keeps about each job it waits for, between two ``wait_job`` calls.

A job waited for with live socket.io events has an :class:`~._events.ItemWatch`; what the
socket said becomes progress updates to hand out one at a time, or a "look now" that makes
the next ``wait_job`` read the item. :class:`Follows` holds them, bounded, under a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from degrees37_imagegen.clock import Clock
from degrees37_imagegen.job import JobUpdate

from ._events import ItemWatch
from ._messages import completed_image, ended_status, event_update
from ._schedule import PollState

__all__ = ["EventClock", "Follow", "Follows", "wait_for_news"]


@runtime_checkable
class EventClock(Protocol):
    """A clock that also waits for a :class:`threading.Event` (a test's fake clock moves its
    time instead of waiting when no event comes). The system clock waits for real."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait up to ``seconds`` for ``event``; whether it was set."""


@dataclass
class Follow:
    """One job being waited for: its socket watch, and what is known between reads."""

    watch: ItemWatch | None
    steps: int | None
    poll: PollState = field(default_factory=PollState)
    #: Progress updates from events, handed out one per ``wait_job``.
    pending: deque[JobUpdate] = field(default_factory=deque)
    #: An event (or the socket going down) said the item may have ended: read it.
    look: bool = False
    #: The job's output node and destination, to know its image when an event names it.
    output_node: str | None = None
    destination: str | None = None
    #: The image an event said the output node made (name, width, height).
    image: tuple[str, int | None, int | None] | None = None
    #: The final status an event gave the item.
    ended: str | None = None

    def take(self, generator: str | None) -> None:
        """Move what the socket said into :attr:`pending`, :attr:`look`, :attr:`image` and
        :attr:`ended`."""
        if self.watch is None:
            return
        events, look = self.watch.take()
        self.look = self.look or look
        for name, data in events:
            if name == "invocation_complete":
                if self.output_node is not None:
                    made = completed_image(data, self.output_node, self.destination)
                    self.image = made or self.image
                continue
            self.ended = ended_status(name, data, self.destination) or self.ended
            update = event_update(name, data, steps=self.steps, generator=generator)
            if update is not None:
                self.pending.append(update)

    @property
    def has_news(self) -> bool:
        """Whether there is something to hand out or to look at without waiting."""
        return bool(self.pending) or self.look


def wait_for_news(clock: Clock, follow: Follow, timeout: float, events_live: bool) -> None:
    """Wait up to ``timeout``: for an event about the job when the socket is live, else on
    ``clock``."""
    if timeout <= 0:
        return
    if follow.watch is not None and events_live:
        if isinstance(clock, EventClock):
            clock.wait(follow.watch.wake, timeout)
        else:
            follow.watch.wake.wait(timeout)
    else:
        clock.sleep(timeout)


class Follows:
    """The jobs being waited for, by id: the newest ``limit`` are kept."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._follows: OrderedDict[str, Follow] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> Follow | None:
        """The job's follow, if it is being waited for."""
        with self._lock:
            return self._follows.get(job_id)

    def add(self, job_id: str, follow: Follow) -> Follow:
        """Start following ``job_id`` (the one already there wins a race)."""
        with self._lock:
            existing = self._follows.get(job_id)
            if existing is not None:
                if follow.watch is not None:
                    follow.watch.close()
                return existing
            self._follows[job_id] = follow
            dropped = []
            while len(self._follows) > self.limit:
                dropped.append(self._follows.popitem(last=False)[1])
        for old in dropped:
            if old.watch is not None:
                old.watch.close()
        return follow

    def drop(self, job_id: str) -> None:
        """Stop following ``job_id`` (it ended, or was canceled)."""
        with self._lock:
            follow = self._follows.pop(job_id, None)
        if follow is not None and follow.watch is not None:
            follow.watch.close()
