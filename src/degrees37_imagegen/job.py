"""Jobs as handles: :class:`ImageJob`, and what plugins report about a job (:class:`JobUpdate`).

A generator's :meth:`~degrees37_imagegen.BaseImageGenerator.submit` returns an
:class:`ImageJob` as soon as the server has accepted the work. The handle follows the job
(:meth:`ImageJob.wait`), writes its image once (:meth:`ImageJob.save`), cancels it
(:meth:`ImageJob.cancel`), and serialises it (:meth:`ImageJob.to_dict`) so that another
process can re-attach to it with :meth:`~degrees37_imagegen.BaseImageGenerator.attach`.

The core owns this pipeline; a plugin supplies only the steps that differ per backend
(``start_job``, ``poll_job``/``wait_job``, ``fetch_image``, ``cancel_job``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .errors import (
    GeneratorError,
    GeneratorTimeoutError,
    InvalidRequestError,
    JobCanceledError,
)
from .progress import Progress, ProgressCallback, guard_progress
from .request import ImageRequest

if TYPE_CHECKING:
    from .base import BaseImageGenerator, ImageInfo

__all__ = [
    "JOB_FORMAT",
    "TERMINAL",
    "ImageData",
    "ImageJob",
    "JobRef",
    "JobStatus",
    "JobUpdate",
]

#: Where a job is: waiting in the server's queue, running, or finished one of three ways.
JobStatus = Literal["queued", "running", "done", "failed", "canceled"]

#: The statuses a job never leaves.
TERMINAL: frozenset[str] = frozenset({"done", "failed", "canceled"})

#: What ``to_dict`` writes under ``"format"``, so that ``attach`` recognises a saved job.
JOB_FORMAT = "degrees37-imagegen/job/1"

#: A fetched image: all its bytes, or an iterable of chunks (a streamed download).
ImageData = bytes | Iterable[bytes]


@dataclass(frozen=True)
class JobRef:
    """The server's reference to a job, as a plugin's ``start_job`` returns it.

    ``id`` is the server's own id (a queue item, a prompt id); ``data`` holds whatever else
    the plugin needs to find the job again in another process (JSON-safe: a batch id, a
    client id...).
    """

    id: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class JobUpdate:
    """What a plugin learned about a job from the server (one poll, or events).

    ``status`` is the job's status now; ``progress`` a report for the user, if any;
    ``error`` the job's error when ``status`` is ``failed``. When ``status`` is ``done``,
    ``result`` holds what ``fetch_image`` needs (image names...), and the plugin may say
    what was really used: ``seed_used=False`` when the server's graph has no seed (a
    template without one), ``model``, and ``generated_size`` when the server generated at
    another size. ``extra`` goes into the image's metadata.
    """

    status: JobStatus
    progress: Progress | None = None
    error: GeneratorError | None = None
    result: Mapping[str, Any] = field(default_factory=dict)
    seed_used: bool = True
    model: str | None = None
    generated_size: tuple[int, int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class ImageJob:
    """A handle on one image being made by a generator.

    ``id`` is the server's id; ``status`` one of ``queued``, ``running``, ``done``,
    ``failed``, ``canceled``. :meth:`wait` blocks until the job is done (raising its error
    if it failed); :attr:`info` then says what was really used (seed, size, model);
    :meth:`save` writes the image whole or not at all; :meth:`cancel` removes or interrupts
    it on the server; :meth:`to_dict` gives JSON-safe data for
    :meth:`~degrees37_imagegen.BaseImageGenerator.attach`.

    A handle may be shared between threads; its state changes under a lock.
    """

    def __init__(
        self,
        generator: BaseImageGenerator,
        request: ImageRequest,
        ref: JobRef,
        *,
        status: JobStatus = "queued",
        on_progress: ProgressCallback | None = None,
        cancelable: bool = True,
        attachable: bool = True,
    ) -> None:
        self.generator = generator
        self.request = request
        self.ref = ref
        self.cancelable = cancelable
        self.attachable = attachable
        self.on_progress: ProgressCallback = guard_progress(on_progress)
        self._status: JobStatus = status
        self._update: JobUpdate | None = None
        self._error: GeneratorError | None = None
        self._info: ImageInfo | None = None
        self._lock = threading.RLock()
        self._polls = 0
        self._done_callbacks: list[Callable[[ImageJob], None]] = []

    # -- what the handle tells ---------------------------------------------------------

    @property
    def id(self) -> str:
        """The server's id of this job."""
        return self.ref.id

    @property
    def status(self) -> JobStatus:
        """The status last seen: ``queued``, ``running``, ``done``, ``failed`` or ``canceled``."""
        return self._status

    @property
    def done(self) -> bool:
        """Whether the job has finished, one way or another (done, failed or canceled)."""
        return self._status in TERMINAL

    @property
    def error(self) -> GeneratorError | None:
        """The job's error once it failed or was canceled."""
        return self._error

    @property
    def info(self) -> ImageInfo | None:
        """What was really used (seed, generated size, model, server) once the job is done."""
        return self._info

    @property
    def server(self) -> str | None:
        """The server the job runs on, when the generator addresses one."""
        return self.generator.server

    def add_done_callback(self, callback: Callable[[ImageJob], None]) -> None:
        """Call ``callback(job)`` once, when the job finishes (at once if it has)."""
        with self._lock:
            if not self.done:
                self._done_callbacks.append(callback)
                return
        callback(self)

    def _finished(self) -> None:
        with self._lock:
            callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            callback(self)

    # -- following the job --------------------------------------------------------------

    def refresh(self) -> JobStatus:
        """Ask the server once where the job is; return its status."""
        if not self.done:
            self._apply(self.generator._step(self.generator.poll_job, self.ref))
        return self._status

    def wait(self, timeout: float | None = None) -> ImageJob:
        """Block until the job is done and return it; raise its error if it failed.

        ``timeout`` (seconds) bounds the wait: past it :class:`GeneratorTimeoutError` is
        raised and the job is left as it is on the server (:meth:`cancel` removes it).
        """
        gen = self.generator
        clock = gen.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not self.done:
            delay = gen.poll_delay(self._polls)
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    raise GeneratorTimeoutError(
                        f"job {self.id} on {gen.name!r} not done after {timeout:g}s "
                        f"(still {self._status})",
                        generator=gen.name,
                        work="queued",
                    )
                delay = min(delay, remaining)
            self._polls += 1
            self._apply(gen._step(gen.wait_job, self.ref, delay))
        return self._result()

    def _result(self) -> ImageJob:
        if self._status == "done":
            return self
        if self._error is not None:
            raise self._error
        raise JobCanceledError(
            f"job {self.id} on {self.generator.name!r} was canceled",
            generator=self.generator.name,
        )

    def _apply(self, update: JobUpdate) -> None:
        """Take a plugin's update: new status, progress, and on completion the info."""
        with self._lock:
            if self.done:
                return
            before = self._status
            self._status = update.status
            self._update = update
            if update.status != before:
                self._polls = 0  # news: look again soon (a job that starts running...)
            if update.status == "done":
                self._info = self.generator._info_for(self, update)
            elif update.status == "failed":
                error = update.error or GeneratorError(
                    f"job {self.id} failed on {self.generator.name!r}", work="ran"
                )
                self._error = self.generator._own(error)
            elif update.status == "canceled":
                self._error = self.generator._own(
                    update.error
                    or JobCanceledError(f"job {self.id} on {self.generator.name!r} was canceled")
                )
        if self.done:
            self._finished()
        if update.progress is not None:
            self.on_progress(update.progress)
        elif update.status != before and update.status in ("queued", "running"):
            self.on_progress(
                Progress(update.status, f"job {self.id}", generator=self.generator.name)
            )

    # -- results --------------------------------------------------------------------------

    def save(self, path: str | Path, *, metadata: bool = True) -> Path:
        """Write the image to ``path``, whole or not at all, and return the path written.

        Waits for the job first if it is not done yet. ``path`` may name an existing
        folder: the image is then written inside it as ``<job id>.png``. The request (prompt,
        seed really used, size, generator, model) goes into the PNG's text metadata under
        ``imagegen:`` keys unless ``metadata=False``.
        """
        if not self.done:
            self.wait()
        self._result()
        final = Path(path)
        if final.is_dir():
            final = final / f"{_safe_name(self.id)}.png"
        self.on_progress(Progress("downloading", self.id, generator=self.generator.name))
        self.generator._save(self, final, metadata=metadata)
        self.on_progress(Progress("done", f"saved {final}", generator=self.generator.name))
        return final

    def fetch(self) -> bytes:
        """The image's bytes, once the job is done (waits for it first)."""
        if not self.done:
            self.wait()
        self._result()
        data = self.generator._fetch(self)
        if isinstance(data, (bytes, bytearray, memoryview)):
            return bytes(data)
        return b"".join(data)

    @property
    def result(self) -> Mapping[str, Any]:
        """What the plugin said about the finished job (what ``fetch_image`` takes)."""
        return self._update.result if self._update is not None else {}

    def cancel(self) -> bool:
        """Cancel the job: remove it from the server's queue, or interrupt it if it runs.

        Only this job is touched, never another client's work. Returns ``True`` if it acted,
        ``False`` if the job had already finished or cannot be canceled.
        """
        if self.done or not self.cancelable:
            return False
        acted = bool(self.generator._step(self.generator.cancel_job, self.ref))
        if acted:
            with self._lock:
                if not self.done:
                    self._status = "canceled"
                    self._error = JobCanceledError(
                        f"job {self.id} on {self.generator.name!r} was canceled",
                        generator=self.generator.name,
                        work="ran",
                    )
            self._finished()
        return acted

    # -- saving and re-attaching ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data to re-attach to this job in another process.

        Holds the generator entry and class, the server, the server's ids and the request.
        Raises :class:`GeneratorError` for a job that cannot be re-attached (one made by a
        generator that implements only ``generate_image``/``download_image``).
        """
        if not self.attachable:
            raise GeneratorError(
                f"jobs of generator {self.generator.name!r} cannot be saved or re-attached: "
                f"{type(self.generator).__name__} implements only generate_image and "
                "download_image",
                generator=self.generator.name,
            )
        return saved_job(self.generator, self.request, self.ref, self._status)

    def __repr__(self) -> str:
        return f"<ImageJob {self.id!r} on {self.generator.name!r}: {self._status}>"


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".") or "image"


def saved_job(
    gen: BaseImageGenerator, request: ImageRequest, ref: JobRef | None, status: str
) -> dict[str, Any]:
    """The saved form of a job (:meth:`ImageJob.to_dict`); with no ``ref``, that of a job
    about to be sent (``id`` ``None``, status ``sending``), which :meth:`attach
    <degrees37_imagegen.BaseImageGenerator.attach>` finds by its request's key."""
    cls = type(gen)
    return {
        "format": JOB_FORMAT,
        "generator": gen.name,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "server": gen.shown_server,
        "id": None if ref is None else ref.id,
        "ref": {} if ref is None else dict(ref.data),
        "request": request.to_dict(),
        "status": status,
    }


def check_job_data(data: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequestError` unless ``data`` is what :meth:`ImageJob.to_dict` gave."""
    if not isinstance(data, Mapping) or data.get("format") != JOB_FORMAT:
        raise InvalidRequestError(
            f"not a saved job (expected format {JOB_FORMAT!r}, "
            f"got {data.get('format') if isinstance(data, Mapping) else type(data).__name__!r})"
        )
    for key in ("generator", "class", "id", "request"):
        if key not in data:
            raise InvalidRequestError(f"saved job has no {key!r}")
