"""The core checks what a caller passes before any plugin code runs: wrong types are
documented errors, unknown options a warning naming them, the same for every generator."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest

from degrees37_imagegen import (
    BaseImageGenerator,
    ImageRequest,
    InvalidRequestError,
    UnknownOptionWarning,
)
from degrees37_imagegen.arguments import CORE_OPTIONS, unknown_options
from degrees37_imagegen.testing import FakeGenerator


class Declares(FakeGenerator):
    known_options = frozenset({"steps", "style"})


class Legacy(BaseImageGenerator):
    """The original contract: the plugin implements generate_image itself, so the core
    checks the arguments in ``submit``, before calling it."""

    known_options = frozenset({"steps"})
    called: ClassVar[list[str]] = []

    def test_connection(self) -> bool:
        return True

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        self.called.append(prompt.strip())  # an AttributeError here if the core let 123 by
        return None

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        return False


BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"prompt": 123}, "prompt must be text, got 123 (int)"),
    ({"prompt": None}, "prompt must be text, got None (NoneType)"),
    ({"negative_prompt": None}, "negative_prompt must be text, got None (NoneType)"),
    ({"width": "big"}, "width must be a whole number, got 'big' (str)"),
    ({"height": 64.0}, "height must be a whole number, got 64.0 (float)"),
    ({"seed": 1.5}, "seed must be a whole number, got 1.5 (float)"),
    ({"seed": True}, "seed must be a whole number, got True (bool)"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_CALLS)
def test_wrong_types_are_refused_before_the_plugin_runs(bad: dict[str, Any], message: str) -> None:
    gen = Declares()
    kwargs: dict[str, Any] = {"prompt": "x", "width": 64, "height": 64, **bad}
    with pytest.raises(InvalidRequestError) as info:
        gen.generate_image(**kwargs)
    assert str(info.value) == message
    assert info.value.generator == gen.name
    assert gen.calls == []


@pytest.mark.parametrize(("bad", "message"), BAD_CALLS)
def test_a_legacy_plugin_never_sees_wrong_types(bad: dict[str, Any], message: str) -> None:
    Legacy.called.clear()
    kwargs: dict[str, Any] = {"prompt": "x", "width": 64, "height": 64, **bad}
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Legacy().submit(**kwargs)
    assert Legacy.called == []


def test_a_progress_callback_that_cannot_be_called_is_a_type_error() -> None:
    gen = Declares()
    with pytest.raises(TypeError, match=r"on_progress must be a callable or None, got 5 \(int\)"):
        gen.submit("x", width=64, height=64, on_progress=5)  # type: ignore[arg-type]
    assert gen.calls == []


def test_the_async_api_refuses_wrong_types_before_the_plugin_runs() -> None:
    gen = Declares()
    with pytest.raises(InvalidRequestError, match="prompt must be text"):
        asyncio.run(gen.agenerate_image(123, width=64, height=64))  # type: ignore[arg-type]
    assert gen.calls == []


def test_an_image_request_checks_its_own_fields() -> None:
    with pytest.raises(InvalidRequestError, match="seed must be a whole number"):
        ImageRequest("x", seed="7")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="options must be a mapping, got list"):
        ImageRequest("x", options=["steps"])  # type: ignore[arg-type]


def test_an_unknown_option_is_a_warning_naming_it_and_the_image_is_made() -> None:
    gen = Declares()
    with pytest.warns(UnknownOptionWarning) as caught:
        gen.generate_image("x", width=64, height=64, stpes=30, steps=30, style="ink")
    assert [str(w.message) for w in caught] == [
        f"generator {gen.name!r}: unknown option 'stpes' ignored (it knows: "
        + ", ".join(sorted({"steps", "style"} | CORE_OPTIONS))
        + ")"
    ]
    assert gen.requests[0].options == {"stpes": 30, "steps": 30, "style": "ink"}


def test_known_and_core_options_pass_without_a_word() -> None:
    gen = Declares()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen.generate_image("x", width=64, height=64, steps=3, timeout=30, loras=[])
    assert unknown_options(gen, ["steps", "timeout", "strength", "nope", "alpha"]) == [
        "alpha",
        "nope",
    ]


def test_a_generator_that_declares_nothing_is_not_checked() -> None:
    gen = FakeGenerator()
    assert gen.known_options is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen.generate_image("x", width=64, height=64, anything=1)
    assert unknown_options(gen, ["anything"]) == []


def test_the_async_api_warns_of_unknown_options_the_same_way() -> None:
    gen = Declares()

    async def main() -> None:
        job = await gen.asubmit("x", width=64, height=64, stpes=30)
        await job.wait()

    with pytest.warns(UnknownOptionWarning, match="unknown option 'stpes' ignored"):
        asyncio.run(main())
