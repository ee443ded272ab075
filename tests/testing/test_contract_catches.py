"""The contract suite fails, with a message that says what it expects, for generators that
break the contract, one way each."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import BaseImageGenerator
from degrees37_imagegen.testing import FakeGenerator, GeneratorContract

from . import broken


def contract_for(cls: type[BaseImageGenerator], **fixed: Any) -> GeneratorContract:
    class Contract(GeneratorContract):
        secret_config = {"api_key": "sk-secret-42"}

        def make_generator(self, **settings: Any) -> BaseImageGenerator:
            return cls({**fixed, **settings}, name="broken")

        def make_failing_generator(self, **settings: Any) -> BaseImageGenerator | None:
            if not issubclass(cls, FakeGenerator):
                return None
            return cls({"fail": "job", **fixed, **settings}, name="broken")

    return Contract()


CASES = [
    (
        broken.SeedIgnoringGenerator,
        "test_same_seed_gives_same_image",
        "the same request with seed=1234 must give the same image",
    ),
    (
        broken.ConstantSeedGenerator,
        "test_same_seed_gives_same_image",
        "seeds 1234 and 4321 must give different images",
    ),
    (
        broken.LegacyUnresolvedSeedGenerator,
        "test_seed_minus_one_is_resolved_and_recorded",
        "seed=-1 must be resolved to a concrete seed recorded in job.info.seed, got -1",
    ),
    (broken.TruncatingGenerator, "test_save_is_whole", "must write the whole image"),
    (broken.LegacyPartialWriter, "test_save_is_whole", "must write the whole image"),
    (
        broken.LegacyPartialWriter,
        "test_job_round_trips_through_json",
        "jobs must serialise with job.to_dict()",
    ),
    (broken.LeakyGenerator, "test_no_secret_in_repr_or_errors", "repr(generator) contains it"),
    (broken.LeakyErrorGenerator, "test_no_secret_in_repr_or_errors", "error JobFailedError"),
    (
        broken.ForeignErrorGenerator,
        "test_errors_are_core_types_with_the_generator_name",
        "a foreign exception leaked",
    ),
    (
        broken.FakeCancelGenerator,
        "test_cancel_returns_a_bool_and_gives_no_image",
        "the server must not report the job done",
    ),
    (
        broken.UncheckedSizeGenerator,
        "test_invalid_sizes_are_refused",
        "an invalid size 0x64 must raise InvalidRequestError",
    ),
    (
        broken.RacyGenerator,
        "test_jobs_from_several_threads_at_once",
        "jobs from 4 threads must have 4 different ids",
    ),
]


@pytest.mark.parametrize(
    ("cls", "check", "message"), CASES, ids=[f"{c[0].__name__}-{c[1]}" for c in CASES]
)
def test_contract_catches(
    cls: type[BaseImageGenerator], check: str, message: str, tmp_path: Path
) -> None:
    contract = contract_for(cls)
    method = getattr(contract, check)
    args = (tmp_path,) if "tmp_path" in method.__code__.co_varnames else ()
    with pytest.raises(AssertionError, match=re.escape(message)) as caught:
        method(*args)
    assert str(caught.value).startswith("generator contract: ")


@pytest.mark.parametrize(
    "check", [name for name in dir(GeneratorContract) if name.startswith("test_")]
)
def test_a_good_generator_passes_every_check(check: str, tmp_path: Path) -> None:
    contract = contract_for(FakeGenerator, delay=2)
    method = getattr(contract, check)
    args = (tmp_path,) if "tmp_path" in method.__code__.co_varnames else ()
    method(*args)


def test_a_truncated_image_leaves_nothing_at_the_target(tmp_path: Path) -> None:
    gen = broken.TruncatingGenerator(name="broken")
    job = gen.submit("x", width=32, height=32, seed=1).wait()
    with pytest.raises(Exception, match="not whole"):
        job.save(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


pytest_plugins = ["pytester"]


def test_pytest_reports_the_expectation(pytester: pytest.Pytester) -> None:
    """Through pytest, as a plugin author runs it: the failure says what is expected."""
    pytester.makepyfile(
        test_echo="""
        import dataclasses
        import random

        from degrees37_imagegen.testing import FakeGenerator, GeneratorContract


        class EchoGenerator(FakeGenerator):
            def start_job(self, request):
                return super().start_job(dataclasses.replace(request, seed=random.randint(0, 9**9)))


        class TestEcho(GeneratorContract):
            def make_generator(self, **settings):
                return EchoGenerator(settings, name="echo")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=11, failed=1, skipped=2)
    result.stdout.fnmatch_lines(["*must give the same image (the generator must pass the seed*"])
