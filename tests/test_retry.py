from __future__ import annotations

import pytest

from degrees37_imagegen import (
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    InvalidRequestError,
    retry_with_backoff,
)


class Flaky:
    """Fails with the given errors in turn, then returns 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.mark.parametrize(
    "error",
    [GeneratorConnectionError("down"), GeneratorTimeoutError("slow"), GeneratorLimitError("busy")],
)
def test_retries_transient_errors(error: Exception, sleeps: list[float]) -> None:
    fn = Flaky(error, error)
    wrapped = retry_with_backoff(max_retries=3, sleep=sleeps.append)(fn)
    assert wrapped() == "ok"
    assert fn.calls == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("error", [GeneratorError("bad"), InvalidRequestError("no"), ValueError()])
def test_never_retries_other_errors(error: Exception, sleeps: list[float]) -> None:
    fn = Flaky(error)
    with pytest.raises(type(error)):
        retry_with_backoff(sleep=sleeps.append)(fn)()
    assert fn.calls == 1
    assert sleeps == []


def test_max_retries_counts_retries_after_the_first_attempt(sleeps: list[float]) -> None:
    fn = Flaky(*[GeneratorConnectionError("down")] * 10)
    with pytest.raises(GeneratorConnectionError, match="down"):
        retry_with_backoff(max_retries=2, sleep=sleeps.append)(fn)()
    assert fn.calls == 3


def test_zero_retries_means_one_attempt(sleeps: list[float]) -> None:
    fn = Flaky(GeneratorConnectionError("down"))
    with pytest.raises(GeneratorConnectionError):
        retry_with_backoff(max_retries=0, sleep=sleeps.append)(fn)()
    assert fn.calls == 1


def test_exponential_backoff_with_cap(sleeps: list[float]) -> None:
    fn = Flaky(*[GeneratorTimeoutError("t")] * 5)
    wrapped = retry_with_backoff(
        max_retries=5, base_delay=1, max_delay=4, jitter=False, sleep=sleeps.append
    )(fn)
    assert wrapped() == "ok"
    assert sleeps == [1, 2, 4, 4, 4]


def test_jitter_stays_within_half_to_full_delay(sleeps: list[float]) -> None:
    fn = Flaky(*[GeneratorTimeoutError("t")] * 6)
    retry_with_backoff(max_retries=6, base_delay=2, max_delay=8, sleep=sleeps.append)(fn)()
    expected = [2, 4, 8, 8, 8, 8]
    assert all(d / 2 <= s <= d for s, d in zip(sleeps, expected))


def test_waits_at_least_retry_after(sleeps: list[float]) -> None:
    fn = Flaky(GeneratorLimitError("slow down", retry_after=7.5))
    retry_with_backoff(base_delay=0.1, sleep=sleeps.append)(fn)()
    assert sleeps == [7.5]


def test_bare_decorator() -> None:
    @retry_with_backoff
    def ok() -> int:
        return 3

    assert ok() == 3
    assert ok.__name__ == "ok"


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        retry_with_backoff(max_retries=-1)
