"""The core's generator contract, run against the fake ComfyUI (HTTP and WebSocket)."""

from __future__ import annotations

from typing import Any

import pytest
from comfyui_fake import FakeComfyUI

from degrees37_imagegen import BaseImageGenerator
from degrees37_imagegen.job import ImageJob
from degrees37_imagegen.testing import GeneratorContract
from degrees37_imagegen_comfyui import ComfyUIGenerator


class TestComfyUIContract(GeneratorContract):
    """Every check of the contract, with the built-in workflow on one fake server."""

    secret_config = {"api_key": "contract-s3cret-key"}
    wait_timeout = 30.0

    @pytest.fixture(autouse=True)
    def _server(self, fake: FakeComfyUI) -> None:
        fake.checkpoints = ["sd15.safetensors"]
        self.fake = fake

    def make_generator(self, **settings: Any) -> BaseImageGenerator:
        return ComfyUIGenerator(
            {
                "server_address": self.fake.url,
                "checkpoint": "sd15.safetensors",
                "steps": 2,
                "poll_interval": 0.2,
                "timeout": 30,
            }
            | settings,
            name="comfyui",
        )

    def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
        # A checkpoint the server does not have: ComfyUI refuses the prompt.
        return self.make_generator(checkpoint="missing.safetensors", **settings)

    def sent_request(self, job: ImageJob) -> object:
        for post in self.fake.posts():
            if post.body.get("prompt_id") == job.id:
                return post.body["prompt"]
        return None
