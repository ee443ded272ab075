"""The :class:`BaseImageGenerator` abstract base class that every generator implements."""

from __future__ import annotations

import random
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import _pipeline
from ._async_api import AsyncAPI
from .arguments import check_arguments
from .clock import SYSTEM_CLOCK, Clock
from .errors import ConfigError, GeneratorError, InvalidRequestError
from .job import ImageData, ImageJob, JobRef, JobUpdate
from .progress import Progress, ProgressCallback
from .redaction import redact, redact_text, redact_url
from .request import ImageRequest

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")

__all__ = [
    "COMMON_SETTINGS",
    "MAX_SEED",
    "BaseImageGenerator",
    "ImageInfo",
    "UnknownSettingWarning",
]

#: Seeds are drawn from ``0 .. MAX_SEED`` (the range every server we drive accepts).
MAX_SEED = 2**32 - 1

#: Settings every generator accepts, on top of its own ``default_settings``:
#: ``outage_tolerance`` is how long a batch job waits for this server while it does not
#: answer (seconds, see :class:`~degrees37_imagegen.batch.BatchRunner`).
COMMON_SETTINGS = frozenset({"class", "plugin", "description", "outage_tolerance"})


class UnknownSettingWarning(UserWarning):
    """A configured setting is not known to the generator it was given to (likely a typo)."""


@dataclass
class ImageInfo:
    """What a generator recorded about one image it made: the request and what it really used.

    ``seed`` is the seed really used (``-1`` requests are resolved to a concrete seed), or
    ``None`` when the server's graph has no seed (a template without one);
    ``generated_width``/``generated_height`` differ from the requested size when the server
    generated at another resolution that was then resized; ``server`` is the server that
    made it, when the generator addresses one.
    """

    image_id: str
    generator: str
    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int | None
    model: str | None = None
    generated_width: int | None = None
    generated_height: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    server: str | None = None

    def as_metadata(self) -> dict[str, str]:
        """The request as flat text fields, ready for PNG text chunks or a manifest."""
        meta: dict[str, str] = {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "seed": "not used" if self.seed is None else str(self.seed),
            "width": str(self.width),
            "height": str(self.height),
            "generator": self.generator,
        }
        if self.model:
            meta["model"] = self.model
        if self.server:
            meta["server"] = self.server
        if self.generated_width and self.generated_height:
            meta["generated_size"] = f"{self.generated_width}x{self.generated_height}"
        for key, value in self.extra.items():
            meta.setdefault(key, str(value))
        return meta


class BaseImageGenerator(AsyncAPI, ABC):
    """Base class of every image generator.

    The core owns the pipeline: it validates the size, resolves the seed, follows the job,
    writes the file once and records what was used. A generator supplies only the steps
    that differ per backend:

    - :meth:`start_job`: send the request; return the server's reference (:class:`JobRef`)
      once the server has accepted it;
    - :meth:`poll_job` (one look at the server) and, for servers that push events,
      :meth:`wait_job`: where the job is (:class:`JobUpdate`);
    - :meth:`fetch_image`: the finished image's bytes, or a stream of them;
    - :meth:`cancel_job`: remove the job from the queue or interrupt it;
    - :meth:`test_connection`.

    Users hold jobs (:meth:`submit`, :meth:`attach`) or use the original API
    (:meth:`generate_image` then :meth:`download_image`), which is a thin layer over jobs.
    The async API mirrors it (``asubmit``, ``aattach``, ``agenerate_image``,
    ``adownload_image``, ``async with``; see :mod:`degrees37_imagegen.aio`): a plugin may
    implement async steps (``astart_job``...); otherwise its sync steps run in a worker thread.

    A generator written for the original contract, implementing ``generate_image`` and
    ``download_image`` itself, keeps working: the core adapts it into jobs that are done
    once submitted, and that say that they cannot be canceled or re-attached.

    Subclasses declare the settings they know in :attr:`default_settings` (the keys are the
    known settings, the values their defaults), list secret settings in
    :attr:`secret_settings`, and check values in :meth:`validate_config`. ``self.config``
    holds the effective settings. Tests inject a ``clock`` (:class:`Clock`) and, for HTTP
    generators, a ``transport`` (an ``httpx`` transport). A generator may be used from
    several threads at once.
    """

    #: Known settings and their defaults.
    default_settings: ClassVar[Mapping[str, Any]] = {}
    #: Settings whose values are secret, on top of names that look secret (``*token*``...).
    secret_settings: ClassVar[frozenset[str]] = frozenset()
    #: Settings holding file paths; relative ones are resolved against the folder of the
    #: configuration file they came from (by the registry).
    path_settings: ClassVar[frozenset[str]] = frozenset()
    #: The setting that addresses one server, so that a pool can make one generator per server.
    server_setting: ClassVar[str | None] = None
    #: The largest width or height :meth:`validate_dimensions` accepts.
    max_dimension: ClassVar[int] = 16384
    #: The largest number of pixels :meth:`validate_dimensions` accepts.
    max_pixels: ClassVar[int] = 16384 * 16384
    #: How many images (and jobs) :meth:`image_info` remembers (the oldest go first).
    max_image_records: ClassVar[int] = 4096
    #: The longest wait between two polls of a job (seconds); the first come sooner.
    poll_interval: ClassVar[float] = 1.0
    #: Retries of a safe-to-repeat call (a download, a status read) after the first try.
    max_retries: ClassVar[int] = 3
    #: The first retry's wait (seconds); it doubles per retry, with jitter.
    retry_base_delay: ClassVar[float] = 0.5
    #: The options ``submit`` knows besides the core's own (timeout, images, LoRAs): others
    #: are ignored with an :class:`UnknownOptionWarning` naming them. ``None``: not declared,
    #: nothing is checked. A generator whose options depend on its settings (template
    #: fields) sets it in ``__init__``.
    known_options: frozenset[str] | None = None

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        transport: Any = None,
    ):
        given = dict(config or {})
        self.name: str = name or str(given.get("plugin") or type(self).__name__)
        known = set(self.default_settings) | COMMON_SETTINGS
        for key in given:
            if key not in known:
                known_list = ", ".join(sorted(self.default_settings)) or "none"
                warnings.warn(
                    f"generator {self.name!r}: unknown setting {key!r} is ignored "
                    f"(known settings: {known_list})",
                    UnknownSettingWarning,
                    stacklevel=2,
                )
        self.config: dict[str, Any] = {**self.default_settings, **given}
        tolerance = given.get("outage_tolerance")
        if tolerance is not None and (
            isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0
        ):
            raise ConfigError(
                f"outage_tolerance must be a number of seconds, 0 or more, got {tolerance!r}",
                key="outage_tolerance",
                generator=self.name,
            )
        #: The clock this generator reads the time from and waits with.
        self.clock: Clock = clock or SYSTEM_CLOCK
        #: The HTTP transport tests inject (``httpx.MockTransport``...), or ``None``.
        self.transport: Any = transport
        self._images: OrderedDict[str, ImageInfo] = OrderedDict()
        self._jobs: OrderedDict[str, ImageJob] = OrderedDict()
        self._images_lock = threading.Lock()
        self._legacy = _pipeline.is_legacy(type(self))
        self.validate_config()

    # -- the steps a plugin implements ---------------------------------------------------

    def validate_config(self) -> None:  # optional hook, empty on purpose
        """Check ``self.config``; raise :class:`ConfigError` with ``key=`` the bad setting.

        Called at the end of ``__init__``, so that bad settings are reported when the
        generator is created rather than at the first image.
        """

    @abstractmethod
    def test_connection(self) -> bool:
        """Return whether the generator is ready to make images (server up and answering)."""

    def start_job(self, request: ImageRequest) -> JobRef:
        """Send ``request`` to the server; return its reference once the server accepted it.

        The size is validated and the seed resolved already. Raise a
        :class:`GeneratorError` when the server refuses the work, with ``work=`` saying
        whether it may exist there.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement start_job")

    def find_job(self, request: ImageRequest) -> JobRef | None:
        """The job the server holds for ``request.key`` (queued, running or finished), or
        ``None`` when the server has no such job (it never arrived, or the server lost it).

        Optional. A generator that implements it sends ``request.key`` with the work in
        :meth:`start_job`; the core then records a job durably *before* sending it
        (``submit(on_sending=...)``), and a batch killed at any moment finds its jobs again
        on the next run instead of making them twice. The core asks it too when a
        submission's answer was lost (``work="unknown"``) before submitting again.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement find_job")

    def poll_job(self, ref: JobRef) -> JobUpdate:
        """Look at the server once: where is the job ``ref``?"""
        raise NotImplementedError(f"{type(self).__name__} does not implement poll_job")

    def wait_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """Wait up to ``timeout`` seconds for news of job ``ref`` and return where it is.

        The default sleeps ``timeout`` on :attr:`clock` and polls (the core grows the
        timeout from poll to poll up to :attr:`poll_interval`). Servers that push events
        override this to return as soon as an event says something changed.
        """
        self.clock.sleep(timeout)
        return self.poll_job(ref)

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> ImageData:
        """The finished image of job ``ref``: its bytes, or an iterable of chunks.

        ``result`` is what the job's last :class:`JobUpdate` said. A generator (iterator)
        that streams a download is closed by the core when it is done with it. Must be safe
        to call again: the core fetches again when a download arrives truncated.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement fetch_image")

    def cancel_job(self, ref: JobRef) -> bool:
        """Remove job ``ref`` from the queue, or interrupt it if it runs; ``True`` if it acted.

        Only ever touch this job. The default cannot cancel and returns ``False``.
        """
        return False

    def job_for_id(self, image_id: str) -> ImageJob:
        """A handle for a job known only by the id that :meth:`generate_image` returned,
        when this generator no longer remembers it (another process...).

        The default raises :class:`GeneratorError`; generators whose server can look a job
        up by id alone override it.
        """
        raise GeneratorError(
            f"generator {self.name!r}: unknown image id {image_id!r}", generator=self.name
        )

    def check_ready(self) -> str | None:
        """Why no image can be made with these settings although the server answers (a
        missing model or checkpoint), or ``None``. ``imagegen check`` shows it; the default
        knows of nothing missing."""
        return None

    def job_timeout(self) -> float | None:
        """How long :meth:`generate_image` waits for a job before canceling it (seconds)."""
        return None

    def list_models(self, kind: str = "models") -> list[str]:
        """What the server has of ``kind``: ``models`` (checkpoints, main models), ``loras``,
        ``samplers`` or ``schedulers`` (plugins may know more kinds), as names.

        The default raises :class:`GeneratorError`: the generator cannot tell.
        """
        raise GeneratorError(
            f"generator {self.name!r} ({type(self).__name__}) cannot list {kind}: not supported",
            generator=self.name,
        )

    # -- jobs ------------------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        *,
        on_progress: ProgressCallback | None = None,
        on_sending: Callable[[dict[str, Any]], None] | None = None,
        **options: Any,
    ) -> ImageJob:
        """Start one image and return its :class:`ImageJob` once the server has accepted it.

        ``seed=-1`` asks for a random seed, which is resolved here and recorded.
        ``on_progress`` receives :class:`~degrees37_imagegen.Progress` reports (a callback
        that raises is logged once and ignored). ``on_sending``, for a generator that can
        find its jobs (:meth:`find_job`), receives the job's saved form *before* anything is
        sent (an :meth:`ImageJob.to_dict` without a server id, which :meth:`attach` follows
        once the server has it): a journal that records it loses no job to a kill.
        ``options`` are the generator's own keyword arguments (steps, model, template
        fields...). Raises on refusal.
        """
        check_arguments(self, prompt, negative_prompt, width, height, seed, on_progress, options)
        if self._legacy:
            return _pipeline.submit_legacy(
                self, prompt, negative_prompt, width, height, seed, on_progress, options
            )
        request = _pipeline.new_request(self, prompt, negative_prompt, width, height, seed, options)
        _pipeline.announce(self, request, on_sending)
        ref = _pipeline.start(self, request)
        job = ImageJob(self, request, ref, on_progress=on_progress)
        job.on_progress(Progress("submitted", f"job {ref.id}", generator=self.name))
        self._remember(job)
        return job

    def attach(
        self, data: Mapping[str, Any], *, on_progress: ProgressCallback | None = None
    ) -> ImageJob:
        """The job that :meth:`ImageJob.to_dict` saved, followed again from here.

        The generator must be made from the same configuration (same class and server) as
        the one that submitted the job; it need not be the same process.
        """
        return self._step(_pipeline.attach, self, data, on_progress)

    @property
    def server(self) -> str | None:
        """The server this generator addresses (its :attr:`server_setting`), if any."""
        if self.server_setting is None:
            return None
        value = self.config.get(self.server_setting)
        return None if value is None else str(value)

    @property
    def shown_server(self) -> str | None:
        """:attr:`server` with any password in it hidden: what goes into saved jobs, image
        metadata and messages."""
        server = self.server
        return None if server is None else redact_url(server)

    def addresses(self, server: object) -> bool:
        """Whether ``server`` (from a saved job: :attr:`shown_server`, or :attr:`server` in
        jobs saved before passwords were hidden) names this generator's server."""
        return server in (self.server, self.shown_server)

    # -- the original API, over jobs --------------------------------------------------------

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str:
        """Make one image and return its id, to pass to :meth:`download_image`.

        The same as ``submit(...).wait()``: ``seed=-1`` asks for a random seed (the seed
        really used is in :meth:`image_info`); ``on_progress=callback`` receives
        :class:`~degrees37_imagegen.Progress` reports. A job that is not done within
        ``timeout=`` seconds (default :meth:`job_timeout`) is canceled and
        :class:`GeneratorTimeoutError` raised. Failures raise a
        :class:`~degrees37_imagegen.GeneratorError` subclass; an argument of the wrong type
        is an :class:`InvalidRequestError` (``on_progress`` not callable: :class:`TypeError`)
        and an option the generator does not know an
        :class:`~degrees37_imagegen.UnknownOptionWarning`, before anything is sent.
        """
        timeout = kwargs.pop("timeout", None)
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise InvalidRequestError(
                f"timeout must be a number of seconds above 0, got {timeout!r}",
                generator=self.name,
            )
        job = self.submit(prompt, negative_prompt, width, height, seed, **kwargs)
        limit = self.job_timeout() if timeout is None else float(timeout)
        _pipeline.wait_or_cancel(job, limit, on_interrupt=True)
        return job.id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        """Write image ``image_id`` to ``output_path``, whole or not at all; return ``True``."""
        self.job(image_id).save(output_path)
        return True

    def job(self, image_id: str) -> ImageJob:
        """The job behind an id that :meth:`generate_image` returned."""
        with self._images_lock:
            job = self._jobs.get(image_id)
        return job if job is not None else self._step(self.job_for_id, image_id)

    # -- helpers for subclasses and callers ---------------------------------------------

    def validate_dimensions(self, width: int, height: int) -> tuple[int, int]:
        """Return the size this generator will really produce for a requested size.

        The default accepts any positive size up to :attr:`max_dimension` per side and
        :attr:`max_pixels` in all, and raises :class:`InvalidRequestError` otherwise.
        """
        for label, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidRequestError(
                    f"{label} must be a whole number of pixels, got {value!r}",
                    generator=self.name,
                )
            if value <= 0:
                raise InvalidRequestError(
                    f"{label} must be positive, got {value}", generator=self.name
                )
            if value > self.max_dimension:
                raise InvalidRequestError(
                    f"{label} {value} is larger than {self.max_dimension} pixels",
                    generator=self.name,
                )
        if width * height > self.max_pixels:
            raise InvalidRequestError(
                f"{width}x{height} has more than {self.max_pixels} pixels", generator=self.name
            )
        return width, height

    @staticmethod
    def resolve_seed(seed: int) -> int:
        """Turn ``-1`` (or any negative seed) into a random seed; keep others as they are."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequestError(f"seed must be a whole number, got {seed!r}")
        if seed < 0:
            return random.randint(0, MAX_SEED)
        if seed > MAX_SEED:
            raise InvalidRequestError(f"seed must be at most {MAX_SEED}, got {seed}")
        return seed

    def poll_delay(self, polls: int) -> float:
        """How long to wait before poll number ``polls`` of a job (0 for the first)."""
        if polls <= 0:
            return 0.0
        return float(min(self.poll_interval, 0.01 * 1.5 ** min(polls - 1, 60)))

    def retrying(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``func(*args, **kwargs)``, retrying connection, timeout and limit errors.

        The one backoff of the project (:func:`retry_with_backoff`): exponential with
        jitter from :attr:`retry_base_delay`, :attr:`max_retries` retries, waiting on
        :attr:`clock`, and at least a limit error's ``retry_after``. Only for calls that are
        safe to repeat: reads, downloads, a cancel.
        """
        return _pipeline.retrying(self, func, *args, **kwargs)

    def retrying_unsent(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Like :meth:`retrying`, for a call that changes something (an enqueue, an
        upload): repeated only while its error says it never reached the server
        (``work="not_sent"``), so that nothing is done twice."""
        return _pipeline.retrying_unsent(self, func, *args, **kwargs)

    def record_image(self, info: ImageInfo) -> None:
        """Remember what was asked and used for an image (see :meth:`image_info`).

        The newest :attr:`max_image_records` are kept, so long runs use bounded memory.
        """
        with self._images_lock:
            self._images[info.image_id] = info
            self._images.move_to_end(info.image_id)
            while len(self._images) > self.max_image_records:
                self._images.popitem(last=False)

    def image_info(self, image_id: str) -> ImageInfo | None:
        """What this generator recorded about ``image_id`` (seed used, size...), if anything."""
        with self._images_lock:
            return self._images.get(image_id)

    @staticmethod
    def report(on_progress: ProgressCallback | None, progress: Progress) -> None:
        """Send ``progress`` to ``on_progress`` if there is one."""
        if on_progress is not None:
            on_progress(progress)

    def info(self) -> dict[str, Any]:
        """A description safe to show: name, class and settings with secrets hidden."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "settings": self.safe_config(),
        }

    def safe_config(self) -> dict[str, Any]:
        """``self.config`` with every secret value hidden."""
        return dict(redact(self.config, self.secret_settings))

    def close(self) -> None:  # optional hook, empty on purpose
        """Release connections and other resources. The generator is not used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} config={self.safe_config()!r}>"

    # -- the core's own plumbing ----------------------------------------------------------

    def _step(self, func: Callable[..., T], *args: Any) -> T:
        """Call a plugin step; the one place where its errors get this generator's name and a
        foreign exception becomes a one-line :class:`PluginError`."""
        return _pipeline.call_step(self, func, *args)

    def _own(self, error: GeneratorError) -> GeneratorError:
        """Name this generator on ``error`` and hide any secret in its message (a URL's
        password, a bearer token): the one place every plugin error passes."""
        if error.generator is None:
            error.generator = self.name
        message = redact_text(error.message)
        if message != error.message:
            error.message = message
            error.args = (message, *error.args[1:])
        return error

    def _remember(self, job: ImageJob) -> None:
        with self._images_lock:
            self._jobs[job.id] = job
            self._jobs.move_to_end(job.id)
            while len(self._jobs) > self.max_image_records:
                self._jobs.popitem(last=False)

    def _info_for(self, job: ImageJob, update: JobUpdate) -> ImageInfo:
        info = _pipeline.info_for(self, job, update)
        self.record_image(info)
        return info

    def _save(self, job: ImageJob, final: Path, *, metadata: bool) -> None:
        _pipeline.save(self, job, final, metadata=metadata)

    def _fetch(self, job: ImageJob) -> ImageData:
        return self._step(self.fetch_image, job.ref, job.result)
