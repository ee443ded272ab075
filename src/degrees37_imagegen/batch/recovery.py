"""One batch job made whole despite transient faults: :func:`make_with_retries`.

The loop holds the job's handle and decides from the handle's state, never from the error
alone, where to carry on after a transient fault (see :mod:`degrees37_imagegen.faults`):

- the job is done on the server but its download failed: download it again;
- the job is queued or running: wait for it again (the server lost sight of nothing);
- the server lost the job (a restart, a pruned queue), or never accepted it: submit it
  again (a plugin looks a submission whose answer was lost up on the server first);
- the server does not answer: wait for it, up to ``outage_tolerance`` seconds, probing it
  with backoff (a pool's probe also puts its servers that answer back in rotation).

Retries of the ``retry`` kind are counted against a job-level budget; waiting for a server
that does not answer is bounded by the outage tolerance instead. Final failures are raised
at once. The decisions are :mod:`.retry_rules`' (no I/O), shared with the event loop's
twin, :func:`~.arecovery.amake_with_retries`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._pipeline import cancel_quietly
from ..base import BaseImageGenerator
from ..errors import GeneratorError, JobCanceledError
from ..files import check_output
from ..generation import GenerationResult
from ..job import ImageJob
from ..progress import ProgressCallback
from .health import revive_due
from .pool import GeneratorPool
from .retry_rules import (
    judge,
    may_wait_outage,
    outage_error,
    outage_progress,
    outage_wait,
    outage_without_wait,
    over_time,
    retry_kind,
    retry_wait,
)

__all__ = [
    "DEFAULT_OUTAGE_TOLERANCE",
    "DEFAULT_RETRIES",
    "Made",
    "RetryPolicy",
    "make_with_retries",
]

#: Job-level retries of transient faults (``imagegen batch --retries``).
DEFAULT_RETRIES = 3
#: How long a job waits for a server that does not answer (seconds).
DEFAULT_OUTAGE_TOLERANCE = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a job tries: ``retries`` after the first try for transient faults,
    ``outage_tolerance`` seconds of waiting for a server that does not answer, and the
    backoff between tries (``base_delay`` doubling up to ``max_delay``, at least a server's
    ``Retry-After``)."""

    retries: int = DEFAULT_RETRIES
    outage_tolerance: float = DEFAULT_OUTAGE_TOLERANCE
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries!r}")
        if not self.outage_tolerance >= 0:
            raise ValueError(f"outage tolerance must be 0 or more, got {self.outage_tolerance!r}")


@dataclass
class Made:
    """What :func:`make_with_retries` made: the result, how many submissions it took
    (``attempts``; 0 for an adopted job that needed none) and the retries used."""

    result: GenerationResult
    attempts: int
    retries: int


def make_with_retries(
    gen: BaseImageGenerator,
    path: Path,
    request: Mapping[str, Any],
    *,
    policy: RetryPolicy,
    on_progress: ProgressCallback | None = None,
    on_submit: Callable[[ImageJob], None] | None = None,
    on_sending: Callable[[dict[str, Any]], None] | None = None,
    canceled: Callable[[], bool] = lambda: False,
    adopt: Mapping[str, Any] | None = None,
    counter: Callable[[str], None] | None = None,
) -> Made:
    """Make ``request`` (``prompt``, ``negative_prompt``, ``width``, ``height``, ``seed``
    and options) into ``path``, retrying what is safe to retry (module docstring).

    ``adopt`` is a saved job (``ImageJob.to_dict()``) of an earlier run to follow instead
    of submitting; a job its server no longer has is submitted anew. ``on_sending`` gets
    each submission's saved form before it is sent (for generators that can find their
    jobs again, see ``BaseImageGenerator.submit``), ``on_submit`` each handle as soon as
    its server has accepted it; ``canceled()`` says the caller is
    canceling (a canceled job is then final); ``counter(kind)`` is told of each retry.
    """
    clock = gen.clock
    t0 = time.perf_counter()
    handle: ImageJob | None = None
    attempts = retries = 0
    outage_since: float | None = None
    deadline: float | None = None
    timeout = gen.job_timeout()
    if adopt is not None:
        handle = _adopt(gen, adopt, on_progress)
        if handle is not None:
            deadline = None if timeout is None else clock.monotonic() + timeout
            if on_submit is not None:
                on_submit(handle)
    t_done: float | None = None
    while True:
        if canceled():
            raise JobCanceledError("canceled before it was made", generator=gen.name)
        try:
            if handle is None:
                if isinstance(gen, GeneratorPool):
                    revive_due(gen)  # servers back up take jobs again
                check_output(path)  # a path that cannot be written costs no work
                handle = gen.submit(
                    str(request["prompt"]),
                    negative_prompt=str(request.get("negative_prompt", "")),
                    width=int(request.get("width", 1080)),
                    height=int(request.get("height", 1920)),
                    seed=int(request.get("seed", -1)),
                    on_progress=on_progress,
                    on_sending=on_sending,
                    **dict(request.get("options") or {}),
                )
                attempts += 1
                deadline = None if timeout is None else clock.monotonic() + timeout
                if on_submit is not None:
                    on_submit(handle)
            if not handle.done:
                left = None if deadline is None else max(0.0, deadline - clock.monotonic())
                handle.wait(timeout=left)
            t_done = t_done or time.perf_counter()
            handle.save(path)
            outage_since = None
            break
        except Exception as exc:
            job_done = None if handle is None else handle.done
            if over_time(exc, job_done=job_done, deadline=deadline, now=clock.monotonic()):
                assert handle is not None
                cancel_quietly(handle)  # the job's own time limit: give up on it
                raise
            verdict = judge(
                exc, canceling=canceled(), status=None if handle is None else handle.status
            )
            if verdict is None:
                raise
            if verdict.resubmit:
                handle = None  # lost by the server: submit it again
            if verdict.fault.kind == "outage":
                server = handle.generator if handle is not None else gen
                on_member = handle is not None and handle.generator is not gen
                if outage_without_wait(policy, on_member=on_member):
                    raise  # no waiting for servers: fail as the server said
                if not _answers(server):
                    if _move(gen, handle, exc):  # a pool: another server makes it
                        handle = None
                        if counter is not None:
                            counter("moved")
                        continue
                    if not may_wait_outage(policy):
                        raise  # no waiting for servers: fail as the server said
                    now = clock.monotonic()
                    outage_since = outage_since if outage_since is not None else now
                    _wait_for(server, exc, outage_since, policy, on_progress, canceled)
                    if counter is not None:
                        counter("outage")
                    continue  # where the job was, without spending the retry budget
            retries += 1
            delay = retry_wait(
                policy, retries, verdict.fault, job_done=handle is not None and handle.done
            )
            if delay is None:
                raise
            if counter is not None:
                counter(retry_kind(verdict.fault))
            _sleep(clock, delay, canceled)
    t2 = time.perf_counter()
    info = handle.info
    assert info is not None  # a saved job has its info
    t1 = t_done if t_done is not None else t2
    return Made(
        GenerationResult(
            path=path,
            image_id=handle.id,
            info=info,
            size=(info.width, info.height),
            timings={"generate": t1 - t0, "download": t2 - t1, "total": t2 - t0},
            job=handle,
        ),
        attempts,
        retries,
    )


def _adopt(
    gen: BaseImageGenerator, data: Mapping[str, Any], on_progress: ProgressCallback | None
) -> ImageJob | None:
    """The saved job followed again, or ``None`` when it cannot be (submit it anew)."""
    try:
        handle = gen.attach(data, on_progress=on_progress)
    except GeneratorError:
        return None
    if handle.status in ("canceled", "failed"):
        return None  # lost (a restart), or failed: a new try decides
    return handle


def _move(gen: BaseImageGenerator, handle: ImageJob | None, error: BaseException) -> bool:
    """Whether a pool takes the job away from its server, which does not answer, to give
    it to another: the server leaves rotation (a probe brings it back later)."""
    if not isinstance(gen, GeneratorPool) or handle is None or handle.generator is gen:
        return False
    try:
        member = gen.member_for(handle)
    except GeneratorError:
        return False
    gen.mark_dead(member, error)
    return bool(gen.live_members())


def _answers(gen: BaseImageGenerator) -> bool:
    try:
        return bool(gen.test_connection())
    except Exception:
        return False


def _wait_for(
    gen: BaseImageGenerator,
    error: BaseException,
    since: float,
    policy: RetryPolicy,
    on_progress: ProgressCallback | None,
    canceled: Callable[[], bool],
) -> None:
    """Probe ``gen`` with backoff until it answers; raise past the outage tolerance."""
    clock = gen.clock
    where = gen.shown_server or gen.name
    probe = 0
    while True:
        waited = clock.monotonic() - since
        delay = outage_wait(policy, waited=waited, probe=probe + 1)
        if delay is None:
            raise outage_error(where, gen.name, error, waited, policy) from error
        if on_progress is not None:
            on_progress(outage_progress(where, gen.name, waited))
        probe += 1
        _sleep(clock, delay, canceled)
        if canceled() or _answers(gen):
            return


def _sleep(clock: Any, seconds: float, canceled: Callable[[], bool]) -> None:
    """Sleep on ``clock`` in short slices, so that a cancel is heard."""
    end = clock.monotonic() + seconds
    while not canceled():
        left = end - clock.monotonic()
        if left <= 0:
            return
        clock.sleep(min(left, 0.25))
