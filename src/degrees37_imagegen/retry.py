"""``retry_with_backoff``: retry what is safe to retry, with exponential backoff and jitter."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, overload

import tenacity

from .errors import RETRYABLE_ERRORS, GeneratorLimitError
from .faults import backoff_delay

__all__ = ["retry_with_backoff"]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger(__name__)


class _BackoffWait(tenacity.wait.wait_base):
    """Full-jitter exponential backoff, capped, and never shorter than ``retry_after``."""

    def __init__(self, base_delay: float, max_delay: float, jitter: bool) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        return backoff_delay(
            retry_state.attempt_number,
            base=self.base_delay,
            cap=self.max_delay,
            retry_after=exc.retry_after if isinstance(exc, GeneratorLimitError) else None,
            jitter=self.jitter,
        )


@overload
def retry_with_backoff(func: F, /) -> F: ...


@overload
def retry_with_backoff(
    *,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    jitter: bool = True,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    sleep: Callable[[float], None] | None = None,
) -> Callable[[F], F]: ...


def retry_with_backoff(
    func: F | None = None,
    /,
    *,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    jitter: bool = True,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    sleep: Callable[[float], None] | None = None,
) -> F | Callable[[F], F]:
    """Retry the decorated function on connection, timeout and limit errors.

    ``max_retries`` counts the retries after the first attempt (``0``: one attempt only).
    The wait before retry *n* is drawn from ``[d/2, d]`` with ``d = base_delay * 2**(n-1)``
    capped at ``max_delay`` (``jitter=False`` waits exactly ``d``), and is never shorter than
    a :class:`GeneratorLimitError`'s ``retry_after``. A plain :class:`GeneratorError` (or
    anything not in ``retry_on``) is raised at once. After the last retry, the last error is
    raised as it was. Use bare (``@retry_with_backoff``) or with arguments.

    Only decorate operations that are safe to repeat: a retried call that queues an image
    could queue it twice.
    """
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")

    def decorate(fn: F) -> F:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_retries + 1),
            wait=_BackoffWait(base_delay, max_delay, jitter),
            retry=tenacity.retry_if_exception_type(retry_on),
            reraise=True,
            sleep=sleep or tenacity.nap.sleep,
            before_sleep=_log_retry,
        )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return retrying(fn, *args, **kwargs)

        wrapper.retry = retrying  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.info(
        "attempt %d of %s failed (%s); retrying in %.2fs",
        state.attempt_number,
        getattr(state.fn, "__qualname__", "call"),
        exc,
        wait,
    )
