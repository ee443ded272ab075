"""When to read a queue item again, and when to retry the socket: decisions, no I/O.

Polling the item is the fallback; events make it sooner (or, for an item they say
completed with its image, unneeded: :func:`~._queue.told_update`). An item waiting
behind others is read gently (it must start before it can end); while socket.io events
are live, an event says when to look, so the item is read only now and then in case an
event was lost; otherwise it is read on the core's schedule (fast at first, then every
``poll_interval``).
"""

from __future__ import annotations

from dataclasses import dataclass

from degrees37_imagegen.job import JobStatus

__all__ = [
    "EVENTS_POLL",
    "GONE_GRACE",
    "PENDING_POLL",
    "RECONNECT_DELAYS",
    "PollState",
    "reconnect_delay",
]

#: Seconds between reads of an item still waiting behind others.
PENDING_POLL = 0.25
#: Seconds between reads of an item while socket.io events are live.
EVENTS_POLL = 1.0
#: Seconds a read that found the item gone waits for its last events while the socket is
#: live: an item pruned as it finished is told apart by the event that names its image,
#: which may still be on its way.
GONE_GRACE = 0.2
#: Delays before retrying a socket that could not connect (then the last one, repeated).
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass
class PollState:
    """What the generator knows of one item between two reads of it."""

    #: The item's core status at the last read (``None``: never read).
    status: JobStatus | None = None
    #: When it was last read (the generator's clock).
    polled_at: float = 0.0

    def due(self, now: float, *, events_live: bool, look: bool, poll_interval: float) -> bool:
        """Whether to read the item now."""
        if self.status is None or look:
            return True
        since = now - self.polled_at
        if events_live:
            return since >= max(EVENTS_POLL, poll_interval)
        if self.status == "queued":
            return since >= max(PENDING_POLL, poll_interval)
        return True  # running: the core's poll delay is the schedule

    def polled(self, now: float, status: JobStatus) -> None:
        """Note a read of the item."""
        self.status = status
        self.polled_at = now

    def enqueued(self, now: float, *, events_live: bool) -> None:
        """Note that the item was just enqueued. With the socket live (subscribed before the
        enqueue: no event of the item can be missed), the enqueue's answer stands for a
        first read (the item is there, pending) and the events say when to look; without
        it, the item is read at once, as one never read."""
        if events_live:
            self.polled(now, "queued")


def reconnect_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row to open the socket."""
    return RECONNECT_DELAYS[min(max(failures, 1), len(RECONNECT_DELAYS)) - 1]
