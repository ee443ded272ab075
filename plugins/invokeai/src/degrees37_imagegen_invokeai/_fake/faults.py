"""The fake InvokeAI's counted faults: which requests fail, and how a cut body ends.

As in the fake ComfyUI: :attr:`FaultSwitches.faults` maps a kind of :data:`FAULTS` to how
many requests of that kind are still to fail, one in ``fault_spacing``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx

__all__ = ["DISCONNECTED", "FAULTS", "REQUEST_FAULTS", "CutShort", "FaultSwitches"]

#: The counted faults (:attr:`FakeInvokeAI.faults`) and what each does to one request.
FAULTS = {
    "enqueue_500": "the enqueue answers FastAPI's 500 {'detail': ...}; nothing is queued",
    "enqueue_drop": "the enqueue's connection is closed before it is handled: nothing queued",
    "enqueue_lost": "the batch is queued, then the connection closes with no answer",
    "image_500": "an image download answers Starlette's plain-text 500",
    "image_drop": "an image download's connection is closed with no answer",
    "image_truncated": "an image download announces its full length and sends half",
    "prune_after_finish": "the queue is pruned (terminal items deleted) as an item completes",
    "events_drop": "every socket.io connection is cut as an item starts running",
}
#: The faults a request meets (all but the socket's): the mix of the fault tests.
REQUEST_FAULTS = tuple(kind for kind in FAULTS if kind != "events_drop")
DISCONNECTED = "Server disconnected without sending a response."


class CutShort(httpx.SyncByteStream):
    """A body that stops halfway, as a connection closed mid-body does (httpx's error)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        half = len(self.data) // 2
        yield self.data[:half]
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body: "
            f"received {half} bytes, expected {len(self.data)}"
        )


class FaultSwitches:
    """The counted faults of a fake (its ``lock`` guards them)."""

    lock: threading.RLock

    def __init__(self) -> None:
        #: Faults, as counts of requests still to hit (each fault hits one request, see
        #: :data:`FAULTS`); one request of a kind in ``fault_spacing`` is hit.
        self.faults: dict[str, int] = {}
        self.fault_spacing = 1
        #: Requests seen and faults made, by kind (``seen:<kind>``, ``fault:<kind>``).
        self.counters: dict[str, int] = {}

    def take_fault(self, kind: str) -> bool:
        """Whether this request of ``kind`` (a key of :data:`FAULTS`) fails (and count it).

        Each kind is hit at its own offset in the spacing, so that the faults of one
        route do not all land on the same request's retries."""
        with self.lock:
            seen = self.counters["seen:" + kind] = self.counters.get("seen:" + kind, 0) + 1
            offset = list(FAULTS).index(kind) if kind in FAULTS else 0
            hit = (seen + offset) % self.fault_spacing == 0
            left = self.faults.get(kind, 0) if hit else 0
            if left > 0:
                self.faults[kind] = left - 1
                self.counters["fault:" + kind] = self.counters.get("fault:" + kind, 0) + 1
            return left > 0
