"""Transient or final: the one place where a failure is judged worth another try.

:func:`classify` turns an exception (and its ``work``, see :data:`~.errors.Work`) into a
:class:`Fault`: what a caller that owns a job (the batch runner) may do about it.

- ``fail``: final. The same request fails the same way (validation 400/422, a node that
  raised, an unknown model, configuration, a plugin bug). Fail the job at once.
- ``outage``: the server does not answer (cannot connect, connection lost, a read timed
  out). Wait for it, up to an outage tolerance, then carry on where the job was.
- ``retry``: the server answered but failed for now (HTTP 5xx, 429/503 with its
  ``Retry-After``, a truncated or unreadable download, a job the server lost because it
  restarted). Try again, within a job-level budget.

Where to carry on is the caller's to decide from the job's state, never from the error
alone: a job done on the server is downloaded again (never generated again); one still
queued or running is waited for again; one the server lost, or never accepted, is
submitted again (the plugins look a lost submission up on the server first).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from .errors import (
    AuthenticationError,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorNotFoundError,
    GeneratorTimeoutError,
    IncompleteImageError,
    InvalidRequestError,
    JobCanceledError,
    JobFailedError,
    OutputError,
    PluginError,
    ServerError,
)

__all__ = ["Fault", "FaultKind", "backoff_delay", "classify"]

#: What to do about a failure: give up, wait for the server, or try again.
FaultKind = Literal["fail", "outage", "retry"]


@dataclass(frozen=True)
class Fault:
    """The verdict on one failure.

    ``kind`` says what to do; ``lost`` that the server no longer has the job (it must be
    submitted again); ``retry_after`` the wait the server asked for, in seconds.
    """

    kind: FaultKind
    reason: str
    lost: bool = False
    retry_after: float | None = None

    @property
    def transient(self) -> bool:
        """Whether another try may succeed."""
        return self.kind != "fail"


def classify(exc: BaseException, *, canceled_by_us: bool = False) -> Fault:
    """Judge ``exc`` once: final (``fail``), the server is away (``outage``), or ``retry``.

    ``canceled_by_us``: a :class:`JobCanceledError` is then final; otherwise a job that
    vanished from the server's queue or history (a restart, a pruned queue) counts as lost
    and is worth submitting again.
    """
    if not isinstance(exc, GeneratorError):
        return Fault("fail", f"unexpected {type(exc).__name__}")
    if isinstance(exc, JobCanceledError):
        if canceled_by_us:
            return Fault("fail", "canceled")
        return Fault("retry", "the server lost the job", lost=True)
    if isinstance(exc, (JobFailedError, InvalidRequestError, ConfigError, OutputError)):
        return Fault("fail", "the request fails the same way again")
    if isinstance(exc, (AuthenticationError, PluginError, GeneratorNotFoundError)):
        return Fault("fail", "not fixed by trying again")
    if isinstance(exc, GeneratorLimitError):
        return Fault("retry", "the server is busy", retry_after=exc.retry_after)
    if isinstance(exc, (GeneratorConnectionError, GeneratorTimeoutError)):
        return Fault("outage", "the server does not answer")
    if isinstance(exc, IncompleteImageError):
        return Fault("retry", "the download was not a whole image")
    if isinstance(exc, ServerError):
        if exc.status is None or exc.status >= 500:
            return Fault("retry", f"the server failed ({exc.status or 'no status'})")
        if exc.status in (408, 429):
            return Fault("retry", f"the server asked to come back ({exc.status})")
        return Fault("fail", f"the server refused the request ({exc.status})")
    return Fault("fail", "not known to be transient")


def backoff_delay(
    retry: int,
    *,
    base: float,
    cap: float = 30.0,
    retry_after: float | None = None,
    jitter: bool = True,
) -> float:
    """The wait before retry number ``retry`` (1 for the first): exponential from ``base``,
    capped at ``cap``, drawn from its upper half, and never shorter than ``retry_after``.

    The same schedule as :func:`~degrees37_imagegen.retry_with_backoff`.
    """
    exp = min(cap, base * 2 ** min(max(0, retry - 1), 60))
    delay = random.uniform(exp / 2, exp) if jitter else exp
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return delay
