"""The async pipeline: :class:`AsyncImageJob`, and the core's async side of making an image.

The async API mirrors the sync one, name for name (``await generator.asubmit(...)``,
``await job.wait()``, ``await job.save(path)``, ``await job.cancel()``). It drives a
plugin's async steps (``astart_job``, ``apoll_job``, ``await_job``, ``afetch_image``,
``acancel_job``); a plugin that implements only the sync steps gets defaults that run them
in a worker thread. An :class:`AsyncImageJob` wraps the sync :class:`ImageJob`, which keeps
the state and its rules (status, info, errors, done callbacks): one copy of them.

Files are written on the event loop's thread as the chunks arrive (small, local writes),
and a PNG is checked while it streams (every chunk's CRC up to ``IEND``), so that the file
just written is never read back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import _pipeline
from ._awrite import awrite_image
from .arguments import check_arguments
from .clock import Clock, SystemClock
from .errors import (
    RETRYABLE_ERRORS,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    IncompleteImageError,
)
from .faults import backoff_delay
from .files import as_path, output_format
from .job import ImageJob, JobRef, JobStatus, _safe_name, check_job_data
from .progress import Progress, ProgressCallback
from .request import ImageRequest
from .tls import ssl_context

if TYPE_CHECKING:
    from .base import BaseImageGenerator, ImageInfo

__all__ = [
    "AsyncImageJob",
    "aretrying",
    "asleep",
    "await_event",
    "await_or_cancel",
    "awrite_image",
    "chunks_in_thread",
    "is_native",
    "ssl_context",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

_FETCH_RETRYABLE = (*RETRYABLE_ERRORS, IncompleteImageError)


# -- time ----------------------------------------------------------------------------------


async def asleep(clock: Clock, seconds: float) -> None:
    """Wait ``seconds`` on ``clock``: really on the system clock; a test's fake clock moves
    its time on at once (the loop still gets a turn)."""
    if isinstance(clock, SystemClock):
        await asyncio.sleep(max(0.0, seconds))
    else:
        clock.sleep(seconds)
        await asyncio.sleep(0)


async def await_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event`` (see :func:`asleep`); whether it is set."""
    if event.is_set():
        return True
    if not isinstance(clock, SystemClock):
        await asleep(clock, seconds)
        return event.is_set()
    if seconds <= 0:  # a look, not a wait: no timer for it
        await asyncio.sleep(0)
        return event.is_set()
    try:
        if _timeout is not None:  # no task per wait, as wait_for makes (Python 3.11+)
            async with _timeout(seconds):
                await event.wait()
        else:
            await asyncio.wait_for(event.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


_timeout = getattr(asyncio, "timeout", None)


# -- calling plugin steps --------------------------------------------------------------------


def is_native(gen: BaseImageGenerator) -> bool:
    """Whether ``gen``'s plugin implements its async steps itself (no worker threads)."""
    from .base import BaseImageGenerator

    members = getattr(gen, "members", None)
    if members is not None and type(gen).submit is not BaseImageGenerator.submit:
        return all(is_native(m.generator) for m in members)
    return type(gen).astart_job is not BaseImageGenerator.astart_job


async def acall(gen: BaseImageGenerator, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await a plugin's async step: name the generator on its errors, wrap foreign ones
    (the async twin of the sync pipeline's ``call_step``)."""
    from ._pipeline import plugin_error

    try:
        return await func(*args)
    except GeneratorError as exc:
        gen._own(exc)
        raise
    except StopAsyncIteration:  # an iterator's end (``__anext__``), not a plugin's fault
        raise
    except Exception as exc:
        raise plugin_error(gen, exc) from exc


async def aretrying(
    gen: BaseImageGenerator,
    func: Callable[..., Awaitable[T]],
    *args: Any,
    retry_on: tuple[type[BaseException], ...] = RETRYABLE_ERRORS,
    unsent_only: bool = False,
) -> T:
    """``await func(*args)`` with the generator's one backoff (see ``retrying``): the same
    schedule, waits on its clock, and at least a limit error's ``retry_after``.
    ``unsent_only``: repeat only errors that say the call never reached the server (see
    ``retrying_unsent``)."""
    attempt = 0
    while True:
        try:
            return await func(*args)
        except retry_on as exc:
            sent = not isinstance(exc, GeneratorError) or exc.work != "not_sent"
            if attempt >= gen.max_retries or (unsent_only and sent):
                raise
            attempt += 1
            delay = backoff_delay(
                attempt,
                base=gen.retry_base_delay,
                retry_after=exc.retry_after if isinstance(exc, GeneratorLimitError) else None,
            )
            log.info("attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
            await asleep(gen.clock, delay)


async def chunks_in_thread(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    """A sync stream of chunks as an async iterator (each chunk read in a worker thread)."""
    iterator = iter(chunks)
    try:
        while True:
            chunk = await asyncio.to_thread(next, iterator, None)
            if chunk is None:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


# -- the handle ------------------------------------------------------------------------------


class AsyncImageJob:
    """The async handle on one image: :class:`ImageJob`'s methods as coroutines.

    ``await job.wait()``, ``await job.save(path)``, ``await job.cancel()``,
    ``await job.refresh()``, ``await job.fetch()``; ``job.to_dict()`` and the properties
    (``id``, ``status``, ``info``...) are plain. :attr:`sync_job` is the same job as a sync
    handle (its state is shared).
    """

    def __init__(self, job: ImageJob) -> None:
        self.sync_job = job

    # -- what the handle tells ---------------------------------------------------------------

    @property
    def generator(self) -> BaseImageGenerator:
        """The generator that follows the job."""
        return self.sync_job.generator

    @property
    def id(self) -> str:
        """The server's id of this job."""
        return self.sync_job.id

    @property
    def ref(self) -> JobRef:
        """The server's reference to the job."""
        return self.sync_job.ref

    @property
    def request(self) -> ImageRequest:
        """The request, seed resolved."""
        return self.sync_job.request

    @property
    def status(self) -> JobStatus:
        """The status last seen."""
        return self.sync_job.status

    @property
    def done(self) -> bool:
        """Whether the job has finished, one way or another."""
        return self.sync_job.done

    @property
    def error(self) -> GeneratorError | None:
        """The job's error once it failed or was canceled."""
        return self.sync_job.error

    @property
    def info(self) -> ImageInfo | None:
        """What was really used, once the job is done."""
        return self.sync_job.info

    @property
    def server(self) -> str | None:
        """The server the job runs on, when the generator addresses one."""
        return self.sync_job.server

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data to re-attach to this job (``aattach`` or ``attach``)."""
        return self.sync_job.to_dict()

    def add_done_callback(self, callback: Callable[[ImageJob], None]) -> None:
        """Call ``callback(sync job)`` once, when the job finishes."""
        self.sync_job.add_done_callback(callback)

    def __repr__(self) -> str:
        return f"<AsyncImageJob {self.id!r} on {self.generator.name!r}: {self.status}>"

    # -- following the job -------------------------------------------------------------------

    async def refresh(self) -> JobStatus:
        """Ask the server once where the job is; return its status."""
        job = self.sync_job
        if not job.done:
            gen = job.generator
            job._apply(await acall(gen, gen.apoll_job, job.ref))
        return job.status

    async def wait(self, timeout: float | None = None) -> AsyncImageJob:
        """Wait until the job is done and return it; raise its error if it failed.

        Past ``timeout`` seconds :class:`GeneratorTimeoutError` is raised and the job is left
        on the server (:meth:`cancel` removes it).
        """
        job = self.sync_job
        gen = job.generator
        clock = gen.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not job.done:
            delay = gen.poll_delay(job._polls)
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    raise GeneratorTimeoutError(
                        f"job {job.id} on {gen.name!r} not done after {timeout:g}s "
                        f"(still {job.status})",
                        generator=gen.name,
                        work="queued",
                    )
                delay = min(delay, remaining)
            job._polls += 1
            job._apply(await acall(gen, gen.await_job, job.ref, delay))
        job._result()
        return self

    async def cancel(self) -> bool:
        """Remove the job from the server's queue, or interrupt it; ``True`` if it acted."""
        job = self.sync_job
        if job.done or not job.cancelable:
            return False
        gen = job.generator
        acted = bool(await acall(gen, gen.acancel_job, job.ref))
        if acted:
            _mark_canceled(job)
        return acted

    # -- results -------------------------------------------------------------------------------

    async def save(self, path: str | Path, *, metadata: bool = True) -> Path:
        """Write the image to ``path``, whole or not at all (see :meth:`ImageJob.save`)."""
        job = self.sync_job
        if not job.done:
            await self.wait()
        job._result()
        if not job.attachable:  # a generator of the original contract writes it itself
            return await asyncio.to_thread(job.save, path, metadata=metadata)
        gen = job.generator
        final = as_path(path)
        if final.is_dir():
            final = final / f"{_safe_name(job.id)}.png"
        fmt = output_format(final)
        text = job.info.as_metadata() if metadata and job.info is not None else None
        job.on_progress(Progress("downloading", job.id, generator=gen.name))

        async def attempt() -> None:
            data = await acall(gen, gen.afetch_image, job.ref, job.result)
            try:
                await awrite_image(final, _guarded(gen, data), text=text, fmt=fmt)
            finally:
                close = getattr(data, "aclose", None)
                if close is not None:
                    await close()

        await aretrying(gen, attempt, retry_on=_FETCH_RETRYABLE)
        job.on_progress(Progress("done", f"saved {final}", generator=gen.name))
        return final

    async def fetch(self) -> bytes:
        """The image's bytes, once the job is done (waits for it first)."""
        job = self.sync_job
        if not job.done:
            await self.wait()
        job._result()
        gen = job.generator
        data = await acall(gen, gen.afetch_image, job.ref, job.result)
        if isinstance(data, bytes):
            return data
        return b"".join([chunk async for chunk in _guarded_chunks(gen, data)])


def _mark_canceled(job: ImageJob) -> None:
    from .errors import JobCanceledError

    with job._lock:
        if not job.done:
            job._status = "canceled"
            job._error = JobCanceledError(
                f"job {job.id} on {job.generator.name!r} was canceled",
                generator=job.generator.name,
                work="ran",
            )
    job._finished()


def _guarded(
    gen: BaseImageGenerator, data: bytes | AsyncIterator[bytes]
) -> bytes | AsyncIterator[bytes]:
    if isinstance(data, bytes):
        return data
    return _guarded_chunks(gen, data)


async def _guarded_chunks(
    gen: BaseImageGenerator, chunks: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await acall(gen, chunks.__anext__)
        except StopAsyncIteration:
            return
        yield chunk


# -- the pipeline ------------------------------------------------------------------------------


async def asubmit(
    gen: BaseImageGenerator,
    prompt: str,
    negative_prompt: str,
    width: int,
    height: int,
    seed: int,
    on_progress: ProgressCallback | None,
    options: dict[str, Any],
    on_sending: Callable[[dict[str, Any]], None] | None = None,
) -> AsyncImageJob:
    """What ``generator.asubmit`` does (see :meth:`BaseImageGenerator.submit`)."""
    from .base import BaseImageGenerator

    kwargs: dict[str, Any] = {**options, "on_progress": on_progress}
    if on_sending is not None:
        kwargs["on_sending"] = on_sending
    if getattr(gen, "members", None) is not None:
        return await _pool_submit(gen, prompt, negative_prompt, width, height, seed, kwargs)
    if gen._legacy or type(gen).submit is not BaseImageGenerator.submit:
        job = await asyncio.to_thread(
            gen.submit, prompt, negative_prompt, width, height, seed, **kwargs
        )
        return AsyncImageJob(job)
    check_arguments(gen, prompt, negative_prompt, width, height, seed, on_progress, options)
    request = _pipeline.new_request(gen, prompt, negative_prompt, width, height, seed, options)
    _pipeline.announce(gen, request, on_sending)
    try:
        ref = await acall(gen, gen.astart_job, request)
    except GeneratorError as exc:  # as _pipeline.start: a lost answer is looked up first
        if exc.work != "unknown" or not _pipeline.finds_jobs(gen):
            raise
        found, why = await asyncio.to_thread(_pipeline.look_up, gen, request)
        if found is None:
            _pipeline.lost_answer(exc, why)
            raise
        ref = found
    job = ImageJob(gen, request, ref, on_progress=on_progress)
    job.on_progress(Progress("submitted", f"job {ref.id}", generator=gen.name))
    gen._remember(job)
    return AsyncImageJob(job)


async def _pool_submit(
    pool: Any, prompt: str, negative: str, width: int, height: int, seed: int, kwargs: Any
) -> AsyncImageJob:
    """A pool's ``submit``, async: the least busy live member; move on when one is down."""
    while True:
        member = pool._acquire()
        try:
            job: AsyncImageJob = await member.generator.asubmit(
                prompt, negative, width, height, seed, **kwargs
            )
        except GeneratorConnectionError as exc:
            pool._release(member)
            if exc.work not in (None, "not_sent"):
                raise
            pool.mark_dead(member, exc)
            continue
        except BaseException:
            pool._release(member)
            raise
        job.add_done_callback(functools.partial(pool._release_for, member))
        pool._remember(job.sync_job)
        return job


async def aattach(
    gen: BaseImageGenerator, data: Mapping[str, Any], on_progress: ProgressCallback | None
) -> AsyncImageJob:
    """What ``generator.aattach`` does (see :meth:`BaseImageGenerator.attach`)."""
    members = getattr(gen, "members", None)
    if members is not None:
        server = data.get("server") if isinstance(data, Mapping) else None
        for member in members:
            if member.generator.addresses(server):
                job: AsyncImageJob = await member.generator.aattach(data, on_progress=on_progress)
                gen._remember(job.sync_job)
                return job
        raise GeneratorError(
            f"pool {gen.name!r} has no server {server!r} for saved job {data.get('id')!r}",
            generator=gen.name,
        )
    try:
        check_job_data(data)
    except GeneratorError as exc:
        raise gen._own(exc) from None
    cls = type(gen)
    own_class = f"{cls.__module__}:{cls.__qualname__}"
    if data["id"] is None:  # saved before it was sent: the lookup is a rare, blocking read
        return AsyncImageJob(await asyncio.to_thread(gen.attach, data, on_progress=on_progress))
    if data["class"] != own_class or not gen.addresses(data.get("server")) or gen._legacy:
        # The sync attach says what is wrong, in the same words (and does no I/O then).
        return AsyncImageJob(gen.attach(data, on_progress=on_progress))
    request = ImageRequest.from_dict(data["request"])
    ref = JobRef(str(data["id"]), dict(data.get("ref") or {}))
    job = AsyncImageJob(ImageJob(gen, request, ref, on_progress=on_progress))
    await job.refresh()
    gen._remember(job.sync_job)
    return job


async def ajob(gen: BaseImageGenerator, image_id: str) -> AsyncImageJob:
    """The job behind an id that ``agenerate_image`` returned (see ``generator.job``)."""
    with gen._images_lock:
        job = gen._jobs.get(image_id)
    if job is None:
        job = await asyncio.to_thread(gen.job, image_id)
    return AsyncImageJob(job)


async def await_or_cancel(job: AsyncImageJob, timeout: float | None) -> None:
    """Wait for ``job``; past ``timeout``, or when the waiting task is canceled, cancel it on
    its server (see the sync ``wait_or_cancel``)."""
    try:
        await job.wait(timeout=timeout)
    except GeneratorTimeoutError:
        if not await acancel_quietly(job):
            await job.refresh()
            if job.status == "done":
                return
        raise
    except asyncio.CancelledError:
        if not job.done:
            await asyncio.shield(acancel_quietly(job))
        raise
    except Exception:
        if not job.done:
            await acancel_quietly(job)
        raise


async def acancel_quietly(job: AsyncImageJob) -> bool:
    """``await job.cancel()``, logging instead of raising when the server cannot be told."""
    try:
        return await job.cancel()
    except GeneratorError as exc:
        log.warning("could not cancel job %s on %r: %s", job.id, job.generator.name, exc)
        return False
