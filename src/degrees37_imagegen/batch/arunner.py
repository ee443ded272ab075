"""Running a batch on one event loop: :func:`run_batch_async`, no thread per job.

The async twin of the thread runner (:mod:`.runner`): ``concurrency`` jobs in flight per
server, each a task on one event loop, driving the generators' async steps (natively for
plugins that implement them, in worker threads otherwise). Each job follows the thread
runner's rules for faults (:func:`~.arecovery.amake_with_retries`), and the bookkeeping is
the :class:`~.runner.BatchRunner`'s own (skips, journal, adoption, manifest, counts,
events, cancel), so both drivers behave and report the same way. ``imagegen batch`` runs
this engine in one thread (:func:`run_in_loop_thread`) when ``BatchRunner.driver`` says so.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..aio import AsyncImageJob, acancel_quietly
from ..base import BaseImageGenerator
from ..job import ImageJob
from .arecovery import amake_with_retries
from .jobs import Job
from .pool import GeneratorPool
from .results import JobResult
from .runner import BatchRunner

log = logging.getLogger(__name__)

__all__ = ["AsyncBatchEngine", "run_batch_async"]

_DONE = object()


class AsyncBatchEngine:
    """Runs a :class:`BatchRunner`'s jobs as tasks on an event loop (see the module doc)."""

    def __init__(self, runner: BatchRunner) -> None:
        self.runner = runner
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self, todo: Sequence[Job]) -> AsyncIterator[JobResult]:
        """Run ``todo`` and yield each result as it finishes."""
        runner = self.runner
        if not todo:
            return
        runner.out_dir.mkdir(parents=True, exist_ok=True)
        results: asyncio.Queue[object] = asyncio.Queue()
        groups: dict[int, tuple[BaseImageGenerator, list[Job]]] = {}
        for job in todo:
            gen = runner.generator_for(job)
            groups.setdefault(id(gen), (gen, []))[1].append(job)
        workers: list[asyncio.Task[None]] = []
        for gen, jobs in groups.values():
            servers = len(gen.members) if isinstance(gen, GeneratorPool) else 1
            pending = iter(jobs)
            for _ in range(min(len(jobs), servers * runner.concurrency)):
                workers.append(asyncio.ensure_future(self._worker(gen, pending, results)))
        running = len(workers)
        try:
            while running:
                item = await results.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, JobResult):
                    yield item
        finally:
            runner.stop()
            for task in workers:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(
        self, gen: BaseImageGenerator, pending: Iterator[Job], results: asyncio.Queue[object]
    ) -> None:
        runner = self.runner
        try:
            while not runner._stop.is_set():
                job = next(pending, None)
                if job is None:
                    break
                result = await self._run_job(job, gen)
                runner._finish(result)
                results.put_nowait(result)
        finally:
            results.put_nowait(_DONE)

    async def _run_job(self, job: Job, gen: BaseImageGenerator) -> JobResult:
        runner = self.runner
        hooks = runner._start(job)

        def on_submit(handle: ImageJob) -> None:
            hooks.on_submit(handle)
            if runner._canceling.is_set():
                self._cancel_soon(handle)

        # The thread runner's rules (recovery.py), on this loop: see arecovery.py.
        try:
            outcome = await amake_with_retries(
                gen,
                runner.path_for(job),
                {**job.request(), "options": dict(job.extra)},
                policy=runner._policy_for(gen),
                on_progress=hooks.on_progress,
                on_submit=on_submit,
                on_sending=hooks.on_sending,
                canceled=runner._canceling.is_set,
                adopt=runner._adopt.pop(job.name, None),
                counter=hooks.counter,
            )
        except Exception as exc:  # a job's failure, whatever it is, must not stop the batch
            return runner._end_failed(job, gen, exc, hooks)
        finally:
            with runner._lock:
                runner._in_flight.pop(job.index, None)
        return runner._made(job, gen, outcome, hooks)

    def _cancel_soon(self, handle: ImageJob) -> None:
        """Cancel ``handle`` on its server from this loop (the batch is being canceled)."""
        task = asyncio.ensure_future(acancel_quietly(AsyncImageJob(handle)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def run_batch_async(
    jobs: Iterable[Job],
    generator: BaseImageGenerator,
    out_dir: str | Path,
    *,
    runner: BatchRunner | None = None,
    **options: Any,
) -> AsyncIterator[JobResult]:
    """Run ``jobs`` with ``generator`` into ``out_dir`` on this event loop; yield each
    :class:`JobResult` as it finishes (``async for result in run_batch_async(...)``).

    ``options`` are those of :class:`BatchRunner` (``concurrency``, ``force``,
    ``on_progress``, ``manifest``, ``shard``); pass ``runner=`` (a :class:`BatchRunner`)
    instead to read its counts and summary, or to :meth:`~BatchRunner.cancel` it. Jobs
    whose file is already there, whole, are yielded first as ``skipped``. Leaving the loop
    early stops the batch: jobs not started are not run.
    """
    if runner is None:
        runner = BatchRunner(generator, out_dir, **options)
    jobs = list(jobs)
    previous = runner._begin(jobs)
    try:
        todo: list[Job] = []
        for result in runner._skips(jobs, previous, todo):
            yield result
        async for result in AsyncBatchEngine(runner).run(todo):
            yield result
    finally:
        runner.stop()
        if runner._manifest is not None:
            runner._manifest.close()
        runner._ended = time.perf_counter()


def run_in_loop_thread(runner: BatchRunner, todo: Sequence[Job]) -> Iterator[JobResult]:
    """Drive :class:`AsyncBatchEngine` on an event loop in one background thread and yield
    its results here: what the thread runner does with one thread instead of one per job."""
    import queue

    results: queue.Queue[object] = queue.Queue()

    async def main() -> None:
        try:
            async for result in AsyncBatchEngine(runner).run(todo):
                results.put(result)
        finally:
            try:
                await _close_loop_drivers(runner)
            finally:
                results.put(_DONE)

    thread = threading.Thread(
        target=asyncio.run, args=(main(),), name="imagegen-batch-loop", daemon=True
    )
    runner._threads = [thread]
    thread.start()
    while True:
        try:
            item = results.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
        except queue.Empty:
            continue
        if item is _DONE:
            # The loop still shuts down (async generators, the default executor): let it
            # end, so that the runner sees no thread left and closes the manifest.
            thread.join(5)
            return
        if isinstance(item, JobResult):
            yield item


async def probe(runner: BatchRunner, generators: Sequence[BaseImageGenerator]) -> list[bool]:
    """Whether each of ``generators`` answers (``atest_connection``), then close the
    drivers this loop made: the batch's own loop makes its own."""
    try:
        return [await gen.atest_connection() for gen in generators]
    finally:
        await _close_loop_drivers(runner)


async def _close_loop_drivers(runner: BatchRunner) -> None:
    """Close the async drivers the batch's loop made (its sockets and clients); the
    generators themselves stay open for their owner."""
    gens = {id(g): g for g in [runner.generator, *runner.generators.values()]}
    for gen in list(gens.values()):
        for member in gen.members if isinstance(gen, GeneratorPool) else ():
            gens[id(member.generator)] = member.generator
    for gen in gens.values():
        close = getattr(gen, "aclose_driver", None)
        if close is not None:
            try:
                await close()
            except Exception:  # a socket that fails to close is gone either way
                log.debug("closing %r's async driver failed", gen.name, exc_info=True)
