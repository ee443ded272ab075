"""The project's own generators run the contract suite that third-party plugins run."""

from __future__ import annotations

from typing import Any

from degrees37_imagegen import BaseImageGenerator
from degrees37_imagegen.testing import FakeClock, FakeGenerator, GeneratorContract
from degrees37_imagegen_mock import MockGenerator


class TestMockContract(GeneratorContract):
    """The mock plugin, with no delay."""

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        return MockGenerator(settings, name="mock")

    def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
        return MockGenerator({"fail_rate": 1, **settings}, name="mock")


class TestSlowMockContract(GeneratorContract):
    """The mock plugin with a delay on a fake clock: jobs are still running when canceled."""

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        return MockGenerator({"delay": 5, **settings}, name="mock-slow", clock=FakeClock())


class TestFakeGeneratorContract(GeneratorContract):
    """The FakeGenerator users test with keeps the contract too, secrets included."""

    secret_config = {"api_key": "sk-contract-secret-123"}

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        return FakeGenerator({"delay": 3, **settings}, name="fake")

    def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
        return FakeGenerator({"fail": "job", **settings}, name="fake")
