"""The :class:`FakeGenerator`: a generator for your own tests, with a fake clock, scripted
failures and a record of every call it received."""

from __future__ import annotations

import hashlib
import io
import itertools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..base import BaseImageGenerator
from ..clock import Clock
from ..errors import (
    AuthenticationError,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    JobFailedError,
    ServerError,
)
from ..job import JobRef, JobUpdate
from ..progress import Progress
from ..request import ImageRequest
from ._clock import FakeClock

__all__ = ["FAILURES", "FAIL_POINTS", "FakeCall", "FakeGenerator"]

#: Where a scripted failure happens (the ``fail`` setting).
FAIL_POINTS = ("submit", "job", "fetch", "truncate")

#: Which error a scripted failure raises (the ``failure`` setting).
FAILURES = ("generation", "connection", "timeout", "limit", "server", "auth")

_STEPS = 4  # progress steps reported while a job "runs"


@dataclass(frozen=True)
class FakeCall:
    """One call a :class:`FakeGenerator` received: the step, the job's id, the request."""

    step: str
    job_id: str | None = None
    request: ImageRequest | None = None


@dataclass
class _FakeJob:
    request: ImageRequest
    started: float
    canceled: bool = False
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class FakeGenerator(BaseImageGenerator):
    """A generator that makes small, deterministic PNGs in memory, for tests of your code.

    It implements the job steps like any plugin, so everything the core does (validation,
    seeds, progress, saving, cancel, ``to_dict``/``attach``) runs for real. Settings:

    - ``delay``: seconds a job "runs" (on :attr:`clock`; by default a
      :class:`~degrees37_imagegen.testing.FakeClock`, so no test waits real time);
    - ``fail``: where a scripted failure happens: ``submit`` (refused, nothing queued),
      ``job`` (the job fails on the server), ``fetch`` (the download fails), ``truncate``
      (the download arrives cut short); ``None`` for none;
    - ``failure``: which error: ``generation``, ``connection``, ``timeout``, ``limit``,
      ``server`` or ``auth``;
    - ``fail_times``: how many times the failure happens before calls succeed (``None``:
      every time), to exercise retries;
    - ``retry_after``: carried by ``limit`` failures;
    - ``api_key``: a secret setting (hidden in ``repr``), to test that your code hides it.

    :attr:`calls` records every step called (:class:`FakeCall`); :attr:`requests` the
    requests submitted. The same request gives the same pixels, different seeds or prompts
    give different ones.
    """

    default_settings: ClassVar[Mapping[str, Any]] = {
        "delay": 0.0,
        "fail": None,
        "failure": "generation",
        "fail_times": None,
        "retry_after": None,
        "api_key": None,
    }
    secret_settings: ClassVar[frozenset[str]] = frozenset({"api_key"})

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        transport: Any = None,
    ) -> None:
        super().__init__(
            config, name=name or "fake", clock=clock or FakeClock(), transport=transport
        )
        self._lock = threading.Lock()
        self._fake_jobs: dict[str, _FakeJob] = {}
        self._failures_left = self.config["fail_times"]
        self._ids = itertools.count(1)
        #: Every step called, in order.
        self.calls: list[FakeCall] = []

    def validate_config(self) -> None:
        """Reject an unknown ``fail`` or ``failure`` and a negative ``delay``."""
        cfg = self.config
        delay = cfg["delay"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(
                f"must be a number of seconds, 0 or more (got {delay!r})", key="delay"
            )
        if cfg["fail"] is not None and cfg["fail"] not in FAIL_POINTS:
            raise ConfigError(f"must be one of {', '.join(FAIL_POINTS)} or null", key="fail")
        if cfg["failure"] not in FAILURES:
            raise ConfigError(f"must be one of {', '.join(FAILURES)}", key="failure")
        times = cfg["fail_times"]
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ConfigError(f"must be a whole number or null (got {times!r})", key="fail_times")

    # -- what a test reads ----------------------------------------------------------------

    @property
    def requests(self) -> list[ImageRequest]:
        """The requests submitted, in order (seed resolved, size validated)."""
        with self._lock:
            return [c.request for c in self.calls if c.step == "start_job" and c.request]

    def called(self, step: str) -> int:
        """How many times ``step`` (``start_job``, ``poll_job``, ``fetch_image``...) ran."""
        with self._lock:
            return sum(1 for c in self.calls if c.step == step)

    # -- the steps ------------------------------------------------------------------------

    def test_connection(self) -> bool:
        """``False`` when ``fail`` is ``submit`` with a ``connection`` failure, else ``True``."""
        self._record("test_connection")
        return not (self.config["fail"] == "submit" and self.config["failure"] == "connection")

    def start_job(self, request: ImageRequest) -> JobRef:
        """Queue the job, or raise the scripted ``submit`` failure (nothing was queued)."""
        self._record("start_job", request=request)
        self._maybe_fail("submit", work="not_sent")
        job_id = f"fake-{next(self._ids)}-{request.seed}"
        with self._lock:
            self._fake_jobs[job_id] = _FakeJob(request, self.clock.monotonic())
        return JobRef(
            job_id,
            {"width": request.width, "height": request.height, "colour": _colour(request)},
        )

    def poll_job(self, ref: JobRef) -> JobUpdate:
        """Queued at first, running for ``delay`` seconds, then done (or the ``job`` failure)."""
        self._record("poll_job", ref.id)
        with self._lock:
            job = self._fake_jobs.get(ref.id)
            if job is not None:
                job.polls += 1
        if job is None:  # re-attached from another generator: the fake made it long ago
            return JobUpdate("done", model="fake")
        if job.canceled:
            return JobUpdate("canceled")
        delay = float(self.config["delay"])
        elapsed = self.clock.monotonic() - job.started
        if job.polls == 1 and delay > 0:
            return JobUpdate("queued", progress=Progress("queued", ref.id, generator=self.name))
        if elapsed < delay:
            step = min(_STEPS - 1, int(elapsed / delay * _STEPS))
            return JobUpdate(
                "running", progress=Progress("step", step=step, total=_STEPS, generator=self.name)
            )
        try:
            self._maybe_fail("job", work="ran")
        except GeneratorError as exc:
            return JobUpdate("failed", error=exc)
        return JobUpdate("done", model="fake")

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        """The job's PNG (a solid colour from its request), or the scripted ``fetch``
        failure, or (``truncate``) the PNG cut short."""
        self._record("fetch_image", ref.id)
        self._maybe_fail("fetch", work="ran")
        png = _png(int(ref.data["width"]), int(ref.data["height"]), tuple(ref.data["colour"]))
        if self.config["fail"] == "truncate" and self._take_failure():
            return png[: len(png) // 2]
        return png

    def cancel_job(self, ref: JobRef) -> bool:
        """Cancel a job that has not finished; ``False`` for one that has, or is unknown."""
        self._record("cancel_job", ref.id)
        with self._lock:
            job = self._fake_jobs.get(ref.id)
            if job is None or job.canceled:
                return False
            if self.clock.monotonic() - job.started >= float(self.config["delay"]) and job.polls:
                return False
            job.canceled = True
            return True

    # -- plumbing -------------------------------------------------------------------------

    def _record(
        self, step: str, job_id: str | None = None, request: ImageRequest | None = None
    ) -> None:
        with self._lock:
            self.calls.append(FakeCall(step, job_id, request))

    def _take_failure(self) -> bool:
        with self._lock:
            if self._failures_left is None:
                return True
            if self._failures_left <= 0:
                return False
            self._failures_left -= 1
            return True

    def _maybe_fail(self, point: str, *, work: Any) -> None:
        if self.config["fail"] != point or not self._take_failure():
            return
        kind = self.config["failure"]
        message = f"generator {self.name!r}: scripted {kind} failure at {point}"
        error: GeneratorError
        if kind == "connection":
            error = GeneratorConnectionError(message, work=work)
        elif kind == "timeout":
            error = GeneratorTimeoutError(message, work=work)
        elif kind == "limit":
            error = GeneratorLimitError(message, self.config["retry_after"], work=work)
        elif kind == "server":
            error = ServerError(message, status=500, body="scripted", work=work)
        elif kind == "auth":
            error = AuthenticationError(message, status=401, work=work)
        elif point == "job":
            error = JobFailedError(message, error_type="FakeError", error_message="scripted")
        else:
            error = GeneratorError(message, work=work)
        raise error


def _colour(request: ImageRequest) -> list[int]:
    key = f"{request.prompt}\0{request.negative_prompt}\0{request.seed}".encode()
    digest = hashlib.sha256(key).digest()
    return [digest[0], digest[1], digest[2]]


def _png(width: int, height: int, colour: tuple[Any, ...]) -> bytes:
    from PIL import Image  # Pillow only when an image is really made

    buffer = io.BytesIO()
    rgb = (int(colour[0]), int(colour[1]), int(colour[2]))
    Image.new("RGB", (width, height), rgb).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
