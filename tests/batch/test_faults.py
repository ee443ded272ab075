"""Transient or final (faults.py), the job-level retries (recovery.py) and the journal."""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from PIL import Image

from degrees37_imagegen import (
    BaseImageGenerator,
    ConfigError,
    GeneratorConnectionError,
    GeneratorError,
    GeneratorLimitError,
    IncompleteImageError,
    InvalidRequestError,
    JobCanceledError,
    JobFailedError,
    ServerError,
)
from degrees37_imagegen.batch import BatchRunner, parse_jobs
from degrees37_imagegen.batch.journal import remove_leftovers
from degrees37_imagegen.faults import backoff_delay, classify
from degrees37_imagegen.job import JobRef, JobUpdate
from degrees37_imagegen.request import ImageRequest


class Clock:
    """A clock whose sleeps pass at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.sleep(seconds)
        return event.is_set()


class Server:
    """A scripted queue server: faults are popped per step, ``runs`` counts images made."""

    def __init__(self) -> None:
        self.faults: dict[str, list[BaseException | str]] = {}
        self.runs: Counter[str] = Counter()
        self.jobs: dict[str, ImageRequest] = {}
        self.down = 0  # connection attempts still refused
        self.lock = threading.Lock()

    def fault(self, step: str) -> BaseException | str | None:
        with self.lock:
            if self.down > 0:
                self.down -= 1
                return GeneratorConnectionError("cannot connect", work="not_sent")
            pending = self.faults.get(step)
            return pending.pop(0) if pending else None


class StepGen(BaseImageGenerator):
    default_settings: ClassVar[dict[str, Any]] = {"url": "step://one"}
    server_setting: ClassVar[str] = "url"
    server_obj: Server

    def test_connection(self) -> bool:
        return self.server_obj.fault("probe") is None

    def start_job(self, request: ImageRequest) -> JobRef:
        fault = self.server_obj.fault("submit")
        if isinstance(fault, BaseException):
            raise fault
        job_id = f"j{len(self.server_obj.jobs) + 1}"
        self.server_obj.jobs[job_id] = request
        return JobRef(job_id, {"prompt": request.prompt})

    def poll_job(self, ref: JobRef) -> JobUpdate:
        fault = self.server_obj.fault("poll")
        if isinstance(fault, BaseException):
            raise fault
        if fault == "lost" or ref.id not in self.server_obj.jobs:
            self.server_obj.jobs.pop(ref.id, None)
            return JobUpdate("canceled", error=JobCanceledError(f"job {ref.id} is gone"))
        if fault == "failed":
            return JobUpdate("failed", error=JobFailedError("the node raised"))
        self.server_obj.runs[str(ref.data["prompt"])] += 1
        return JobUpdate("done", result={"id": ref.id})

    def fetch_image(self, ref: JobRef, result: Mapping[str, Any]) -> bytes:
        fault = self.server_obj.fault("fetch")
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "PNG")
        data = buffer.getvalue()
        if fault == "truncated":
            return data[: len(data) // 2]
        if isinstance(fault, BaseException):
            raise fault
        return data


@pytest.fixture
def gen() -> StepGen:
    generator = StepGen(name="step", clock=Clock())
    generator.server_obj = Server()
    generator.retry_base_delay = 0.0
    return generator


def batch(n: int) -> list[Any]:
    return parse_jobs([f"scene {i}" for i in range(1, n + 1)], defaults={"width": 8, "height": 8})


def run(gen: StepGen, out: Path, n: int = 1, **options: Any) -> list[Any]:
    runner = BatchRunner(gen, out, concurrency=1, retry_base_delay=0.01, **options)
    return sorted(runner.run(batch(n)), key=lambda r: r.job.index)


# -- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (GeneratorConnectionError("refused", work="not_sent"), "outage"),
        (GeneratorLimitError("busy", retry_after=7), "retry"),
        (ServerError("boom", status=500, work="unknown"), "retry"),
        (ServerError("bad", status=422, work="not_sent"), "fail"),
        (IncompleteImageError("half", work="ran"), "retry"),
        (JobFailedError("Unknown model: x"), "fail"),
        (InvalidRequestError("width"), "fail"),
        (JobCanceledError("gone"), "retry"),
        (GeneratorError("something else"), "fail"),
        (RuntimeError("bug"), "fail"),
    ],
)
def test_classify(error: BaseException, kind: str) -> None:
    assert classify(error).kind == kind


def test_a_job_canceled_by_us_is_final_and_a_lost_one_is_not() -> None:
    assert classify(JobCanceledError("x"), canceled_by_us=True).kind == "fail"
    assert classify(JobCanceledError("x")).lost


def test_backoff_honours_retry_after() -> None:
    assert backoff_delay(1, base=0.5, retry_after=7) == 7
    assert backoff_delay(3, base=1, jitter=False) == 4
    assert backoff_delay(30, base=1, cap=30, jitter=False) == 30


# -- the runner's retries --------------------------------------------------------------------


def test_a_submit_500_is_retried_and_the_image_made_once(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.faults["submit"] = [ServerError("boom", status=500, work="not_sent")] * 2
    (result,) = run(gen, tmp_path)
    assert result.status == "done"
    assert gen.server_obj.runs == Counter({"scene 1": 1})


def test_a_truncated_download_is_fetched_again_never_generated_again(
    gen: StepGen, tmp_path: Path
) -> None:
    gen.max_retries = 0  # the core's own re-fetch gives up at once: the runner's retry acts
    gen.server_obj.faults["fetch"] = ["truncated", "truncated"]
    (result,) = run(gen, tmp_path)
    assert result.status == "done"
    assert len(gen.server_obj.jobs) == 1  # submitted once
    assert not list(tmp_path.glob(".*.part"))


def test_a_job_the_server_lost_is_submitted_again(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.faults["poll"] = ["lost"]
    (result,) = run(gen, tmp_path)
    assert result.status == "done"
    assert result.attempts == 2
    assert gen.server_obj.runs == Counter({"scene 1": 1})


def test_final_failures_fail_at_once(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.faults["poll"] = ["failed"]
    (result,) = run(gen, tmp_path)
    assert result.status == "failed"
    assert result.error == "the node raised"
    assert len(gen.server_obj.jobs) == 1


def test_the_retry_budget_is_per_job(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.faults["submit"] = [ServerError("boom", status=503)] * 10
    (result,) = run(gen, tmp_path, retries=2)
    assert result.status == "failed"
    assert result.error == "boom"
    assert len(gen.server_obj.faults["submit"]) == 7  # 1 try + 2 retries


def test_jobs_wait_for_a_server_that_comes_back(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.down = 6  # refused for a while, then up again
    results = run(gen, tmp_path, 2)
    assert [r.status for r in results] == ["done", "done"]
    assert gen.server_obj.runs == Counter({"scene 1": 1, "scene 2": 1})


def test_past_the_outage_tolerance_a_job_fails_with_one_line(gen: StepGen, tmp_path: Path) -> None:
    gen.server_obj.down = 10**6
    (result,) = run(gen, tmp_path, outage_tolerance=20)
    assert result.status == "failed"
    assert result.error is not None
    assert "step://one did not answer for 20s (outage tolerance 20s)" in result.error
    assert "\n" not in result.error
    assert result.error_type == "GeneratorConnectionError"


def test_the_outage_tolerance_is_a_generator_setting(tmp_path: Path) -> None:
    generator = StepGen({"outage_tolerance": 7}, name="step", clock=Clock())
    generator.server_obj = Server()
    generator.server_obj.down = 10**6
    (result,) = run(generator, tmp_path)
    assert result.error is not None
    assert "(outage tolerance 7s)" in result.error
    (given,) = run(generator, tmp_path / "given", outage_tolerance=3)  # the run's own wins
    assert given.error is not None
    assert "(outage tolerance 3s)" in given.error


@pytest.mark.parametrize("value", [-1, "soon", True])
def test_a_bad_outage_tolerance_setting_names_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="outage_tolerance must be a number") as info:
        StepGen({"outage_tolerance": value}, name="step")
    assert info.value.key == "outage_tolerance"


# -- the journal -----------------------------------------------------------------------------


def test_each_submission_is_journaled_before_it_ends(gen: StepGen, tmp_path: Path) -> None:
    run(gen, tmp_path, 2)
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["submitted", "done", "submitted", "done"]
    assert records[0]["handle"]["id"] == "j1"
    assert records[0]["handle"]["format"] == "degrees37-imagegen/job/1"


def test_a_rerun_adopts_the_journal_instead_of_submitting_again(
    gen: StepGen, tmp_path: Path
) -> None:
    run(gen, tmp_path, 3)
    # As if killed before the jobs ended: only their submitted records, no images.
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["status"] == "submitted"]
    (tmp_path / "manifest.jsonl").write_text("\n".join(kept) + "\n")
    for png in tmp_path.glob("*.png"):
        png.unlink()
    leftover = tmp_path / ".001-scene-1.png.0123abcd.part"
    leftover.write_bytes(b"half")
    gen.server_obj.runs.clear()
    gen.server_obj.jobs.pop("j3")  # the server lost this one: it is submitted again
    results = run(gen, tmp_path, 3)
    assert [r.status for r in results] == ["done"] * 3
    assert len(gen.server_obj.jobs) == 3  # j1, j2 adopted; j3 lost and submitted as j3 anew
    assert [r.attempts for r in results] == [1, 1, 1]
    assert not leftover.exists()


def test_leftovers_of_other_files_are_kept(tmp_path: Path) -> None:
    mine = tmp_path / ".a.png.0123abcd.part"
    theirs = tmp_path / ".b.png.0123abcd.part"
    mine.write_bytes(b"")
    theirs.write_bytes(b"")
    assert remove_leftovers(tmp_path, ["a.png"]) == [mine]
    assert theirs.exists()
