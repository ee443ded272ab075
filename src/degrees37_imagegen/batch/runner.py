"""Running a batch: every job to a file, the servers kept busy, results as they finish.

Queue-based servers (InvokeAI, ComfyUI) make one image at a time. A generator's
``generate_image`` blocks until its image is done, and generators are thread-safe, so the
runner keeps ``concurrency`` jobs in flight per server, each in its own worker thread: one
runs on the server while the next waits in the server's queue, and each thread downloads
its own image while the server is already making the next. A pool gets ``concurrency``
threads per server. All threads of one generator take jobs from one shared queue, so a
server that finishes early takes the next job at once.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ..base import BaseImageGenerator
from ..errors import (
    GeneratorError,
    GeneratorNotFoundError,
    JobCanceledError,
)
from ..job import ImageJob
from ..progress import Progress
from .jobs import Job, JobProblem
from .journal import adoptable, journal_record, remove_leftovers
from .manifest import ManifestWriter, manifest_name, needs_remake, read_manifest
from .pool import GeneratorPool
from .recovery import (
    DEFAULT_OUTAGE_TOLERANCE,
    DEFAULT_RETRIES,
    Made,
    RetryPolicy,
    make_with_retries,
)
from .results import (
    BatchCallback,
    BatchCounts,
    BatchEvent,
    BatchSummary,
    JobResult,
    JobStatus,
    bump,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BatchDriver",
    "BatchCallback",
    "BatchCounts",
    "BatchEvent",
    "BatchRunner",
    "BatchSummary",
    "JobResult",
    "JobStatus",
    "run_batch",
]

log = logging.getLogger(__name__)

#: Jobs in flight per server: one running, one waiting in the server's queue.
DEFAULT_CONCURRENCY = 2

_WORKER_DONE = object()

#: How a batch's jobs run: see :class:`BatchRunner`.
BatchDriver = Literal["auto", "threads", "async"]


class BatchRunner:
    """Runs jobs with ``generator`` into the folder ``out_dir``.

    ``generators`` maps the names that jobs give in their ``generator`` key to generators
    (jobs without one use ``generator``). ``concurrency`` is the number of jobs in flight per
    server (default 2: one running, one queued). ``force`` remakes images that are already
    there. ``on_progress`` receives :class:`BatchEvent` reports from worker threads.
    ``driver`` runs the jobs on a thread each (``"threads"``), on one event loop in one
    thread (``"async"``), or on the loop when every generator is natively async (``"auto"``,
    see :meth:`uses_event_loop`); both follow the same retry rules.
    ``manifest=False`` writes no manifest; ``shard=(k, n)`` names the manifest after the
    shard. ``retries`` is each job's budget of retries of transient faults;
    ``outage_tolerance`` how long a job waits for a server that does not answer (seconds;
    by default each generator's ``outage_tolerance`` setting, else 300). The runner does not
    close the generators: their owner does.

    ::

        runner = BatchRunner(generator, "book")
        for result in runner.run(load_jobs("book.yaml")):
            print(result.status, result.path)
        print(runner.summary())
    """

    def __init__(
        self,
        generator: BaseImageGenerator,
        out_dir: str | Path,
        *,
        generators: Mapping[str, BaseImageGenerator] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        force: bool = False,
        on_progress: BatchCallback | None = None,
        manifest: bool = True,
        shard: tuple[int, int] | None = None,
        retries: int = DEFAULT_RETRIES,
        outage_tolerance: float | None = None,
        retry_base_delay: float = 1.0,
        driver: BatchDriver = "auto",
    ) -> None:
        if driver not in ("auto", "threads", "async"):
            raise ValueError(f"driver must be 'auto', 'threads' or 'async', got {driver!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, got {concurrency!r}")
        self.generator = generator
        self.generators = dict(generators or {})
        self.out_dir = Path(out_dir)
        self._paths: dict[str, Path] = {}  # made once per job: asked for several times
        self.concurrency = concurrency
        self.force = force
        self.on_progress = on_progress
        #: ``threads`` (a thread per job in flight), ``async`` (one event loop), or ``auto``.
        self.driver: BatchDriver = driver
        #: How hard each job tries (retries of transient faults, outage tolerance).
        self.policy = RetryPolicy(
            retries,
            DEFAULT_OUTAGE_TOLERANCE if outage_tolerance is None else float(outage_tolerance),
            retry_base_delay,
        )
        self._tolerance_given = outage_tolerance is not None
        #: Retries so far by kind (``retry``, ``lost``, ``outage``), for reports.
        self.retries: dict[str, int] = {}
        self._adopt: dict[str, Mapping[str, Any]] = {}
        self.manifest_path = self.out_dir / manifest_name(shard) if manifest else None
        self._manifest = ManifestWriter(self.manifest_path) if self.manifest_path else None
        self._stop = threading.Event()
        self._canceling = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._counts = BatchCounts()
        self._failures: list[JobResult] = []
        self._in_flight: dict[int, tuple[Job, ImageJob, Progress | None]] = {}
        self._started = time.perf_counter()
        self._ended: float | None = None

    # -- planning ---------------------------------------------------------------------

    def generator_for(self, job: Job) -> BaseImageGenerator:
        """The generator that makes ``job``."""
        if job.generator is None:
            return self.generator
        if job.generator in self.generators:
            return self.generators[job.generator]
        if job.generator == self.generator.name:
            return self.generator
        raise GeneratorNotFoundError(job.generator, [self.generator.name, *self.generators])

    def check(self, jobs: Iterable[Job]) -> list[JobProblem]:
        """Problems that would make jobs fail for sure: unknown generator, size refused."""
        problems: list[JobProblem] = []
        for job in jobs:
            try:
                self.generator_for(job).validate_dimensions(job.width, job.height)
            except GeneratorError as exc:
                problems.append(JobProblem(str(exc), job.source, job.index, job.line))
        return problems

    def path_for(self, job: Job) -> Path:
        """Where ``job``'s image goes."""
        path = self._paths.get(job.filename)
        if path is None:
            path = self._paths[job.filename] = self.out_dir / job.filename
        return path

    def is_done(self, job: Job) -> bool:
        """Whether ``job``'s file is already there as a whole, valid image."""
        from ..files import verify_image

        path = self.path_for(job)
        if not path.is_file():
            return False
        try:
            verify_image(path)
        except GeneratorError:
            return False
        return True

    # -- running ----------------------------------------------------------------------

    def run(self, jobs: Iterable[Job]) -> Iterator[JobResult]:
        """Run ``jobs`` and yield each :class:`JobResult` as it finishes.

        Jobs whose file is already there, whole, are yielded first as ``skipped`` (unless
        ``force``, or the manifest says the file was made from another request: a changed
        job is made again). A failed job does not stop the others. Stopping the iteration
        (``break``, an exception, Ctrl-C) calls :meth:`stop`: no new job starts; call
        :meth:`wait` to let the running ones finish and write their files.
        """
        jobs = list(jobs)
        previous = self._begin(jobs)
        try:
            todo: list[Job] = []
            yield from self._skips(jobs, previous, todo)
            yield from self._run_workers(todo)
        finally:
            self.stop()
            if not any(t.is_alive() for t in self._threads) and self._manifest is not None:
                self._manifest.close()
            self._ended = time.perf_counter()

    def _begin(self, jobs: Sequence[Job]) -> Mapping[str, Mapping[str, Any]]:
        """Start a batch of ``jobs``: check their generators, reset the counts, remove what
        a killed run left, find its jobs to adopt; return the manifest's records."""
        for job in jobs:
            self.generator_for(job)  # unknown generator names fail before anything runs
        self._stop.clear()
        self._canceling.clear()
        self._started = time.perf_counter()
        self._ended = None
        self._failures = []
        self._counts = BatchCounts(total=len(jobs))
        previous = read_manifest(self.out_dir) if self.out_dir.is_dir() else {}
        if self.out_dir.is_dir():
            remove_leftovers(self.out_dir, (self.path_for(j).name for j in jobs))  # a killed run's
        self._adopt = adoptable(previous, jobs, force=self.force)
        return previous

    def _skips(
        self, jobs: Sequence[Job], previous: Mapping[str, Mapping[str, Any]], todo: list[Job]
    ) -> Iterator[JobResult]:
        """Yield the jobs whose file is there, whole and of the same request, as skipped;
        put the others in ``todo``."""
        for job in jobs:
            record = previous.get(job.name)
            if not self.force and self.is_done(job) and not needs_remake(record, job):
                result = self._skipped(job, record)
                self._finish(result)
                yield result
            else:
                todo.append(job)

    def uses_event_loop(self, jobs: Iterable[Job]) -> bool:
        """Whether ``jobs`` run on one event loop (:mod:`.arunner`) rather than a thread per
        job in flight: ``driver="async"``, or ``"auto"`` when every generator they use
        implements its async steps natively (the same servers kept as busy, for a fraction
        of the client's CPU; a plugin without them would need a thread per step anyway)."""
        if self.driver != "auto":
            return self.driver == "async"
        from ..aio import is_native

        used = {id(g): g for g in map(self.generator_for, jobs)}
        return bool(used) and all(is_native(g) for g in used.values())

    def _run_workers(self, todo: Sequence[Job]) -> Iterator[JobResult]:
        if not todo:
            return
        if self.uses_event_loop(todo):
            from .arunner import run_in_loop_thread

            yield from run_in_loop_thread(self, todo)
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        results: queue.Queue[object] = queue.Queue()
        groups: dict[int, tuple[BaseImageGenerator, queue.SimpleQueue[Job]]] = {}
        for job in todo:
            gen = self.generator_for(job)
            groups.setdefault(id(gen), (gen, queue.SimpleQueue()))[1].put(job)
        self._threads = []
        for gen, jobs_queue in groups.values():
            servers = len(gen.members) if isinstance(gen, GeneratorPool) else 1
            count = min(jobs_queue.qsize(), servers * self.concurrency)
            for n in range(count):
                thread = threading.Thread(
                    target=self._worker,
                    args=(gen, jobs_queue, results),
                    name=f"imagegen-batch-{gen.name}-{n + 1}",
                    daemon=True,  # Ctrl-C twice must be able to end the process
                )
                self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        running = len(self._threads)
        while running:
            try:
                item = results.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is _WORKER_DONE:
                running -= 1
            elif isinstance(item, JobResult):
                yield item

    def _worker(
        self,
        gen: BaseImageGenerator,
        jobs_queue: queue.SimpleQueue[Job],
        results: queue.Queue[object],
    ) -> None:
        try:
            while not self._stop.is_set():
                try:
                    job = jobs_queue.get_nowait()
                except queue.Empty:
                    break
                result = self._run_job(job, gen)
                self._finish(result)
                results.put(result)
        finally:
            results.put(_WORKER_DONE)

    def _run_job(self, job: Job, gen: BaseImageGenerator) -> JobResult:
        path = self.path_for(job)
        hooks = self._start(job)

        def on_submit(handle: ImageJob) -> None:
            hooks.on_submit(handle)
            if self._canceling.is_set():
                handle.cancel()

        # Transient faults are retried where the job is (downloaded again, waited for again,
        # submitted again only when the server lost it or never had it): see recovery.py.
        try:
            outcome = make_with_retries(
                gen,
                path,
                {**job.request(), "options": dict(job.extra)},
                policy=self._policy_for(gen),
                on_progress=hooks.on_progress,
                on_submit=on_submit,
                on_sending=hooks.on_sending,
                canceled=self._canceling.is_set,
                adopt=self._adopt.pop(job.name, None),
                counter=hooks.counter,
            )
        except Exception as exc:  # a job's failure, whatever it is, must not stop the batch
            return self._end_failed(job, gen, exc, hooks)
        finally:
            with self._lock:
                self._in_flight.pop(job.index, None)
        return self._made(job, gen, outcome, hooks)

    def _start(self, job: Job) -> _JobHooks:
        """Count ``job`` as running, tell the display, and make its callbacks."""
        with self._lock:
            self._counts = bump(self._counts, running=1)
        self._emit("started", job)
        return _JobHooks(self, job)

    def _end_failed(
        self, job: Job, gen: BaseImageGenerator, exc: BaseException, hooks: _JobHooks
    ) -> JobResult:
        """The result of a job that :func:`make_with_retries` gave up on."""
        if isinstance(exc, JobCanceledError) and self._canceling.is_set():
            return self._failed(job, gen, exc, 1, hooks.submitted, status="canceled")
        return self._failed(job, gen, exc, 1, hooks.submitted)

    def _made(
        self, job: Job, gen: BaseImageGenerator, outcome: Made, hooks: _JobHooks
    ) -> JobResult:
        """The result of a job made into its file."""
        made, attempts = outcome.result, max(1, outcome.attempts)
        timings = dict(made.timings)
        if "running" in hooks.marks:
            timings["queued"] = hooks.marks["running"] - hooks.submitted
        server, image_id = None, made.image_id
        if isinstance(gen, GeneratorPool) and made.job is not None:
            server = gen.member_for(made.job).label
        return JobResult(
            job=job,
            status="done",
            path=made.path,
            seed=made.info.seed,
            generator=made.info.generator or gen.name,
            server=server,
            image_id=image_id,
            timings=timings,
            attempts=attempts,
        )

    def _failed(
        self,
        job: Job,
        gen: BaseImageGenerator,
        exc: BaseException,
        attempts: int,
        since: float,
        *,
        status: JobStatus = "failed",
    ) -> JobResult:
        if not isinstance(exc, GeneratorError):
            log.error("job %s failed with an unexpected error", job.index, exc_info=exc)
        return JobResult(
            job=job,
            status=status,
            path=self.path_for(job),
            generator=gen.name,
            timings={"total": time.perf_counter() - since},
            error=str(exc) or type(exc).__name__,
            error_type=type(exc).__name__,
            attempts=attempts,
        )

    def _skipped(self, job: Job, previous: Mapping[str, Any] | None) -> JobResult:
        result = JobResult(job=job, status="skipped", path=self.path_for(job))
        if previous is not None and previous.get("status") in {"done", "skipped"}:
            seed = previous.get("seed")
            result.seed = seed if isinstance(seed, int) else None  # or "not used"
            result.generator = previous.get("generator")
            result.server = previous.get("server")
            result.image_id = previous.get("image_id")
            return result
        # No record of this file (made by hand, or the manifest is gone): read what the
        # image says about itself, and record it.
        from ..files import METADATA_PREFIX, read_png_text

        try:
            text = read_png_text(result.path)
        except Exception:  # not a PNG, or unreadable text: the image is still whole
            text = {}
        seed = text.get(METADATA_PREFIX + "seed", "")
        result.seed = int(seed) if seed.lstrip("-").isdigit() else None
        result.generator = text.get(METADATA_PREFIX + "generator")
        self._record(result)
        return result

    def _policy_for(self, gen: BaseImageGenerator) -> RetryPolicy:
        """The policy, with ``gen``'s own ``outage_tolerance`` setting unless one was given."""
        setting = gen.config.get("outage_tolerance")
        if self._tolerance_given or setting is None:
            return self.policy
        return dataclasses.replace(self.policy, outage_tolerance=float(setting))

    def _journal(self, job: Job, saved: dict[str, Any], *, sync: bool) -> bool:
        """Record that ``job`` is (about to be) on a server, as its saved handle, so that a
        rerun after a kill adopts it instead of making it again; whether it was written."""
        if self._manifest is None:
            return False
        try:
            self._manifest.write(journal_record(job, self.path_for(job), saved), sync=sync)
        except OSError as exc:
            log.error("cannot write the manifest %s: %s", self.manifest_path, exc)
            return False
        return True

    def _record(self, result: JobResult) -> None:
        if self._manifest is None:
            return
        try:
            self._manifest.write(result.record())
        except OSError as exc:  # the image is in place; a lost record must not lose it
            log.error("cannot write the manifest %s: %s", self.manifest_path, exc)

    def _finish(self, result: JobResult) -> None:
        if result.status != "skipped":  # a skipped job's record is already there
            self._record(result)
        with self._lock:
            running = -1 if result.status != "skipped" else 0
            if result.status == "done":
                self._counts = bump(self._counts, done=1, running=running)
            elif result.status == "skipped":
                self._counts = bump(self._counts, skipped=1)
            elif result.status == "canceled":
                self._counts = bump(self._counts, running=running)
            else:
                self._counts = bump(self._counts, failed=1, running=running)
                self._failures.append(result)
        self._emit("finished", result.job, result=result)

    def _emit(
        self,
        kind: Literal["started", "progress", "finished"],
        job: Job,
        *,
        progress: Progress | None = None,
        result: JobResult | None = None,
    ) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(BatchEvent(kind, job, self.counts, progress, result))
        except Exception:  # a broken display must not fail the job it reports on
            log.exception("batch progress callback failed")

    # -- control ----------------------------------------------------------------------

    @property
    def counts(self) -> BatchCounts:
        """How far the current (or last) batch is."""
        with self._lock:
            return self._counts

    def stop(self) -> None:
        """Start no new job; jobs already sent to a server carry on (see :meth:`wait`)."""
        self._stop.set()

    def in_flight(self) -> list[tuple[Job, ImageJob, Progress | None]]:
        """The jobs on servers now: each batch job, its handle and its last progress report."""
        with self._lock:
            return sorted(self._in_flight.values(), key=lambda item: item[0].index)

    def cancel(self) -> int:
        """Stop, and cancel every job of ours on the servers (queued or running).

        Returns how many jobs the servers canceled. Their workers end them as ``canceled``;
        call :meth:`wait` to let the workers finish.
        """
        self.stop()
        self._canceling.set()
        canceled = 0
        for _job, handle, _progress in self.in_flight():
            try:
                canceled += handle.cancel()
            except GeneratorError as exc:  # the server may be gone: say so, cancel the rest
                log.warning("could not cancel job %s: %s", handle.id, exc)
        return canceled

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for running jobs to finish; return whether they all did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            while thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                thread.join(0.2 if left is None else min(0.2, left))  # stays interruptible
        self._ended = time.perf_counter()
        if self._manifest is not None:
            self._manifest.close()
        return True

    def summary(self) -> BatchSummary:
        """Counts, failures and elapsed time of the current (or last) batch."""
        with self._lock:
            counts, failures = self._counts, list(self._failures)
        end = self._ended if self._ended is not None else time.perf_counter()
        return BatchSummary(
            total=counts.total,
            done=counts.done,
            skipped=counts.skipped,
            failed=counts.failed,
            not_run=counts.total - counts.finished,
            elapsed=end - self._started,
            failures=sorted(failures, key=lambda r: r.job.index),
        )


class _JobHooks:
    """One running job's callbacks for :func:`make_with_retries` (and its async twin):
    progress into the runner's in-flight table and events, each submission journaled
    before it is sent and its handle as its server accepts it, retries counted."""

    def __init__(self, runner: BatchRunner, job: Job) -> None:
        self.runner = runner
        self.job = job
        self.marks: dict[str, float] = {}
        self.submitted = time.perf_counter()
        #: Whether each submission's saved form was journaled before it was sent.
        self.announced: list[bool] = []

    def on_progress(self, progress: Progress) -> None:
        """File ``progress`` and report it."""
        runner, job = self.runner, self.job
        if progress.stage in {"running", "step"}:
            self.marks.setdefault("running", time.perf_counter())
        with runner._lock:
            flight = runner._in_flight.get(job.index)
            if flight is not None:
                runner._in_flight[job.index] = (flight[0], flight[1], progress)
        runner._emit("progress", job, progress=progress)

    def on_sending(self, saved: dict[str, Any]) -> None:
        """The job is about to be sent: journal its saved form (with its idempotency key)."""
        # Durable before anything is sent: a kill from here on costs no image twice.
        self.announced.append(self.runner._journal(self.job, saved, sync=True))

    def on_submit(self, handle: ImageJob) -> None:
        """``handle`` is on its server: in flight, and journaled."""
        runner, job = self.runner, self.job
        with runner._lock:
            runner._in_flight[job.index] = (job, handle, None)
        try:
            saved = handle.to_dict()
        except GeneratorError:
            return  # a job that cannot be re-attached has nothing to journal
        # With the job already journaled by its key, this record only saves the rerun a
        # lookup: no need to wait for the disk.
        runner._journal(job, saved, sync=not (self.announced and self.announced[-1]))

    def counter(self, kind: str) -> None:
        """Count a retry of ``kind``."""
        runner = self.runner
        with runner._lock:
            runner.retries[kind] = runner.retries.get(kind, 0) + 1


def run_batch(
    jobs: Iterable[Job],
    generator: BaseImageGenerator,
    out_dir: str | Path,
    **options: Any,
) -> Iterator[JobResult]:
    """Run ``jobs`` with ``generator`` into ``out_dir``; yield results as they finish.

    ``options`` are those of :class:`BatchRunner` (``concurrency``, ``force``,
    ``on_progress``...). Use :class:`BatchRunner` directly for counts and a summary.
    """
    return BatchRunner(generator, out_dir, **options).run(jobs)
