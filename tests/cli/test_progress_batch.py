"""The batch display's logic: ETA, jobs in flight, the line at 40 and 120 columns, summary."""

from __future__ import annotations

import pytest

from degrees37_imagegen import Progress
from degrees37_imagegen.cli._progress import BatchDisplay, format_duration, format_summary


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_summary_line_reads_at_a_glance() -> None:
    assert (
        format_summary(25, 23, 2, 0, 41.23)
        == "25 images: 23 done, 2 failed (see below), 0 skipped in 41.2s"
    )
    assert format_summary(1, 1, 0, 0, 0.5) == "1 image: 1 done, 0 failed, 0 skipped in 0.5s"
    assert (
        format_summary(10, 4, 0, 2, 9.0, not_run=4)
        == "10 images: 4 done, 0 failed, 2 skipped, 4 not run in 9.0s"
    )


def test_eta_from_the_mean_job_time_and_the_jobs_left() -> None:
    clock = FakeClock()
    display = BatchDisplay(25, workers=1, clock=clock)
    assert display.eta() is None  # nothing to go by yet
    for n in range(2):
        display.start(f"scene-{n}")
        clock.now += 1.0
        display.finish(f"scene-{n}", "done")
    # 23 jobs left at 1 s each, one at a time: 23 s (the old display said 0:00:01).
    assert display.eta() == pytest.approx(23.0)
    display.start("scene-2")
    clock.now += 0.4
    assert display.eta() == pytest.approx(22.6)  # the job in flight is 0.4 s along


def test_eta_shares_the_work_between_workers_and_ignores_skipped_jobs() -> None:
    clock = FakeClock()
    display = BatchDisplay(12, workers=3, clock=clock)
    for n in range(3):
        display.finish(f"old-{n}", "skipped")
    display.finish("a", "done", seconds=6.0)
    display.finish("b", "failed", seconds=3.0)
    # mean 4.5 s, 7 jobs still to run, 3 at a time
    assert display.mean_job_seconds() == pytest.approx(4.5)
    assert display.eta() == pytest.approx(4.5 * 7 / 3)


def test_eta_with_fewer_jobs_left_than_workers() -> None:
    clock = FakeClock()
    display = BatchDisplay(3, workers=8, clock=clock)
    display.finish("a", "done", seconds=10.0)
    display.start("b")
    display.start("c")
    clock.now += 4.0
    assert display.eta() == pytest.approx(6.0)
    display.finish("b", "done", seconds=4.0)
    display.finish("c", "done", seconds=4.0)
    assert display.eta() == 0.0


def test_in_flight_jobs_and_their_states() -> None:
    clock = FakeClock()
    display = BatchDisplay(25, workers=3, clock=clock)
    display.start("scene-04")
    clock.now += 1
    display.start("scene-05")
    clock.now += 1
    display.update("scene-06", Progress("queued", position=2))
    display.update("scene-04", Progress("step", step=12, total=30))
    display.update("scene-05", Progress("submitted", "job 9"))
    assert display.running == 3
    assert (
        display.in_flight()
        == "3 in flight: scene-04 step 12/30, scene-05 queued, scene-06 queued #2"
    )
    assert display.in_flight(limit=1) == "3 in flight: scene-04 step 12/30, +2 more"
    display.update("scene-05", Progress("running", node="KSampler"))
    display.update("scene-06", Progress("downloading"))
    assert "scene-05 running, scene-06 saving" in display.in_flight()
    display.finish("scene-04", "done")
    assert display.in_flight().startswith("2 in flight: scene-05")


@pytest.mark.parametrize("columns", [40, 120])
def test_status_line_fits(columns: int) -> None:
    clock = FakeClock()
    display = BatchDisplay(25, workers=3, clock=clock)
    for n in range(10):
        display.finish(f"s{n}", "done", seconds=2.0)
    display.finish("bad", "failed", seconds=2.0)
    for name in ("scene-12", "scene-13", "scene-14"):
        display.start(name)
        display.update(name, Progress("step", step=3, total=30))
    line = display.status_line(columns)
    assert len(line) <= columns - 1
    assert line.startswith("[11/25] 10 done, 1 failed | ETA 0:")
    if columns == 120:
        assert line == (
            "[11/25] 10 done, 1 failed | ETA 0:09 | 3 in flight: scene-12 step 3/30, "
            "scene-13 step 3/30, scene-14 step 3/30"
        )
    else:
        assert "in flight" not in line  # the first thing to go when the line is narrow


def test_display_summary_counts_its_events() -> None:
    clock = FakeClock()
    display = BatchDisplay(25, clock=clock)
    for n in range(23):
        display.finish(f"s{n}", "done", seconds=1.0)
    display.finish("x", "failed", seconds=1.0)
    display.finish("y", "failed", seconds=1.0)
    clock.now = 41.2
    assert display.summary() == "25 images: 23 done, 2 failed (see below), 0 skipped in 41.2s"
    assert display.summary(not_run=3, elapsed=2.0).endswith("3 not run in 2.0s")


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(23.4) == "0:23"
    assert format_duration(725) == "12:05"
    assert format_duration(3723) == "1:02:03"
