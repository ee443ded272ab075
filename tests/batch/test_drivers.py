"""Which driver runs a batch: one event loop for natively async generators (no thread per
job), a thread per job in flight otherwise; both give the same results."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen.batch import BatchEvent, BatchRunner, parse_jobs

pytest.importorskip("degrees37_imagegen_comfyui")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_fault_acceptance import CountingFake, check_images, generator, jobs


def test_the_fixture_sets_the_driver(tmp_path: Path, batch_driver: str, make_fake: Any) -> None:
    assert BatchRunner(make_fake(), tmp_path).driver == batch_driver


@pytest.mark.parametrize("driver", ["auto", "threads", "async"])
def test_auto_takes_the_loop_for_native_generators_only(
    tmp_path: Path, make_fake: Callable[..., Any], driver: str
) -> None:
    fake = CountingFake().start()
    try:
        with generator(fake) as native:
            todo = jobs()
            on_loop = BatchRunner(native, tmp_path, driver=driver).uses_event_loop(todo)
            legacy = BatchRunner(make_fake(), tmp_path, driver=driver).uses_event_loop(todo)
    finally:
        fake.stop()
    assert on_loop == (driver != "threads")
    assert legacy == (driver == "async")  # a plugin without async steps: threads in auto


def client_threads() -> int:
    """The batch's threads (the fake server's are its own): the runner's and asyncio's."""
    names = [t.name for t in threading.enumerate()]
    return sum(n.startswith(("imagegen-batch", "asyncio")) for n in names)


@pytest.mark.parametrize(("driver", "most"), [("auto", 1), ("threads", 8)])
def test_the_loop_makes_no_thread_per_job(tmp_path: Path, driver: str, most: int) -> None:
    fake = CountingFake().start()
    peak = 0

    def on_event(event: BatchEvent) -> None:
        nonlocal peak
        peak = max(peak, client_threads())

    try:
        with generator(fake) as gen:
            runner = BatchRunner(
                gen,
                tmp_path,
                concurrency=8,
                driver=driver,  # type: ignore[arg-type]
                on_progress=on_event,
            )
            results = list(runner.run(jobs()))
    finally:
        fake.stop()
    assert [r.status for r in results].count("done") == 40
    assert max(fake.made.values()) == 1
    check_images(tmp_path)
    # The loop's one thread, whatever the jobs in flight; the thread runner has one a job.
    assert peak == most


def test_both_drivers_write_the_same_manifest(tmp_path: Path) -> None:
    fake = CountingFake().start()
    records = {}
    try:
        with generator(fake) as gen:
            for driver in ("threads", "async"):
                runner = BatchRunner(gen, tmp_path / driver, driver=driver)  # type: ignore[arg-type]
                list(
                    runner.run(parse_jobs([{"prompt": "a", "seed": 5, "width": 64, "height": 64}]))
                )
                lines = (tmp_path / driver / "manifest.jsonl").read_text().splitlines()
                records[driver] = [sorted(json.loads(line)) for line in lines]
    finally:
        fake.stop()
    assert records["threads"] == records["async"]


@pytest.mark.parametrize("driver", ["threads", "async"])
def test_cancel_leaves_nothing_on_the_server(tmp_path: Path, driver: str) -> None:
    """Ctrl-C in imagegen batch: stop, cancel our jobs on the server, wait for the rest."""
    fake = CountingFake().start()
    fake.seconds = 0.05
    seen = []
    try:
        with generator(fake) as gen:
            runner = BatchRunner(gen, tmp_path, concurrency=2, driver=driver)  # type: ignore[arg-type]
            for result in runner.run(jobs()):
                seen.append(result)
                if len(seen) == 3:
                    runner.cancel()
                    break
            assert runner.wait(20)
            with fake.lock:
                pending, running = dict(fake.pending), fake.running
    finally:
        fake.stop()
    assert not pending
    assert running is None
    summary = runner.summary()
    assert summary.done + summary.not_run + summary.failed == 40
    assert summary.done <= 3 + 2  # what was made, and at most what was in flight
    assert max(fake.made.values()) == 1
    assert not list(tmp_path.glob(".*.part"))
    for result in seen:
        assert result.status == "done"
        assert result.path.is_file()
