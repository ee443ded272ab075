from __future__ import annotations

import io
import itertools
import threading

import pytest

from degrees37_imagegen import Progress
from degrees37_imagegen.cli import _progress
from degrees37_imagegen.cli._progress import ProgressLine, describe_progress, fit, terminal_width


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn_lines(text: str) -> list[str]:
    """What each redraw put on the line (the text between carriage returns, padding cut)."""
    return [part.rstrip() for part in text.split("\r") if part.strip()]


def test_line_shows_stage_node_steps_and_position() -> None:
    out = io.StringIO()
    line = ProgressLine("gpu", stream=out, tty=True, width=120)
    line(Progress("queued", position=3))
    line(Progress("running", node="KSampler"))
    line(Progress("step", step=5, total=20))
    text = out.getvalue()
    assert "gpu: queued (position 3)" in text
    assert "gpu: running KSampler" in text
    assert "gpu: running KSampler step 5/20 (25%)" in text


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        (Progress("step", step=4, total=10), "gpu: running step 4/10 (40%)"),
        (Progress("step", message="step 4/10"), "gpu: running step 4/10"),
        (Progress("running", message="running denoise"), "gpu: running denoise"),
        (Progress("queued", message="queued", position=2), "gpu: queued (position 2) queued"),
        (Progress("done", message="done"), "gpu: done"),
    ],
)
def test_no_word_is_doubled(progress: Progress, expected: str) -> None:
    text = describe_progress("gpu", progress)
    assert text == expected
    words = text.split()
    assert all(a != b for a, b in itertools.pairwise(words))


@pytest.mark.parametrize("columns", [40, 120])
def test_every_redraw_fits_the_terminal(columns: int) -> None:
    clock = FakeClock()
    out = io.StringIO()
    line = ProgressLine(
        "invokeai-gpu-server-number-two", stream=out, tty=True, width=columns, clock=clock
    )
    line(Progress("queued", position=12))
    for step in range(1, 31):
        clock.now += 0.7
        line(Progress("step", step=step, total=30, node="denoise_latents_with_controlnet"))
    text = out.getvalue()
    assert "\n" not in text  # one line, redrawn: never a new line
    for drawn in text.split("\r")[1:]:
        assert len(drawn) <= columns - 1, drawn
    last = drawn_lines(text)[-1]
    assert last.endswith("21.0s")  # the time stays visible when the status is cut
    if columns == 120:
        assert (
            last == "invokeai-gpu-server-number-two: running denoise_latents_with_controlnet "
            "step 30/30 (100%) 21.0s"
        )
    else:
        assert last.startswith("invokeai-gpu-server-num")
        assert "..." in last


def test_plain_lines_when_not_a_terminal() -> None:
    clock = FakeClock()
    out = io.StringIO()
    with ProgressLine("gpu", stream=out, width=120, clock=clock) as line:  # StringIO: no TTY
        line(Progress("submitted", "job 7"))
        line(Progress("queued", position=2))
        line(Progress("queued", position=1))
        line(Progress("running", node="KSampler"))
        for step in range(1, 11):
            clock.now += 1
            line(Progress("step", step=step, total=10, node="KSampler"))
        line(Progress("downloading"))
        line(Progress("done"))
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "gpu: submitted job 7 0.0s",
        "gpu: queued (position 2) 0.0s",
        "gpu: running KSampler 0.0s",
        "gpu: downloading 10.0s",
        "gpu: done 10.0s",
    ]


def test_plain_lines_fit_too() -> None:
    out = io.StringIO()
    line = ProgressLine("a-very-long-generator-name", stream=out, width=40)
    line(Progress("running", node="SomeVeryLongNodeNameThatGoesOnAndOn"))
    (only,) = out.getvalue().splitlines()
    assert len(only) <= 39


def test_show_canceling() -> None:
    out = io.StringIO()
    line = ProgressLine("gpu", stream=out, tty=True, width=80)
    line(Progress("running"))
    line.show("canceling job 42")
    assert drawn_lines(out.getvalue())[-1].startswith("gpu: canceling job 42")


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with ProgressLine("gpu", enabled=False, stream=out, tty=True) as line:
        line(Progress("running"))
        line.show("canceling")
    assert out.getvalue() == ""


def test_ticker_redraws_between_events_and_clears_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_progress, "TICK_SECONDS", 0.001)
    out = io.StringIO()
    drawn = threading.Event()
    with ProgressLine("gpu", stream=out, tty=True, width=80) as line:
        line(Progress("running"))
        original = line._draw

        def draw() -> None:
            original()
            drawn.set()

        line._draw = draw  # type: ignore[method-assign]
        assert drawn.wait(5)  # redrawn by the ticker, with no new event
    assert out.getvalue().endswith("\r")


def test_fit_leaves_room_for_the_cursor() -> None:
    assert fit("abcdef", 10) == "abcdef"
    assert fit("abcdefghijklmnop", 10) == "abcdef..."
    assert len(fit("x" * 200, 40)) == 39


def test_terminal_width_from_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    assert terminal_width(io.StringIO()) == 40
    monkeypatch.delenv("COLUMNS")
    assert terminal_width(io.StringIO()) > 0
