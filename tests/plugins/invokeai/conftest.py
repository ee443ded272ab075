"""Fixtures for the InvokeAI generator's tests: captures, the schema, the fake server."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file

from invokeai_fake import BASE_URL, Captures, FakeInvokeAI
from invokeai_schema import OpenAPISchema

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
    """Time that only moves when someone sleeps, so waits cost nothing and never flake."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        """The current fake time."""
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        """Advance the fake time."""
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


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
def make_generator(
    fake: FakeInvokeAI, clock: FakeClock
) -> Iterator[Callable[..., InvokeAIGenerator]]:
    """Make generators talking to ``fake`` on the fake clock; closed after the test."""
    made: list[InvokeAIGenerator] = []

    def make(**settings: Any) -> InvokeAIGenerator:
        generator = InvokeAIGenerator({"base_url": BASE_URL, **settings}, name="invokeai")
        generator._clock = clock.time
        generator._sleep = clock.sleep
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
