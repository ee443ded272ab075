"""Fixtures for the InvokeAI generator's tests: captures, the schema, the fake server."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file

from invokeai_fake import Captures, FakeInvokeAI
from invokeai_schema import OpenAPISchema
from socketio_fake import SocketIOServer

from degrees37_imagegen_invokeai import InvokeAIGenerator

_CAPTURES = Captures()
_SCHEMA: list[OpenAPISchema] = []


@pytest.fixture(scope="session")
def captures() -> Captures:
    """The capture files (read once per session)."""
    return _CAPTURES


@pytest.fixture(scope="session")
def schema(captures: Captures) -> OpenAPISchema:
    """The validator over the real ``openapi.json`` (parsed once per session)."""
    if not _SCHEMA:
        import json

        _SCHEMA.append(OpenAPISchema(json.loads((captures.folder / "openapi.json").read_text())))
    return _SCHEMA[0]


class FakeClock:
    """Time that only moves when someone sleeps, so waits cost nothing and never flake.

    A wait for an event (a socket.io event the fake server pushes) really waits, up to
    ``real_wait`` seconds; if none comes, the fake time moves on by the wait's timeout
    instead. Tests that expect no event set ``real_wait`` to 0.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        #: The timeouts of the waits for events that ended with an event.
        self.woken: list[float] = []
        self.real_wait = 5.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """The current fake time."""
        with self._lock:
            return self.now

    time = monotonic

    def sleep(self, seconds: float) -> None:
        """Advance the fake time."""
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait for ``event``: really (``real_wait`` at most), else in fake time."""
        if event.wait(self.real_wait):
            with self._lock:
                self.woken.append(seconds)
            return True
        self.sleep(seconds)
        return False


@pytest.fixture
def clock() -> FakeClock:
    """The fake clock the generators made by ``make_generator`` use."""
    return FakeClock()


@pytest.fixture
def fake(captures: Captures, schema: OpenAPISchema) -> Iterator[FakeInvokeAI]:
    """A fake InvokeAI; every httpx request in the test goes to it."""
    server = FakeInvokeAI(captures, schema)
    with server.router:
        yield server


@pytest.fixture
def socketio_server() -> Iterator[SocketIOServer]:
    """A fake socket.io endpoint on a loopback port (see ``socketio_fake.py``)."""
    server = SocketIOServer().start()
    yield server
    server.stop()


@pytest.fixture
def live_fake(
    captures: Captures, schema: OpenAPISchema, socketio_server: SocketIOServer
) -> Iterator[FakeInvokeAI]:
    """A fake InvokeAI that also pushes socket.io events. Its HTTP is mocked at the address
    of ``socketio_server``, so the generator finds the socket where the real server has it."""
    server = FakeInvokeAI(captures, schema, base_url=socketio_server.url)
    server.attach_socketio(socketio_server.endpoint)
    with server.router:
        yield server
    server.wait_for_runners()


@pytest.fixture
def make_generator(
    fake: FakeInvokeAI, clock: FakeClock
) -> Iterator[Callable[..., InvokeAIGenerator]]:
    """Make generators talking to ``fake`` (its ``transport``) on the fake clock; closed
    after the test.

    ``events`` is on only when the fake has a socket.io endpoint (the plain fake has no
    network address a socket could reach); a test may still set it.
    """
    made: list[InvokeAIGenerator] = []

    def make(**settings: Any) -> InvokeAIGenerator:
        settings.setdefault("events", fake.sio is not None)
        generator = InvokeAIGenerator(
            {"base_url": fake.base_url, **settings},
            name="invokeai",
            clock=clock,
            transport=fake.transport,
        )
        made.append(generator)
        return generator

    yield make
    for generator in made:
        generator.close()


BLANK_TEMPLATE: dict[str, Any] = {
    "id": "blank-graph",
    "nodes": {
        "blank": {
            "id": "blank",
            "type": "blank_image",
            "width": "{{width}}",
            "height": "{{height}}",
            "color": {"r": 30, "g": 144, "b": 255, "a": 255},
        }
    },
    "edges": [],
}


@pytest.fixture
def blank_template() -> dict[str, Any]:
    """A model-free graph template: one ``blank_image`` of the requested size."""
    import copy

    return copy.deepcopy(BLANK_TEMPLATE)
