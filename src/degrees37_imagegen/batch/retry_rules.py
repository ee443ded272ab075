"""The rules of a batch job's retries, without I/O: one copy for both loops.

:func:`~.recovery.make_with_retries` (threads) and :func:`~.arecovery.amake_with_retries`
(an event loop) do the I/O (submit, wait, save, probe, sleep); what to do after a fault is
decided here, from the error and the state of the job's handle (see :mod:`.recovery`):

- :func:`over_time`: the job's own time limit has passed: cancel it and give up;
- :func:`judge`: final, or transient; and whether the server lost the job (submit again);
- :func:`outage_without_wait`, :func:`may_wait_outage`, :func:`outage_wait`: waiting for a
  server that does not answer, bounded by the outage tolerance;
- :func:`retry_wait`: the next try within the job's retry budget, after a backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import GeneratorConnectionError, GeneratorTimeoutError
from ..faults import Fault, backoff_delay, classify
from ..progress import Progress

if TYPE_CHECKING:
    from .recovery import RetryPolicy

__all__ = [
    "outage_progress",
    "Verdict",
    "judge",
    "may_wait_outage",
    "outage_error",
    "outage_wait",
    "outage_without_wait",
    "over_time",
    "retry_kind",
    "retry_wait",
]


def over_time(
    exc: BaseException, *, job_done: bool | None, deadline: float | None, now: float
) -> bool:
    """Whether ``exc`` is the job's own time limit (not a slow read): a wait that timed out
    past the job's deadline while the job (``job_done``; ``None``: no job) is not done."""
    return (
        isinstance(exc, GeneratorTimeoutError)
        and job_done is False
        and deadline is not None
        and now >= deadline
    )


@dataclass(frozen=True)
class Verdict:
    """What a transient fault means for the job: its :class:`~..faults.Fault`, and whether
    the job's handle is to be dropped (the server lost the job: submit it again)."""

    fault: Fault
    resubmit: bool


def judge(exc: BaseException, *, canceling: bool, status: str | None) -> Verdict | None:
    """The verdict on ``exc``, or ``None`` when it is final (raise it).

    ``canceling``: the caller is canceling (a canceled job is then final); ``status``: the
    job's status (``None`` before the server accepted it). A job that failed on the server
    is final; one the server canceled behind our back was lost (a restart).
    """
    fault = classify(exc, canceled_by_us=canceling)
    if not fault.transient or status == "failed":
        return None
    return Verdict(fault, resubmit=status == "canceled")


def outage_without_wait(policy: RetryPolicy, *, on_member: bool) -> bool:
    """Whether a server that does not answer fails the job at once, without a probe: no
    outage tolerance, and no pool server to take the job away from (``on_member``)."""
    return policy.outage_tolerance <= 0 and not on_member


def may_wait_outage(policy: RetryPolicy) -> bool:
    """Whether a job waits at all for a server that does not answer."""
    return policy.outage_tolerance > 0


def outage_wait(policy: RetryPolicy, *, waited: float, probe: int) -> float | None:
    """How long to wait before probe number ``probe`` of a server that has not answered
    for ``waited`` seconds; ``None`` past the outage tolerance (fail the job)."""
    if waited >= policy.outage_tolerance:
        return None
    delay = backoff_delay(probe, base=policy.base_delay, cap=policy.max_delay)
    return min(delay, max(0.0, policy.outage_tolerance - waited))


def outage_progress(where: str, generator: str, waited: float) -> Progress:
    """What a job waiting for its server that does not answer reports."""
    return Progress(
        "queued", f"waiting for {where} (not answering for {waited:.0f}s)", generator=generator
    )


def outage_error(
    where: str, generator: str, error: BaseException, waited: float, policy: RetryPolicy
) -> GeneratorConnectionError:
    """The error of a job whose server did not answer within the outage tolerance."""
    return GeneratorConnectionError(
        f"{where} did not answer for {waited:.0f}s (outage tolerance "
        f"{policy.outage_tolerance:g}s): {error}",
        generator=generator,
        work="unknown",
    )


def retry_wait(policy: RetryPolicy, retries: int, fault: Fault, *, job_done: bool) -> float | None:
    """The backoff before retry number ``retries``, or ``None`` past the job's budget.

    Downloading a finished image again (``job_done``) costs the server nothing: it gets
    twice the budget. The wait is at least the server's ``Retry-After``.
    """
    budget = policy.retries * (2 if job_done else 1)
    if retries > budget:
        return None
    return backoff_delay(
        retries, base=policy.base_delay, cap=policy.max_delay, retry_after=fault.retry_after
    )


def retry_kind(fault: Fault) -> str:
    """How a retry is counted in reports: ``lost`` (submitted again) or ``retry``."""
    return "lost" if fault.lost else "retry"
