"""What a batch reports: each job's :class:`JobResult`, running counts, events, the summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..progress import Progress
from .jobs import Job

__all__ = [
    "BatchCallback",
    "BatchCounts",
    "BatchEvent",
    "BatchSummary",
    "JobResult",
    "JobStatus",
    "bump",
]

JobStatus = Literal["done", "skipped", "failed", "canceled"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class JobResult:
    """How one job ended.

    ``status`` is ``done`` (made now), ``skipped`` (its file was already there, whole),
    ``failed`` (``error`` says why) or ``canceled`` (by :meth:`BatchRunner.cancel`).
    ``seed`` is the seed really used; ``server`` the pool
    server that made it; ``image_id`` the server's own id for the image. ``timings`` holds
    seconds: ``queued`` (waiting in the server's queue, when the generator reports it),
    ``generate`` (request to image done), ``download`` (image done to file in place) and
    ``total``. ``note`` warns about a skipped file made from another request.
    """

    job: Job
    status: JobStatus
    path: Path
    seed: int | None = None
    generator: str | None = None
    server: str | None = None
    image_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    note: str | None = None
    finished_at: str = field(default_factory=_now)

    @property
    def ok(self) -> bool:
        """Whether the job's image is in place (made now or already there)."""
        return self.status in ("done", "skipped")

    def record(self) -> dict[str, Any]:
        """The job's manifest record (JSON-ready)."""
        return {
            "job": self.job.index,
            "name": self.job.name,
            "file": self.path.name,
            "status": self.status,
            "request": self.job.request(),
            # A template without a seed: say so, rather than leave a reader guessing.
            "seed": "not used" if self.seed is None and self.status == "done" else self.seed,
            "generator": self.generator,
            "server": self.server,
            "image_id": self.image_id,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "error": self.error,
            "error_type": self.error_type,
            "attempts": self.attempts,
            "note": self.note,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class BatchCounts:
    """How far a batch is: jobs in all, done, skipped, failed and running now."""

    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    running: int = 0

    @property
    def finished(self) -> int:
        """Jobs that are done, skipped or failed."""
        return self.done + self.skipped + self.failed


@dataclass(frozen=True)
class BatchEvent:
    """What a batch's ``on_progress`` callback receives.

    ``kind`` is ``started`` (a job was sent to its generator), ``progress`` (the generator
    reported ``progress`` for it) or ``finished`` (``result`` says how it ended).
    """

    kind: Literal["started", "progress", "finished"]
    job: Job
    counts: BatchCounts
    progress: Progress | None = None
    result: JobResult | None = None


#: A batch progress callback. It is called from worker threads: keep it quick.
BatchCallback = Callable[[BatchEvent], None]


@dataclass
class BatchSummary:
    """The end of a batch: counts, the failures, and jobs never started (after a stop)."""

    total: int
    done: int
    skipped: int
    failed: int
    not_run: int
    elapsed: float
    failures: list[JobResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No job failed and every job ran."""
        return not self.failed and not self.not_run

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "not_run": self.not_run,
            "elapsed": round(self.elapsed, 3),
            "failures": [
                {"job": r.job.index, "name": r.job.name, "error": r.error} for r in self.failures
            ],
        }


def bump(counts: BatchCounts, **delta: int) -> BatchCounts:
    """``counts`` with ``delta`` added to the named fields."""
    return BatchCounts(
        total=counts.total,
        done=counts.done + delta.get("done", 0),
        skipped=counts.skipped + delta.get("skipped", 0),
        failed=counts.failed + delta.get("failed", 0),
        running=counts.running + delta.get("running", 0),
    )
