"""The :class:`MockGenerator`: placeholder images made locally, with simulated delay and
failures so that callers can exercise their progress, retry and error paths."""

from __future__ import annotations

import io
import random
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from degrees37_imagegen import (
    BaseImageGenerator,
    Clock,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    GeneratorTimeoutError,
    ImageRequest,
    InvalidRequestError,
    JobRef,
    JobUpdate,
    Progress,
)

from .drawing import STYLES, PlaceholderRequest, render_placeholder

__all__ = ["FAILURES", "MockGenerator"]

#: The ``failure`` setting: which error a simulated failure raises.
FAILURES: dict[str, type[GeneratorError]] = {
    "generation": GeneratorError,
    "connection": GeneratorConnectionError,
    "timeout": GeneratorTimeoutError,
    "limit": GeneratorLimitError,
}

_CACHE_SIZE = 32  # rendered PNGs kept; older ones are re-rendered on download
_STEPS = 10  # progress steps reported over ``delay``


class MockGenerator(BaseImageGenerator):
    """Draws a legible placeholder of the requested size: no server, no model.

    Settings: ``delay`` (seconds per image), ``fail_rate`` (0 to 1, the chance an image
    fails), ``failure`` (which error a failure raises: ``generation``, ``connection``,
    ``timeout`` or ``limit``), ``retry_after`` (seconds, carried by ``limit`` failures),
    ``placeholder_style`` (``simple``, ``detailed`` or ``debug``) and ``label``.

    The same prompt, size, seed and style give the same pixels (``debug`` also prints the
    image id, which is unique per image).
    """

    default_settings: ClassVar[dict[str, Any]] = {
        "delay": 0.0,
        "fail_rate": 0.0,
        "failure": "generation",
        "retry_after": None,
        "placeholder_style": "simple",
        "label": "MOCK",
    }
    known_options = frozenset({"placeholder_style"})

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        clock: Clock | None = None,
        transport: Any = None,
    ):
        super().__init__(config, name=name or "mock", clock=clock, transport=transport)
        self._png: OrderedDict[str, bytes] = OrderedDict()
        self._running: OrderedDict[str, _Running] = OrderedDict()
        self._png_lock = threading.Lock()
        self._failures = random.Random()

    def validate_config(self) -> None:
        """Reject an unknown style or failure, a negative delay, a fail rate outside 0..1."""
        cfg = self.config
        delay = cfg["delay"]
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
            raise ConfigError(
                f"must be a number of seconds, 0 or more (got {delay!r})", key="delay"
            )
        rate = cfg["fail_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ConfigError(f"must be a number from 0 to 1 (got {rate!r})", key="fail_rate")
        if cfg["placeholder_style"] not in STYLES:
            raise ConfigError(
                f"unknown style {cfg['placeholder_style']!r}; use one of: {', '.join(STYLES)}",
                key="placeholder_style",
            )
        if cfg["failure"] not in FAILURES:
            raise ConfigError(
                f"unknown failure {cfg['failure']!r}; use one of: {', '.join(FAILURES)}",
                key="failure",
            )
        retry_after = cfg["retry_after"]
        if retry_after is not None and (
            isinstance(retry_after, bool) or not isinstance(retry_after, (int, float))
        ):
            raise ConfigError(
                f"must be a number of seconds (got {retry_after!r})", key="retry_after"
            )

    def test_connection(self) -> bool:
        """Always ready: there is no server."""
        return True

    def start_job(self, request: ImageRequest) -> JobRef:
        """Accept the request at once; the image is "made" over ``delay`` seconds.

        Accepts ``placeholder_style=`` to override the setting for one image. A simulated
        ``connection`` or ``limit`` failure refuses the request here (nothing was queued);
        a ``generation`` or ``timeout`` failure fails the job when its time is up.
        """
        style = request.options.get("placeholder_style", self.config["placeholder_style"])
        if style not in STYLES:
            raise InvalidRequestError(
                f"unknown placeholder style {style!r}; use one of: {', '.join(STYLES)}"
            )
        failure = self._failure() if self._failures.random() < self.config["fail_rate"] else None
        if isinstance(failure, (GeneratorConnectionError, GeneratorLimitError)):
            failure.work = "not_sent"
            raise failure
        job_id = f"mock-{uuid.uuid4().hex[:16]}"
        with self._png_lock:
            self._running[job_id] = _Running(self.clock.monotonic(), failure)
            while len(self._running) > self.max_image_records:
                self._running.popitem(last=False)
        return JobRef(job_id, {"placeholder_style": style})

    def poll_job(self, ref: JobRef) -> JobUpdate:
        """Running until ``delay`` has passed (with ten steps of progress), then done."""
        style = str(ref.data.get("placeholder_style", self.config["placeholder_style"]))
        with self._png_lock:
            running = self._running.get(ref.id)
        if running is not None and not running.finished:
            if running.canceled:
                return JobUpdate("canceled")
            delay = float(self.config["delay"])
            elapsed = self.clock.monotonic() - running.started
            if elapsed < delay:
                step = min(_STEPS - 1, int(elapsed / delay * _STEPS))
                return JobUpdate("running", progress=self._step_report(running, step))
            running.finished = True
            if running.failure is not None:
                return JobUpdate("failed", error=running.failure)
            progress = self._step_report(running, _STEPS) if delay else None
            return JobUpdate(
                "done", progress=progress, model="mock", extra={"placeholder_style": style}
            )
        # Finished, or a job re-attached from another process: the mock makes it from its
        # request whenever asked.
        return JobUpdate("done", model="mock", extra={"placeholder_style": style})

    def wait_job(self, ref: JobRef, timeout: float) -> JobUpdate:
        """Sleep until the next step (or ``timeout``), then poll."""
        with self._png_lock:
            running = self._running.get(ref.id)
        if running is not None and not running.finished:
            delay = float(self.config["delay"])
            elapsed = self.clock.monotonic() - running.started
            next_step = (int(elapsed / delay * _STEPS) + 1) * delay / _STEPS if delay else 0.0
            timeout = min(timeout, max(0.0, next_step - elapsed))
        self.clock.sleep(timeout)
        return self.poll_job(ref)

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        """The placeholder PNG of job ``ref`` (drawn again if it fell out of the cache)."""
        with self._png_lock:
            png = self._png.get(ref.id)
        if png is not None:
            return png
        job = self.job(ref.id)
        png = self._render(job.request, ref)
        with self._png_lock:
            self._png[ref.id] = png
            while len(self._png) > _CACHE_SIZE:
                self._png.popitem(last=False)
        return png

    def cancel_job(self, ref: JobRef) -> bool:
        """Stop a job that is still "running"; ``False`` once it is done."""
        with self._png_lock:
            running = self._running.get(ref.id)
            if running is None or running.finished or running.canceled:
                return False
            running.canceled = True
            return True

    def _render(self, request: ImageRequest, ref: JobRef) -> bytes:
        image = render_placeholder(
            PlaceholderRequest(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt,
                width=request.width,
                height=request.height,
                seed=request.seed,
                style=str(ref.data.get("placeholder_style", "simple")),
                generator=self.name,
                image_id=ref.id,
                label=str(self.config["label"]),
            )
        )
        buffer = io.BytesIO()
        image.save(buffer, "PNG", compress_level=1)
        return buffer.getvalue()

    def _step_report(self, running: _Running, step: int) -> Progress | None:
        """A step report when ``step`` is new for this job (each step is reported once)."""
        if step <= running.reported:
            return None
        running.reported = step
        return Progress("step", step=step, total=_STEPS, generator=self.name)

    def _failure(self) -> GeneratorError:
        kind = self.config["failure"]
        rate = self.config["fail_rate"]
        message = f"generator {self.name!r}: simulated {kind} failure (fail_rate={rate})"
        if kind == "limit":
            return GeneratorLimitError(message, self.config["retry_after"], generator=self.name)
        return FAILURES[kind](message, generator=self.name)


@dataclass
class _Running:
    """A mock job's life: when it started, how it will end, and whether it was canceled."""

    started: float
    failure: GeneratorError | None
    finished: bool = False
    canceled: bool = False
    reported: int = 0
