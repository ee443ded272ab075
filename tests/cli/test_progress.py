from __future__ import annotations

import io
import threading

import pytest

from degrees37_imagegen import Progress
from degrees37_imagegen.cli import _progress
from degrees37_imagegen.cli._progress import ProgressLine


def test_line_shows_stage_node_steps_and_position() -> None:
    out = io.StringIO()
    line = ProgressLine("gpu", stream=out)
    line(Progress("queued", position=3))
    line(Progress("running", node="KSampler"))
    line(Progress("step", step=5, total=20))
    text = out.getvalue()
    assert "gpu: queued (position 3)" in text
    assert "gpu: running KSampler" in text
    assert "gpu: step KSampler step 5/20 (25%)" in text


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with ProgressLine("gpu", enabled=False, stream=out) as line:
        line(Progress("running"))
    assert out.getvalue() == ""


def test_ticker_redraws_between_events_and_clears_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_progress, "TICK_SECONDS", 0.001)
    out = io.StringIO()
    drawn = threading.Event()
    with ProgressLine("gpu", stream=out) as line:
        line(Progress("running"))
        original = line._draw

        def draw() -> None:
            original()
            drawn.set()

        line._draw = draw  # type: ignore[method-assign]
        assert drawn.wait(5)  # redrawn by the ticker, with no new event
    assert out.getvalue().endswith("\r")
