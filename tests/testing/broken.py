"""Generators that break the contract on purpose, one way each."""

from __future__ import annotations

import dataclasses
import io
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from degrees37_imagegen import BaseImageGenerator, ImageInfo, ImageRequest, JobRef, JobUpdate
from degrees37_imagegen.testing import FakeGenerator


class SeedIgnoringGenerator(FakeGenerator):
    """Draws its own seed instead of using the request's."""

    def start_job(self, request: ImageRequest) -> JobRef:
        return super().start_job(dataclasses.replace(request, seed=random.randint(0, 2**31)))


class ConstantSeedGenerator(FakeGenerator):
    """Sends seed 0 whatever was asked."""

    def start_job(self, request: ImageRequest) -> JobRef:
        return super().start_job(dataclasses.replace(request, seed=0))


class TruncatingGenerator(FakeGenerator):
    """fetch_image gives half the PNG."""

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        data = super().fetch_image(ref, result)
        return data[: len(data) // 2]


class LeakyGenerator(FakeGenerator):
    """Shows its API key in repr()."""

    def __repr__(self) -> str:
        return f"<LeakyGenerator key={self.config['api_key']}>"


class LeakyErrorGenerator(FakeGenerator):
    """Puts its API key in the message of a failed job."""

    def poll_job(self, ref: JobRef) -> JobUpdate:
        update = super().poll_job(ref)
        if update.status == "failed" and update.error is not None:
            update.error.message += f" (key {self.config['api_key']})"
        return update


class ForeignErrorGenerator(FakeGenerator):
    """Lets a KeyError out of poll_job instead of a GeneratorError."""

    def poll_job(self, ref: JobRef) -> JobUpdate:
        raise KeyError("status")


class FakeCancelGenerator(FakeGenerator):
    """Says it canceled, but the server carries on."""

    def cancel_job(self, ref: JobRef) -> bool:
        return True


class UncheckedSizeGenerator(FakeGenerator):
    """Accepts any size."""

    def validate_dimensions(self, width: int, height: int) -> tuple[int, int]:
        return width, height


class RacyGenerator(FakeGenerator):
    """Hands out job ids from an unlocked counter: threads get the same id."""

    counter = 0

    def start_job(self, request: ImageRequest) -> JobRef:
        ref = super().start_job(request)
        n = self.counter
        time.sleep(0.02)
        self.counter = n + 1
        return JobRef(f"racy-{n}", ref.data)


# -- generators of the original contract (generate_image/download_image) ------------------


class _Legacy(BaseImageGenerator):
    def test_connection(self) -> bool:
        return True

    def _png(self, image_id: str) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), "teal").save(buffer, "PNG")
        return buffer.getvalue()


class LegacyUnresolvedSeedGenerator(_Legacy):
    """Records seed -1 as given instead of the seed it used."""

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        image_id = f"legacy-{random.random()}"
        self.record_image(
            ImageInfo(image_id, self.name, prompt, negative_prompt, width, height, seed)
        )
        return image_id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        Path(output_path).write_bytes(self._png(image_id))
        return True


class LegacyPartialWriter(LegacyUnresolvedSeedGenerator):
    """Resolves seeds, but writes half of each image."""

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        return super().generate_image(
            prompt, negative_prompt, width, height, self.resolve_seed(seed), **kwargs
        )

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        data = self._png(image_id)
        Path(output_path).write_bytes(data[: len(data) // 2])
        return True
