"""FakeGenerator, FakeClock and the pytest plugin's fixtures, as users' tests use them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from degrees37_imagegen import (
    AuthenticationError,
    ConfigError,
    GeneratorConnectionError,
    GeneratorLimitError,
    GeneratorRegistry,
    IncompleteImageError,
    JobFailedError,
    Progress,
    read_png_text,
    verify_image,
)
from degrees37_imagegen.testing import FakeClock, FakeGenerator, plugin


def test_import_does_not_import_pytest() -> None:
    code = (
        "import sys, degrees37_imagegen.testing as t; t.GeneratorContract; t.FakeGenerator; "
        "assert 'pytest' not in sys.modules, 'pytest imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_delay_runs_on_the_fake_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[Progress] = []
    gen = FakeGenerator({"delay": 30}, clock=clock)
    job = gen.submit("a fox", width=32, height=16, seed=3, on_progress=seen.append)
    assert job.status == "queued"
    job.wait()
    assert clock.monotonic() >= 30
    assert clock.slept >= 30
    assert {p.stage for p in seen} >= {"submitted", "queued", "step"}
    path = job.save(tmp_path / "fox.png")
    assert verify_image(path) == ("PNG", (32, 16))
    assert read_png_text(path)["imagegen:seed"] == "3"


def test_records_calls_and_requests() -> None:
    gen = FakeGenerator()
    gen.generate_image("one", width=8, height=8, seed=1)
    gen.generate_image("two", width=8, height=8, seed=-1)
    assert [r.prompt for r in gen.requests] == ["one", "two"]
    assert gen.requests[1].seed >= 0
    assert gen.called("start_job") == 2
    assert gen.calls[0].step == "start_job"


def test_same_request_same_pixels_other_seed_other_pixels() -> None:
    gen = FakeGenerator()
    a = gen.submit("x", width=8, height=8, seed=1).wait().fetch()
    b = gen.submit("x", width=8, height=8, seed=1).wait().fetch()
    c = gen.submit("x", width=8, height=8, seed=2).wait().fetch()
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"fail": "submit", "failure": "connection", "fail_times": 99}, GeneratorConnectionError),
        ({"fail": "submit", "failure": "limit", "retry_after": 5}, GeneratorLimitError),
        ({"fail": "submit", "failure": "auth"}, AuthenticationError),
        ({"fail": "job"}, JobFailedError),
    ],
)
def test_scripted_failures(settings: dict[str, object], error: type[Exception]) -> None:
    gen = FakeGenerator(settings, name="f")
    with pytest.raises(error) as caught:
        gen.generate_image("x", width=8, height=8)
    assert getattr(caught.value, "generator", None) == "f"


def test_a_failure_that_passes_is_retried_by_the_core(tmp_path: Path) -> None:
    clock = FakeClock()
    gen = FakeGenerator({"fail": "fetch", "failure": "connection", "fail_times": 2}, clock=clock)
    image_id = gen.generate_image("x", width=8, height=8)
    assert image_id is not None
    assert gen.download_image(image_id, tmp_path / "x.png")
    assert gen.called("fetch_image") == 3
    assert len([s for s in clock.sleeps if s > 0]) >= 2  # the backoff waited, on the fake clock


def test_truncated_download_is_fetched_again(tmp_path: Path) -> None:
    gen = FakeGenerator({"fail": "truncate", "fail_times": 1})
    job = gen.submit("x", width=8, height=8).wait()
    assert verify_image(job.save(tmp_path / "x.png"))[1] == (8, 8)
    always = FakeGenerator({"fail": "truncate"})
    with pytest.raises(IncompleteImageError):
        always.submit("x", width=8, height=8).wait().save(tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()


def test_cancel_a_running_job() -> None:
    gen = FakeGenerator({"delay": 10})
    job = gen.submit("x", width=8, height=8)
    assert job.cancel() is True
    assert job.status == "canceled"


@pytest.mark.parametrize(
    "settings", [{"delay": -1}, {"fail": "sometimes"}, {"failure": "x"}, {"fail_times": "2"}]
)
def test_bad_settings(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        FakeGenerator(settings)


def test_secret_hidden_in_repr() -> None:
    assert "sk-1" not in repr(FakeGenerator({"api_key": "sk-1"}))


def test_registered_like_any_generator() -> None:
    registry = GeneratorRegistry({"generators": {"quick": {"class": "fake"}}}, discover=False)
    registry.register_plugin(plugin)
    assert type(registry.get_generator("quick")).__name__ == "FakeGenerator"


def test_fixtures(
    fake_generator: FakeGenerator,
    fake_clock: FakeClock,
    imagegen_registry: GeneratorRegistry,
) -> None:
    assert fake_generator.clock is fake_clock
    gen = imagegen_registry.get_generator("fake", {"delay": 1})
    assert isinstance(gen, FakeGenerator)
    assert gen.generate_image("x", width=8, height=8)
