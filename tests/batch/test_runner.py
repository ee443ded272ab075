from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from degrees37_imagegen import GeneratorNotFoundError, GeneratorRegistry, read_png_text
from degrees37_imagegen.batch import (
    BatchEvent,
    BatchRunner,
    Job,
    parse_jobs,
    read_manifest,
    run_batch,
)

MakeFake = Callable[..., Any]


def small_jobs(n: int, **extra: Any) -> list[Job]:
    return parse_jobs(
        [{"prompt": f"scene {i}", **extra} for i in range(1, n + 1)],
        defaults={"width": 32, "height": 48},
    )


def no_partials(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_every_job_to_a_file_with_its_request_in_the_png(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    jobs = small_jobs(5)
    jobs.append(
        parse_jobs(
            [
                {
                    "prompt": "fixed",
                    "seed": 42,
                    "name": "fixed",
                    "width": 16,
                    "height": 24,
                    "negative_prompt": "fog",
                }
            ]
        )[0]
    )
    runner = BatchRunner(make_fake(), tmp_path / "out")
    results = list(runner.run(jobs))
    assert sorted(r.job.name for r in results) == sorted(j.name for j in jobs)
    assert {r.status for r in results} == {"done"}
    for result in results:
        with Image.open(result.path) as img:
            assert img.size == (result.job.width, result.job.height)
        text = read_png_text(result.path)
        assert text["server_meta"] == "made by fake://one"  # the server's own metadata is kept
        assert text["imagegen:prompt"] == result.job.prompt
        assert text["imagegen:seed"] == str(result.seed)
        assert text["imagegen:width"] == str(result.job.width)
        assert text["imagegen:generator"] == "fake"
        assert text["imagegen:model"] == "fake-model"
        assert result.seed is not None
        assert result.seed >= 0
        assert set(result.timings) >= {"generate", "download", "total", "queued"}
    fixed = next(r for r in results if r.job.name == "fixed")
    assert fixed.seed == 42
    assert read_png_text(fixed.path)["imagegen:negative_prompt"] == "fog"
    summary = runner.summary()
    assert (summary.total, summary.done, summary.failed, summary.not_run) == (6, 6, 0, 0)
    assert summary.ok
    no_partials(tmp_path / "out")


def test_manifest_records_request_seed_generator_id_timings(
    tmp_path: Path, make_fake: MakeFake
) -> None:
    out = tmp_path / "out"
    results = {r.job.name: r for r in run_batch(small_jobs(3), make_fake(), out)}
    lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    for line in lines:
        record = json.loads(line)
        result = results[record["name"]]
        assert record["status"] == "done"
        assert record["file"] == result.path.name
        assert record["request"] == result.job.request()
        assert record["seed"] == result.seed
        assert record["generator"] == "fake"
        assert record["image_id"] == result.image_id
        assert record["image_id"].startswith("img-")
        assert set(record["timings"]) == {"queued", "generate", "download", "total"}
        assert record["error"] is None


def test_extra_keys_reach_generate_image(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    list(run_batch(small_jobs(2, steps=30, sampler="euler"), make_fake(), tmp_path))
    assert fake_servers["fake://one"].kwargs == [{"steps": 30, "sampler": "euler"}] * 2


def test_a_failing_job_does_not_stop_the_others(tmp_path: Path, make_fake: MakeFake) -> None:
    jobs = parse_jobs(
        ["good 1", "please FAIL", "good 2", "a CRASH", "good 3"],
        defaults={"width": 16, "height": 16},
    )
    runner = BatchRunner(make_fake(), tmp_path)
    results = {r.job.index: r for r in runner.run(jobs)}
    assert [results[i].status for i in range(1, 6)] == ["done", "failed", "done", "failed", "done"]
    assert results[2].error == "fake://one: the server refused 'please FAIL'"
    assert results[2].error_type == "GeneratorError"
    # A plugin's own exception is one line naming the generator and the original error.
    assert results[4].error == (
        "generator 'fake' (tests.batch.conftest) failed: RuntimeError: a bug in the plugin"
    )
    assert results[4].error_type == "PluginError"
    assert not results[2].path.exists()
    summary = runner.summary()
    assert (summary.done, summary.failed) == (3, 2)
    assert [f.job.index for f in summary.failures] == [2, 4]
    assert not summary.ok
    manifest = read_manifest(tmp_path)
    assert manifest[results[2].job.name]["error"] == results[2].error


def test_resume_after_an_interrupted_run(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    jobs = small_jobs(10)
    runner = BatchRunner(make_fake(), tmp_path, concurrency=1)
    first = []
    for result in runner.run(jobs):
        first.append(result)
        if len(first) == 4:
            break  # like Ctrl-C: no new job starts
    assert runner.wait(timeout=10)
    summary = runner.summary()
    assert summary.done >= 4
    assert summary.not_run > 0
    made_first = len(fake_servers["fake://one"].made)
    no_partials(tmp_path)

    again = BatchRunner(make_fake(), tmp_path)
    results = list(again.run(jobs))
    statuses = {r.job.name: r.status for r in results}
    assert list(statuses.values()).count("skipped") == made_first
    assert list(statuses.values()).count("done") == 10 - made_first
    assert len(fake_servers["fake://one"].made) == 10  # nothing made twice
    skipped = [r for r in results if r.status == "skipped"]
    assert all(r.seed is not None and r.image_id for r in skipped)  # from the manifest
    assert all(r.path.exists() for r in results)
    no_partials(tmp_path)


def test_a_partial_file_at_the_final_path_is_made_again(
    tmp_path: Path, make_fake: MakeFake
) -> None:
    jobs = small_jobs(2)
    list(run_batch(jobs, make_fake(), tmp_path))
    target = tmp_path / jobs[0].filename
    target.write_bytes(target.read_bytes()[:40])  # e.g. copied by something that is not us
    results = {r.job.index: r.status for r in run_batch(jobs, make_fake(), tmp_path)}
    assert results == {1: "done", 2: "skipped"}


def test_a_download_cut_short_leaves_nothing_at_the_final_path(
    tmp_path: Path, make_fake: MakeFake
) -> None:
    jobs = parse_jobs(["HALF a picture", "whole"], defaults={"width": 16, "height": 16})
    results = {r.job.index: r for r in run_batch(jobs, make_fake(), tmp_path)}
    assert results[1].status == "failed"
    assert not results[1].path.exists()
    no_partials(tmp_path)


def test_force_makes_everything_again(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    jobs = small_jobs(3)
    list(run_batch(jobs, make_fake(), tmp_path))
    assert [r.status for r in run_batch(jobs, make_fake(), tmp_path)] == ["skipped"] * 3
    assert {r.status for r in run_batch(jobs, make_fake(), tmp_path, force=True)} == {"done"}
    assert len(fake_servers["fake://one"].made) == 6


def test_a_changed_job_is_made_again_without_force(tmp_path: Path, make_fake: MakeFake) -> None:
    list(
        run_batch(
            parse_jobs([{"prompt": "a", "name": "p", "width": 8, "height": 8}]),
            make_fake(),
            tmp_path,
        )
    )
    changed = parse_jobs([{"prompt": "b", "name": "p", "width": 8, "height": 8}])
    (result,) = run_batch(changed, make_fake(), tmp_path)
    assert result.status == "done"  # the manifest knows the old file came from prompt "a"
    assert read_png_text(result.path)["imagegen:prompt"] == "b"
    (again,) = run_batch(changed, make_fake(), tmp_path)
    assert again.status == "skipped"


def test_skipped_without_a_manifest_reads_the_seed_from_the_png(
    tmp_path: Path, make_fake: MakeFake
) -> None:
    jobs = parse_jobs([{"prompt": "a", "seed": 9, "width": 8, "height": 8}])
    list(run_batch(jobs, make_fake(), tmp_path))
    (tmp_path / "manifest.jsonl").unlink()
    (result,) = run_batch(jobs, make_fake(), tmp_path)
    assert (result.status, result.seed, result.generator) == ("skipped", 9, "fake")
    assert read_manifest(tmp_path)[jobs[0].name]["status"] == "skipped"


def test_the_server_queue_is_kept_fed_but_bounded(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    # With a server making one image at a time, 'concurrency' requests are in flight:
    # one running and the rest waiting on the server, never more.
    list(run_batch(small_jobs(12), make_fake(delay=0.01), tmp_path, concurrency=3))
    assert fake_servers["fake://one"].max_waiting == 3
    list(run_batch(small_jobs(12), make_fake(delay=0.01), tmp_path / "b", concurrency=1))
    assert fake_servers["fake://one"].max_waiting == 3  # unchanged: never more than 1 then


def test_progress_events(tmp_path: Path, make_fake: MakeFake) -> None:
    events: list[BatchEvent] = []
    lock = threading.Lock()

    def record(event: BatchEvent) -> None:
        with lock:
            events.append(event)

    runner = BatchRunner(make_fake(), tmp_path, on_progress=record)
    list(runner.run(small_jobs(4)))
    kinds = [e.kind for e in events]
    assert kinds.count("started") == kinds.count("finished") == 4
    assert {e.progress.stage for e in events if e.progress} >= {"queued", "running", "done"}
    last = events[-1]
    assert last.kind == "finished"
    assert last.result is not None
    assert (last.counts.done, last.counts.running, last.counts.finished) == (4, 0, 4)


def test_a_broken_progress_callback_fails_nothing(tmp_path: Path, make_fake: MakeFake) -> None:
    def broken(event: BatchEvent) -> None:
        raise ValueError("display bug")

    results = list(run_batch(small_jobs(2), make_fake(), tmp_path, on_progress=broken))
    assert {r.status for r in results} == {"done"}


def test_stop_starts_no_new_job(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    runner: BatchRunner

    def stop_after_first(event: BatchEvent) -> None:
        if event.kind == "finished":
            runner.stop()

    runner = BatchRunner(make_fake(), tmp_path, concurrency=1, on_progress=stop_after_first)
    results = list(runner.run(small_jobs(20)))
    assert runner.wait(timeout=10)
    assert len(results) == 1
    assert len(fake_servers["fake://one"].made) == 1
    summary = runner.summary()
    assert (summary.done, summary.not_run, summary.ok) == (1, 19, False)


def test_jobs_name_their_generator(
    tmp_path: Path, make_fake: MakeFake, fake_servers: dict[str, Any]
) -> None:
    jobs = parse_jobs(
        ["a", {"prompt": "b", "generator": "other"}, {"prompt": "c", "generator": "fake"}],
        defaults={"width": 8, "height": 8},
    )
    runner = BatchRunner(
        make_fake(), tmp_path, generators={"other": make_fake("fake://two", name="other")}
    )
    results = {r.job.prompt: r for r in runner.run(jobs)}
    assert {p: r.generator for p, r in results.items()} == {"a": "fake", "b": "other", "c": "fake"}
    assert fake_servers["fake://two"].made == ["b"]
    with pytest.raises(GeneratorNotFoundError):
        list(
            BatchRunner(make_fake(), tmp_path).run(
                parse_jobs([{"prompt": "x", "generator": "nope"}])
            )
        )


def test_check_reports_sizes_the_generator_refuses(tmp_path: Path, make_fake: MakeFake) -> None:
    jobs = parse_jobs(["ok", {"prompt": "huge", "width": 99999}], source="jobs.yaml")
    problems = BatchRunner(make_fake(), tmp_path).check(jobs)
    assert [str(p) for p in problems] == [
        "jobs.yaml: job 2: width 99999 is larger than 16384 pixels"
    ]


def test_with_the_mock_generator_at_book_size(tmp_path: Path) -> None:
    mock = GeneratorRegistry(config={}).get_generator("mock", {"delay": 0})
    jobs = parse_jobs([f"scene {i}" for i in range(1, 4)])
    results = list(run_batch(jobs, mock, tmp_path))
    assert {r.status for r in results} == {"done"}
    for r in results:
        with Image.open(r.path) as img:
            assert img.size == (1080, 1920)
        assert read_png_text(r.path)["imagegen:model"] == "mock"


def test_concurrency_must_be_positive(tmp_path: Path, make_fake: MakeFake) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        BatchRunner(make_fake(), tmp_path, concurrency=0)


def test_no_manifest(tmp_path: Path, make_fake: MakeFake) -> None:
    list(run_batch(small_jobs(1), make_fake(), tmp_path, manifest=False))
    assert not (tmp_path / "manifest.jsonl").exists()


def test_a_seedless_image_says_seed_not_used_in_the_manifest(tmp_path: Path) -> None:
    from degrees37_imagegen import BaseImageGenerator, ImageRequest, JobRef, JobUpdate

    class Seedless(BaseImageGenerator):
        def test_connection(self) -> bool:
            return True

        def start_job(self, request: ImageRequest) -> JobRef:
            return JobRef("s1")

        def poll_job(self, ref: JobRef) -> JobUpdate:
            return JobUpdate("done", seed_used=False)

        def fetch_image(self, ref: JobRef, result: object) -> bytes:
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.new("RGB", (8, 8), "red").save(buf, "PNG")
            return buf.getvalue()

    (result,) = run_batch(
        parse_jobs(["x"], defaults={"width": 8, "height": 8}), Seedless(), tmp_path
    )
    assert result.seed is None
    assert result.record()["seed"] == "not used"
    assert read_png_text(result.path)["imagegen:seed"] == "not used"
    (again,) = run_batch(
        parse_jobs(["x"], defaults={"width": 8, "height": 8}), Seedless(), tmp_path
    )
    assert again.status == "skipped"
    assert again.seed is None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_a_finished_run_leaves_no_descriptor_open(tmp_path: Path, make_fake: MakeFake) -> None:
    before = set(os.listdir("/proc/self/fd"))
    results = list(BatchRunner(make_fake(), tmp_path).run(small_jobs(3)))
    assert [r.status for r in results] == ["done"] * 3
    left = {os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before}
    assert not {path for path in left if "manifest" in path}, left  # closed, with both drivers
