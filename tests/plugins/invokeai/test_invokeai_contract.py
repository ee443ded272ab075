"""The core's generator contract, run against the fake InvokeAI (built-in SDXL graph)."""

from __future__ import annotations

from typing import Any

import pytest
from invokeai_fake import FakeInvokeAI, model_record

from degrees37_imagegen import BaseImageGenerator
from degrees37_imagegen.job import ImageJob
from degrees37_imagegen.testing import GeneratorContract
from degrees37_imagegen_invokeai import InvokeAIGenerator


class TestInvokeAIContract(GeneratorContract):
    """Every check of the contract, on generators that share one fake server and clock."""

    secret_config = {"token": "contract-s3cret-token"}
    #: The fake paints every image the same colour, whatever the seed.
    deterministic = False

    @pytest.fixture(autouse=True)
    def _server(self, fake: FakeInvokeAI, clock: Any) -> None:
        fake.models = [model_record("sdxl-base", "sdxl")]
        clock.real_wait = 0  # no socket here: nothing to wait for
        self.fake = fake
        self.clock = clock

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        return InvokeAIGenerator(
            {"base_url": self.fake.base_url, "default_model": "sdxl-base", "events": False}
            | settings,
            name="invokeai",
            clock=self.clock,
            transport=self.fake.transport,
        )

    def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
        missing = {
            "key": "gone",
            "hash": "blake3:00",
            "name": "gone",
            "base": "sdxl",
            "type": "main",
        }
        return self.make_generator(default_model=missing, **settings)

    def sent_request(self, job: ImageJob) -> object:
        item = self.fake.items[int(job.id)]
        batch = dict(item.batch)
        batch.pop("destination")  # unique per request, by design
        return batch
