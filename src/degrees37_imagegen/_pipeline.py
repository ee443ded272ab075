"""The core's side of making an image: step calls, saving, re-attaching, and the adapter for
generators written for the original ``generate_image``/``download_image`` contract.

:class:`~degrees37_imagegen.BaseImageGenerator` and :class:`~degrees37_imagegen.ImageJob`
delegate here, so that the pipeline lives in one place and the base class stays a contract.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import (
    RETRYABLE_ERRORS,
    GeneratorError,
    GeneratorTimeoutError,
    IncompleteImageError,
    InvalidRequestError,
    PluginError,
)
from .files import add_png_text, atomic_path, output_format, verify_image, write_image
from .images import prepare_image_options
from .job import ImageData, ImageJob, JobRef, JobUpdate, check_job_data, saved_job
from .progress import Progress, ProgressCallback, guard_progress
from .request import ImageRequest
from .retry import retry_with_backoff

if TYPE_CHECKING:
    from .base import BaseImageGenerator, ImageInfo

T = TypeVar("T")

log = logging.getLogger(__name__)

#: What a download is retried on: the usual transient errors and a truncated image.
_FETCH_RETRYABLE = (*RETRYABLE_ERRORS, IncompleteImageError)


def is_legacy(cls: type[BaseImageGenerator]) -> bool:
    """Whether ``cls`` implements the original contract instead of the job steps.

    Raises :class:`TypeError` for a class that implements neither.
    """
    from .base import BaseImageGenerator

    if cls.submit is not BaseImageGenerator.submit:
        return False  # it hands jobs to other generators (a pool)
    has_steps = cls.start_job is not BaseImageGenerator.start_job
    has_legacy = cls.generate_image is not BaseImageGenerator.generate_image
    if has_steps:
        missing = [
            step
            for step in ("poll_job", "fetch_image")
            if getattr(cls, step) is getattr(BaseImageGenerator, step)
        ]
        if missing:
            raise TypeError(f"{cls.__name__} implements start_job but not {', '.join(missing)}")
        return False
    if has_legacy:
        if cls.download_image is BaseImageGenerator.download_image:
            raise TypeError(f"{cls.__name__} implements generate_image but not download_image")
        return True
    raise TypeError(
        f"{cls.__name__} implements neither the job steps (start_job, poll_job, fetch_image) "
        "nor generate_image and download_image"
    )


def finds_jobs(gen: BaseImageGenerator) -> bool:
    """Whether ``gen`` can find its jobs by their key (implements ``find_job``)."""
    from .base import BaseImageGenerator

    return type(gen).find_job is not BaseImageGenerator.find_job and not gen._legacy


def new_request(
    gen: BaseImageGenerator,
    prompt: str,
    negative_prompt: str,
    width: int,
    height: int,
    seed: int,
    options: Mapping[str, Any],
) -> ImageRequest:
    """The request ``submit`` and ``asubmit`` send: size validated, seed resolved, input
    images stored as references, and a fresh idempotency key."""
    width, height = gen._step(gen.validate_dimensions, width, height)
    options = gen._step(prepare_image_options, options)  # images -> stored references
    return ImageRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=width,
        height=height,
        seed=gen.resolve_seed(seed),
        options=options,
        key=str(uuid.uuid4()),
    )


def announce(
    gen: BaseImageGenerator,
    request: ImageRequest,
    on_sending: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Hand ``on_sending`` the saved form of the job about to be sent, when ``gen`` can find
    it again by its key (otherwise there is nothing a rerun could follow)."""
    if on_sending is not None and finds_jobs(gen):
        on_sending(saved_job(gen, request, None, "sending"))


def start(gen: BaseImageGenerator, request: ImageRequest) -> JobRef:
    """``start_job``; when its answer was lost (``work="unknown"``), the job is looked up by
    its key before the error is raised, so that the caller never submits it twice."""
    try:
        return call_step(gen, gen.start_job, request)
    except GeneratorError as exc:
        if exc.work != "unknown" or not finds_jobs(gen):
            raise
        ref, why = look_up(gen, request)
        if ref is None:
            lost_answer(exc, why)
            raise
        log.info("the answer to job %s was lost, but %s has it", request.key, gen.name)
        return ref


def look_up(gen: BaseImageGenerator, request: ImageRequest) -> tuple[JobRef | None, str]:
    """``find_job``, retried as a read: the job's reference, or ``None`` and why not (the
    server has no such job, or could not be asked)."""
    try:
        found: JobRef | None = call_step(gen, gen.retrying, gen.find_job, request)
    except GeneratorError as exc:
        log.info("could not look for job %s on %s: %s", request.key, gen.name, exc)
        return None, f"could not look for it ({exc.message})"
    return found, "" if found is not None else "the server does not have it"


def lost_answer(exc: GeneratorError, why: str) -> None:
    """Say on ``exc`` that the submission it failed was looked for and not found."""
    exc.message = f"{exc.message}; {why}, and it was not repeated here"
    exc.args = (exc.message, *exc.args[1:])


def call_step(gen: BaseImageGenerator, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a plugin step: name the generator on its errors, wrap foreign exceptions."""
    try:
        return func(*args, **kwargs)
    except GeneratorError as exc:
        gen._own(exc)
        raise
    except Exception as exc:
        raise plugin_error(gen, exc) from exc


def plugin_error(gen: BaseImageGenerator, exc: Exception) -> PluginError:
    """A plugin's own exception as one line naming the generator and its distribution."""
    return PluginError(
        f"generator {gen.name!r} ({plugin_label(type(gen))}) failed: {type(exc).__name__}: {exc}",
        generator=gen.name,
    )


@functools.lru_cache(maxsize=64)
def plugin_label(cls: type) -> str:
    """``distribution version`` of the package a generator class comes from, or its module."""
    from importlib import metadata

    top = cls.__module__.split(".")[0]
    try:
        dists = metadata.packages_distributions().get(top) or []
        if dists:
            return f"{dists[0]} {metadata.version(dists[0])}"
    except Exception:  # noqa: S110 (a label for a message; the module name will do)
        pass
    return cls.__module__


def retrying(gen: BaseImageGenerator, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``func`` with the generator's retry policy (see ``BaseImageGenerator.retrying``)."""
    return _retry(gen, RETRYABLE_ERRORS)(func)(*args, **kwargs)


class _Sent(Exception):
    """Carries an error of a call that reached the server past the retry loop."""

    def __init__(self, error: GeneratorError) -> None:
        super().__init__(str(error))
        self.error = error


def retrying_unsent(
    gen: BaseImageGenerator, func: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Call ``func`` with the generator's retry policy, but repeat it only while its errors
    say that it never reached the server (``work="not_sent"``): a call that changes
    something (an enqueue, an upload) must not be made twice."""

    def attempt() -> T:
        try:
            return func(*args, **kwargs)
        except GeneratorError as exc:
            if isinstance(exc, RETRYABLE_ERRORS) and exc.work == "not_sent":
                raise
            raise _Sent(exc) from exc

    try:
        return _retry(gen, RETRYABLE_ERRORS)(attempt)()
    except _Sent as sent:
        raise sent.error from sent.error.__cause__


def _retry(
    gen: BaseImageGenerator, retry_on: tuple[type[BaseException], ...]
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return retry_with_backoff(
        max_retries=gen.max_retries,
        base_delay=gen.retry_base_delay,
        max_delay=30.0,
        retry_on=retry_on,
        sleep=gen.clock.sleep,
    )


def info_for(gen: BaseImageGenerator, job: ImageJob, update: JobUpdate) -> ImageInfo:
    """The :class:`ImageInfo` of a finished job, from its request and the plugin's update."""
    from .base import ImageInfo

    request = job.request
    generated = update.generated_size
    return ImageInfo(
        image_id=job.id,
        generator=gen.name,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        width=request.width,
        height=request.height,
        seed=request.seed if update.seed_used else None,
        model=update.model,
        generated_width=generated[0] if generated else None,
        generated_height=generated[1] if generated else None,
        extra=dict(update.extra),
        server=gen.shown_server,
    )


def save(gen: BaseImageGenerator, job: ImageJob, final: Path, *, metadata: bool) -> None:
    """Write ``job``'s image to ``final`` once: streamed, verified, moved into place.

    A download that fails on the way (connection, timeout, truncated bytes) is fetched
    again; the image is never generated again.
    """
    fmt = output_format(final)
    text = job.info.as_metadata() if metadata and job.info is not None else None
    if not job.attachable:  # a generator of the original contract writes the file itself
        _save_legacy(gen, job, final, fmt, text)
        return

    def attempt() -> None:
        data = gen._fetch(job)
        try:
            write_image(final, _guarded(gen, data), text=text, fmt=fmt)
        finally:
            close = getattr(data, "close", None)
            if close is not None:
                close()

    _retry(gen, _FETCH_RETRYABLE)(attempt)()


def _guarded(gen: BaseImageGenerator, data: ImageData) -> ImageData:
    """``data``, with the errors of a plugin's streamed download named as a step's are."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    return _guarded_chunks(gen, iter(data))


def _guarded_chunks(gen: BaseImageGenerator, chunks: Iterator[bytes]) -> Iterator[bytes]:
    while True:
        chunk = call_step(gen, next, chunks, None)
        if chunk is None:
            return
        yield chunk


def wait_or_cancel(job: ImageJob, timeout: float | None, *, on_interrupt: bool) -> None:
    """Wait for ``job``; past ``timeout`` cancel it on its server and raise the timeout.

    A job that finishes just as it is canceled is kept (the cancel finds nothing to do, and
    a last look finds it done). A cancel that fails is logged: the timeout is what the
    caller needs to hear about. ``on_interrupt``: cancel it on Ctrl-C too (when the caller
    has no handle to cancel it with).
    """
    try:
        job.wait(timeout=timeout)
    except GeneratorTimeoutError:
        if not cancel_quietly(job):
            job.refresh()
            if job.status == "done":
                return
        raise
    except KeyboardInterrupt:
        if on_interrupt and not job.done:
            cancel_quietly(job)
        raise
    except Exception:
        if not job.done:
            cancel_quietly(job)
        raise


def cancel_quietly(job: ImageJob) -> bool:
    """``job.cancel()``, logging instead of raising when the server cannot be told."""
    try:
        return job.cancel()
    except GeneratorError as exc:
        log.warning("could not cancel job %s on %r: %s", job.id, job.generator.name, exc)
        return False


def _save_legacy(
    gen: BaseImageGenerator,
    job: ImageJob,
    final: Path,
    fmt: str,
    text: Mapping[str, str] | None,
) -> None:
    with atomic_path(final) as tmp:
        if not call_step(gen, type(gen).download_image, gen, job.id, tmp):
            raise GeneratorError(
                f"generator {gen.name!r} could not download image {job.id}", generator=gen.name
            )
        found, _ = verify_image(tmp)
        if found == "PNG" and fmt == "PNG" and text:
            tmp.write_bytes(add_png_text(tmp.read_bytes(), text))
        elif found != fmt:
            write_image(tmp, tmp.read_bytes(), text=text, fmt=fmt)


def submit_legacy(
    gen: BaseImageGenerator,
    prompt: str,
    negative_prompt: str,
    width: int,
    height: int,
    seed: int,
    on_progress: ProgressCallback | None,
    options: dict[str, Any],
) -> ImageJob:
    """Run a generator of the original contract and wrap its image in a finished job."""
    if on_progress is not None:
        options = {**options, "on_progress": guard_progress(on_progress)}
    image_id = call_step(
        gen, type(gen).generate_image, gen, prompt, negative_prompt, width, height, seed, **options
    )
    if not image_id:
        raise GeneratorError(f"generator {gen.name!r} returned no image", generator=gen.name)
    info = gen.image_info(image_id)
    request = ImageRequest(
        prompt=prompt,
        negative_prompt=negative_prompt,
        width=info.width if info else width,
        height=info.height if info else height,
        seed=info.seed if info and info.seed is not None else seed,
        options={k: v for k, v in options.items() if k != "on_progress"},
    )
    job = ImageJob(
        gen,
        request,
        JobRef(str(image_id)),
        status="done",
        on_progress=on_progress,
        cancelable=False,
        attachable=False,
    )
    job._info = info or info_for(gen, job, JobUpdate("done"))
    job.on_progress(Progress("submitted", f"image {image_id}", generator=gen.name))
    gen._remember(job)
    return job


def find_sent(gen: BaseImageGenerator, request: ImageRequest) -> JobRef:
    """The server's job for a request saved before it was sent (``on_sending``); raises
    :class:`GeneratorError` (``work="not_sent"``) when the server does not have it."""
    if not request.key or not finds_jobs(gen):
        raise InvalidRequestError(
            f"saved job was never sent, and generator {gen.name!r} cannot look jobs up by key",
            generator=gen.name,
        )
    ref: JobRef | None = call_step(gen, gen.retrying, gen.find_job, request)
    if ref is None:
        raise GeneratorError(
            f"job {request.key} is not on {gen.shown_server or gen.name}: it was never sent, or "
            "the server lost it",
            generator=gen.name,
            work="not_sent",
        )
    return ref


def attach(
    gen: BaseImageGenerator, data: Mapping[str, Any], on_progress: ProgressCallback | None
) -> ImageJob:
    """Re-attach ``gen`` to the job that ``data`` (from ``ImageJob.to_dict``) describes."""
    check_job_data(data)
    cls = type(gen)
    own_class = f"{cls.__module__}:{cls.__qualname__}"
    if data["class"] != own_class:
        raise InvalidRequestError(
            f"saved job {data['id']} was made by {data['class']}, not {own_class} "
            f"(generator {gen.name!r})",
            generator=gen.name,
        )
    if not gen.addresses(data.get("server")):
        raise InvalidRequestError(
            f"saved job {data['id']} runs on {data.get('server')}, but generator "
            f"{gen.name!r} addresses {gen.shown_server}",
            generator=gen.name,
        )
    if gen._legacy:
        raise GeneratorError(
            f"generator {gen.name!r} cannot re-attach jobs: {cls.__name__} implements only "
            "generate_image and download_image",
            generator=gen.name,
        )
    request = ImageRequest.from_dict(data["request"])
    if data["id"] is None:  # saved before it was sent: does the server have it?
        ref = find_sent(gen, request)
    else:
        ref = JobRef(str(data["id"]), dict(data.get("ref") or {}))
    job = ImageJob(gen, request, ref, on_progress=on_progress)
    job.refresh()
    gen._remember(job)
    return job
