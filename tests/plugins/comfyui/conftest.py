"""Fixtures for the ComfyUI generator tests: a fake ComfyUI and generators pointed at it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The tests run with --import-mode=importlib, so this folder is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).parent))

from comfyui_fake import EMPTY_IMAGE_TEMPLATE, FakeComfyUI

from degrees37_imagegen import Progress
from degrees37_imagegen_comfyui import ComfyUIGenerator


@pytest.fixture
def fake() -> Iterator[FakeComfyUI]:
    """A running fake ComfyUI (stopped after the test)."""
    server = FakeComfyUI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def template_file(tmp_path: Path) -> Path:
    """The EmptyImage -> SaveImage template written to a file."""
    path = tmp_path / "empty_image.json"
    path.write_text(json.dumps(EMPTY_IMAGE_TEMPLATE), encoding="utf-8")
    return path


@pytest.fixture
def make(fake: FakeComfyUI) -> Iterator[Callable[..., ComfyUIGenerator]]:
    """Make generators pointed at the fake (closed after the test); settings override."""
    made: list[ComfyUIGenerator] = []

    def make(**settings: Any) -> ComfyUIGenerator:
        name = settings.pop("name", "comfyui")
        config = {
            "server_address": fake.url,
            "timeout": 10,
            "request_timeout": 5,
            "connect_timeout": 5,
            "poll_interval": 0.2,
            **settings,
        }
        generator = ComfyUIGenerator(config, name=name)
        made.append(generator)
        return generator

    yield make
    for generator in made:
        generator.close()


@pytest.fixture
def progress_log() -> tuple[list[Progress], Callable[[Progress], None]]:
    """A progress callback that keeps what it gets."""
    seen: list[Progress] = []
    return seen, seen.append
