from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops

from degrees37_imagegen import (
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorRegistry,
    GeneratorTimeoutError,
    InvalidRequestError,
    Progress,
)
from degrees37_imagegen_mock import STYLES, MockGenerator


def make(**settings: object) -> MockGenerator:
    return MockGenerator(settings)


def render(gen: MockGenerator, path: Path, **request: object) -> Image.Image:
    image_id = gen.generate_image(**request)  # type: ignore[arg-type]
    assert image_id is not None
    assert gen.download_image(image_id, path)
    img = Image.open(path)
    img.load()
    return img


@pytest.mark.parametrize("style", ["simple", "detailed"])
def test_same_request_same_pixels(style: str, tmp_path: Path) -> None:
    a = render(make(placeholder_style=style), tmp_path / "a.png", prompt="a fox", seed=5)
    b = render(make(placeholder_style=style), tmp_path / "b.png", prompt="a fox", seed=5)
    assert ImageChops.difference(a, b).getbbox() is None


@pytest.mark.parametrize("change", [{"prompt": "a wolf"}, {"seed": 6}])
def test_different_request_different_pixels(change: dict[str, object], tmp_path: Path) -> None:
    base: dict[str, object] = {"prompt": "a fox", "seed": 5, "width": 200, "height": 300}
    a = render(make(placeholder_style="detailed"), tmp_path / "a.png", **base)
    b = render(make(placeholder_style="detailed"), tmp_path / "b.png", **{**base, **change})
    assert ImageChops.difference(a, b).getbbox() is not None


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("size", [(1080, 1920), (512, 512), (64, 48)])
def test_every_style_draws_the_requested_size(
    style: str, size: tuple[int, int], tmp_path: Path
) -> None:
    img = render(
        make(placeholder_style=style),
        tmp_path / "p.png",
        prompt="x " * 200,
        width=size[0],
        height=size[1],
    )
    assert img.size == size
    assert img.getextrema() != ((0, 0), (0, 0), (0, 0))  # something was drawn


def test_text_is_drawn_where_the_prompt_goes(tmp_path: Path) -> None:
    # The same background with and without prompt text: the text changes the pixels.
    a = render(make(), tmp_path / "a.png", prompt="", seed=1, width=512, height=512)
    b = render(make(), tmp_path / "b.png", prompt="", seed=1, width=512, height=512)
    c = render(make(), tmp_path / "c.png", prompt="words", seed=1, width=512, height=512)
    assert ImageChops.difference(a, b).getbbox() is None
    assert ImageChops.difference(a, c).getbbox() is not None


def test_random_seed_is_recorded_and_ids_are_unique() -> None:
    gen = make()
    ids = {gen.generate_image("x", width=32, height=32) for _ in range(5)}
    assert len(ids) == 5
    for image_id in ids:
        assert image_id is not None
        info = gen.image_info(image_id)
        assert info is not None
        assert info.seed >= 0


def test_download_after_cache_eviction_re_renders(tmp_path: Path) -> None:
    gen = make()
    first = gen.generate_image("first", width=32, height=32, seed=3)
    assert first is not None
    for _ in range(40):
        gen.generate_image("other", width=16, height=16)
    assert gen.download_image(first, tmp_path / "f.png")


def test_unknown_image_id(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="unknown image id"):
        make().download_image("nope", tmp_path / "x.png")


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("generation", GeneratorError),
        ("connection", GeneratorConnectionError),
        ("timeout", GeneratorTimeoutError),
        ("limit", GeneratorLimitError),
    ],
)
def test_simulated_failures(failure: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="simulated"):
        make(fail_rate=1, failure=failure).generate_image("x", width=8, height=8)


def test_limit_failure_carries_retry_after() -> None:
    with pytest.raises(GeneratorLimitError) as info:
        make(fail_rate=1, failure="limit", retry_after=3).generate_image("x", width=8, height=8)
    assert info.value.retry_after == 3


def test_zero_fail_rate_never_fails() -> None:
    gen = make(fail_rate=0)
    for _ in range(20):
        gen.generate_image("x", width=8, height=8)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"placeholder_style": "fancy"}, "placeholder_style"),
        ({"delay": -1}, "delay"),
        ({"delay": "slow"}, "delay"),
        ({"fail_rate": 1.5}, "fail_rate"),
        ({"fail_rate": -0.1}, "fail_rate"),
        ({"failure": "meteor"}, "failure"),
    ],
)
def test_bad_settings_fail_at_creation(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        MockGenerator(settings)
    assert info.value.key == key


def test_bad_setting_from_yaml_names_the_file(write_config: object, tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("generators:\n  mock:\n    fail_rate: 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: generators.mock.fail_rate: must be"):
        GeneratorRegistry(path).get_generator("mock")


class FakeClock:
    """A clock whose sleep moves time on at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)


def test_delay_reports_steps() -> None:
    events: list[Progress] = []
    clock = FakeClock()
    gen = MockGenerator({"delay": 5.0}, clock=clock)
    gen.generate_image("x", width=8, height=8, on_progress=events.append)
    steps = [e.step for e in events if e.stage == "step"]
    assert steps == list(range(1, 11))
    assert clock.now == pytest.approx(5.0)  # no real wait, and not a step longer


def test_submit_returns_while_the_image_is_being_made() -> None:
    clock = FakeClock()
    gen = MockGenerator({"delay": 2.0}, clock=clock)
    job = gen.submit("x", width=8, height=8, seed=4)
    assert job.status == "queued"
    assert job.refresh() == "running"
    assert not clock.slept
    job.wait()
    assert job.status == "done"
    assert job.info is not None
    assert job.info.seed == 4


def test_invalid_size_and_style_per_request() -> None:
    with pytest.raises(InvalidRequestError):
        make().generate_image("x", width=0, height=8)
    with pytest.raises(InvalidRequestError, match="placeholder style"):
        make().generate_image("x", width=8, height=8, placeholder_style="nope")
