"""One batch job made whole despite transient faults, on an event loop:
:func:`amake_with_retries`.

The async twin of :func:`~.recovery.make_with_retries`: the same loop over the job's
handle, the same decisions (:mod:`.retry_rules`: download again, wait again, submit
again, wait for the server, fail; the budget and the backoff), driven through the
generator's async steps. Probing a server that does not answer (rare) runs in a worker
thread, as the generators' ``test_connection`` is synchronous.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..aio import AsyncImageJob, acancel_quietly, asleep
from ..base import BaseImageGenerator
from ..errors import GeneratorError, JobCanceledError
from ..files import check_output
from ..generation import GenerationResult
from ..job import ImageJob
from ..progress import ProgressCallback
from .health import revive_due
from .pool import GeneratorPool
from .recovery import Made, RetryPolicy, _answers, _move
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

__all__ = ["amake_with_retries"]


async def amake_with_retries(
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
    """Make ``request`` into ``path`` as :func:`~.recovery.make_with_retries` does (the
    same arguments and rules), awaiting the generator's async steps.

    ``on_submit`` gets each handle's :class:`~degrees37_imagegen.ImageJob` as soon as its
    server has accepted it.
    """
    clock = gen.clock
    t0 = time.perf_counter()
    handle: AsyncImageJob | None = None
    attempts = retries = 0
    outage_since: float | None = None
    deadline: float | None = None
    timeout = gen.job_timeout()
    if adopt is not None:
        handle = await _aadopt(gen, adopt, on_progress)
        if handle is not None:
            deadline = None if timeout is None else clock.monotonic() + timeout
            if on_submit is not None:
                on_submit(handle.sync_job)
    t_done: float | None = None
    while True:
        if canceled():
            raise JobCanceledError("canceled before it was made", generator=gen.name)
        try:
            if handle is None:
                if isinstance(gen, GeneratorPool) and not all(m.alive for m in gen.members):
                    await asyncio.to_thread(revive_due, gen)  # servers back up take jobs
                check_output(path)  # a path that cannot be written costs no work
                handle = await gen.asubmit(
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
                    on_submit(handle.sync_job)
            if not handle.done:
                left = None if deadline is None else max(0.0, deadline - clock.monotonic())
                await handle.wait(timeout=left)
            t_done = t_done or time.perf_counter()
            await handle.save(path)
            outage_since = None
            break
        except Exception as exc:
            job_done = None if handle is None else handle.done
            if over_time(exc, job_done=job_done, deadline=deadline, now=clock.monotonic()):
                assert handle is not None
                await acancel_quietly(handle)  # the job's own time limit: give up on it
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
                if not await asyncio.to_thread(_answers, server):
                    if _move(gen, None if handle is None else handle.sync_job, exc):
                        handle = None  # a pool: another server makes it
                        if counter is not None:
                            counter("moved")
                        continue
                    if not may_wait_outage(policy):
                        raise  # no waiting for servers: fail as the server said
                    now = clock.monotonic()
                    outage_since = outage_since if outage_since is not None else now
                    await _await_server(server, exc, outage_since, policy, on_progress, canceled)
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
            await _asleep(clock, delay, canceled)
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
            job=handle.sync_job,
        ),
        attempts,
        retries,
    )


async def _aadopt(
    gen: BaseImageGenerator, data: Mapping[str, Any], on_progress: ProgressCallback | None
) -> AsyncImageJob | None:
    """The saved job followed again, or ``None`` when it cannot be (submit it anew)."""
    try:
        handle = await gen.aattach(data, on_progress=on_progress)
    except GeneratorError:
        return None
    if handle.status in ("canceled", "failed"):
        return None  # lost (a restart), or failed: a new try decides
    return handle


async def _await_server(
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
        await _asleep(clock, delay, canceled)
        if canceled() or await asyncio.to_thread(_answers, gen):
            return


async def _asleep(clock: Any, seconds: float, canceled: Callable[[], bool]) -> None:
    """Sleep on ``clock`` in short slices, so that a cancel is heard."""
    end = clock.monotonic() + seconds
    while not canceled():
        left = end - clock.monotonic()
        if left <= 0:
            return
        await asleep(clock, min(left, 0.25))
