"""Running a batch on one event loop: :func:`run_batch_async`, no thread per job.

The async twin of the thread runner (:mod:`.runner`): ``concurrency`` jobs in flight per
server, each a task on one event loop, driving the generators' async steps (natively for
plugins that implement them, in worker threads otherwise). The bookkeeping is the
:class:`~.runner.BatchRunner`'s own (skips, manifest, counts, events, cancel), so both
drivers report the same way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..aio import AsyncImageJob, acancel_quietly, await_or_cancel
from ..base import BaseImageGenerator
from ..errors import GeneratorConnectionError, JobCanceledError
from ..files import check_output
from ..progress import Progress
from .jobs import Job
from .manifest import needs_remake, read_manifest
from .pool import GeneratorPool
from .results import JobResult, bump
from .runner import BatchRunner

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
        path = runner.path_for(job)
        with runner._lock:
            runner._counts = bump(runner._counts, running=1)
        runner._emit("started", job)
        marks: dict[str, float] = {}

        def on_progress(progress: Progress) -> None:
            if progress.stage in {"running", "step"}:
                marks.setdefault("running", time.perf_counter())
            with runner._lock:
                flight = runner._in_flight.get(job.index)
                if flight is not None:
                    runner._in_flight[job.index] = (flight[0], flight[1], progress)
            runner._emit("progress", job, progress=progress)

        attempts = 0
        max_attempts = len(gen.members) if isinstance(gen, GeneratorPool) else 1
        while True:
            attempts += 1
            marks.clear()
            submitted = time.perf_counter()
            handle: AsyncImageJob | None = None
            try:
                check_output(path)
                handle = await gen.asubmit(
                    job.prompt,
                    negative_prompt=job.negative_prompt,
                    width=job.width,
                    height=job.height,
                    seed=job.seed,
                    on_progress=on_progress,
                    **job.extra,
                )
                with runner._lock:
                    runner._in_flight[job.index] = (job, handle.sync_job, None)
                if runner._canceling.is_set():
                    await acancel_quietly(handle)
                await await_or_cancel(handle, gen.job_timeout())
                generated = time.perf_counter()
                await handle.save(path)
                saved = time.perf_counter()
            except JobCanceledError as exc:
                return runner._failed(job, gen, exc, attempts, submitted, status="canceled")
            except GeneratorConnectionError as exc:
                if (
                    isinstance(gen, GeneratorPool)
                    and attempts < max_attempts
                    and gen.live_members()
                ):
                    continue
                return runner._failed(job, gen, exc, attempts, submitted)
            except Exception as exc:  # a job's failure must not stop the batch
                return runner._failed(job, gen, exc, attempts, submitted)
            finally:
                with runner._lock:
                    runner._in_flight.pop(job.index, None)
            break
        info = handle.info
        assert info is not None  # a saved job is done
        timings = {
            "generate": generated - submitted,
            "download": saved - generated,
            "total": saved - submitted,
        }
        if "running" in marks:
            timings["queued"] = marks["running"] - submitted
        server = None
        if isinstance(gen, GeneratorPool):
            server = gen.member_for(handle.sync_job).label
        return JobResult(
            job=job,
            status="done",
            path=path,
            seed=info.seed,
            generator=info.generator or gen.name,
            server=server,
            image_id=handle.id,
            timings=timings,
            attempts=attempts,
        )


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
    for job in jobs:
        runner.generator_for(job)  # unknown generator names fail before anything runs
    runner._stop.clear()
    runner._canceling.clear()
    runner._started = time.perf_counter()
    runner._ended = None
    runner._failures = []
    runner._counts = type(runner._counts)(total=len(jobs))
    previous = read_manifest(runner.out_dir) if runner.out_dir.is_dir() else {}
    try:
        todo: list[Job] = []
        for job in jobs:
            record = previous.get(job.name)
            if not runner.force and runner.is_done(job) and not needs_remake(record, job):
                result = runner._skipped(job, record)
                runner._finish(result)
                yield result
            else:
                todo.append(job)
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
            return
        if isinstance(item, JobResult):
            yield item
