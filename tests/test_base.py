from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import MAX_SEED, BaseImageGenerator, InvalidRequestError


class Minimal(BaseImageGenerator):
    default_settings = {"token": None, "base_url": "http://localhost"}

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
        return None

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        return False


def test_cannot_instantiate_the_abc() -> None:
    with pytest.raises(TypeError):
        BaseImageGenerator()  # type: ignore[abstract]


def test_config_holds_defaults_merged_with_given() -> None:
    gen = Minimal({"base_url": "http://gpu"})
    assert gen.config == {"token": None, "base_url": "http://gpu"}


@pytest.mark.parametrize(("w", "h"), [(1080, 1920), (1, 1), (16384, 64)])
def test_validate_dimensions_accepts_sane_sizes(w: int, h: int) -> None:
    assert Minimal().validate_dimensions(w, h) == (w, h)


@pytest.mark.parametrize(
    ("w", "h", "message"),
    [
        (0, 10, "width must be positive"),
        (10, -5, "height must be positive"),
        (100000, 10, "larger than 16384"),
        (16384, 16384 + 1, "larger than"),
        (10.5, 10, "whole number"),
        (True, 10, "whole number"),
    ],
)
def test_validate_dimensions_rejects_absurd_sizes(w: Any, h: Any, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        Minimal().validate_dimensions(w, h)


def test_resolve_seed() -> None:
    assert Minimal.resolve_seed(42) == 42
    assert 0 <= Minimal.resolve_seed(-1) <= MAX_SEED
    with pytest.raises(InvalidRequestError):
        Minimal.resolve_seed(MAX_SEED + 1)


def test_secrets_hidden_in_repr_and_info() -> None:
    gen = Minimal({"token": "tok-123", "base_url": "http://user:pw-456@gpu:9090/"}, name="x")
    for text in (repr(gen), str(gen.info())):
        assert "tok-123" not in text
        assert "pw-456" not in text
    assert "http://user:***@gpu:9090/" in repr(gen)


def test_context_manager_closes() -> None:
    closed = []

    class Closing(Minimal):
        def close(self) -> None:
            closed.append(True)

    with Closing():
        pass
    assert closed == [True]


def test_image_records_are_bounded() -> None:
    from degrees37_imagegen import ImageInfo

    class Small(Minimal):
        max_image_records = 3

    gen = Small()
    for i in range(5):
        gen.record_image(ImageInfo(f"id{i}", "x", "p", "", 8, 8, i))
    assert gen.image_info("id0") is None
    assert gen.image_info("id1") is None
    assert gen.image_info("id4") is not None
