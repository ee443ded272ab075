"""Every plugin declares the per-call options it uses; the core warns about any other, the
same way for each (a ComfyUI template's own fields count as known)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from degrees37_imagegen import BaseImageGenerator, UnknownOptionWarning
from degrees37_imagegen.arguments import CORE_OPTIONS


@contextmanager
def mock() -> Iterator[BaseImageGenerator]:
    from degrees37_imagegen_mock import MockGenerator

    with MockGenerator() as gen:
        yield gen


@contextmanager
def invokeai() -> Iterator[BaseImageGenerator]:
    from degrees37_imagegen_invokeai import InvokeAIGenerator
    from degrees37_imagegen_invokeai.testing import BLANK_TEMPLATE, running_fake

    with running_fake() as fake:
        config = {"base_url": fake.base_url, "graph_template": BLANK_TEMPLATE, "events": False}
        with InvokeAIGenerator(config) as gen:
            yield gen


@contextmanager
def comfyui() -> Iterator[BaseImageGenerator]:
    from degrees37_imagegen_comfyui import ComfyUIGenerator
    from degrees37_imagegen_comfyui.testing import EMPTY_IMAGE_TEMPLATE, running_fake

    with running_fake() as fake:
        config = {"server_address": fake.url, "workflow_template": EMPTY_IMAGE_TEMPLATE}
        with ComfyUIGenerator(config) as gen:
            yield gen


# Each plugin, and an option it uses (for ComfyUI: the template's own {{color}} field).
PLUGINS: list[tuple[Any, dict[str, Any]]] = [
    (mock, {"placeholder_style": "debug"}),
    (invokeai, {"steps": 12}),
    (comfyui, {"color": 0x336699}),
]


@pytest.mark.parametrize(("make", "known"), PLUGINS, ids=["mock", "invokeai", "comfyui"])
def test_an_unknown_option_is_one_warning_naming_it(make: Any, known: dict[str, Any]) -> None:
    with make() as gen:
        assert gen.known_options is not None
        assert set(known) <= set(gen.known_options)
        with pytest.warns(UnknownOptionWarning) as caught:
            gen.generate_image("a test", width=64, height=64, stpes=30, **known)
        knows = ", ".join(sorted(set(gen.known_options) | CORE_OPTIONS))
        assert [str(w.message) for w in caught] == [
            f"generator {gen.name!r}: unknown option 'stpes' ignored (it knows: {knows})"
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gen.generate_image("a test", width=64, height=64, timeout=60, **known)
