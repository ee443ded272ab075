"""Showing progress on a terminal: one line for ``generate``, the logic of ``batch``'s display.

:class:`ProgressLine` redraws one line on a terminal, never wider than it, and writes plain
lines (one per change of stage) when the stream is not a terminal. :class:`BatchDisplay` is
the pure logic of a batch's display (counts, jobs in flight, ETA, summary line): it keeps no
stream and reads the time from a clock it is given, so it is tested without waiting.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

from ..progress import Progress

__all__ = [
    "BatchDisplay",
    "ProgressLine",
    "describe_progress",
    "fit",
    "format_duration",
    "format_summary",
    "terminal_width",
]

#: How often the line is redrawn between events, so the elapsed time keeps moving.
TICK_SECONDS = 0.5
#: The width assumed when the stream's cannot be found.
FALLBACK_COLUMNS = 80

#: What a stage is called on the line: a step report is part of running.
_STAGE_LABELS = {"step": "running"}


def terminal_width(stream: TextIO | None = None) -> int:
    """The width of the terminal ``stream`` writes to (``$COLUMNS`` wins, then the stream's
    own terminal, then the process's, then 80)."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    if stream is not None:
        try:
            return os.get_terminal_size(stream.fileno()).columns
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            pass
    return shutil.get_terminal_size((FALLBACK_COLUMNS, 24)).columns


def fit(text: str, width: int) -> str:
    """``text`` cut to fit in ``width`` columns with room for the cursor (``...`` marks a cut).

    A line exactly as wide as the terminal makes some terminals wrap, so the result is at
    most ``width - 1`` characters.
    """
    room = max(1, width - 1)
    if len(text) <= room:
        return text
    if room <= 3:
        return text[:room]
    return text[: room - 3].rstrip() + "..."


def _dedupe_words(text: str) -> str:
    """``"step step 4/10"`` is ``"step 4/10"``: a word never follows itself."""
    out: list[str] = []
    for word in text.split(" "):
        if out and word and word.casefold() == out[-1].casefold():
            continue
        out.append(word)
    return " ".join(out)


def describe_progress(name: str, progress: Progress, node: str | None = None) -> str:
    """One progress report as text, without the time: ``gpu: running KSampler step 5/20 (25%)``.

    ``node`` is the node being run (the last one reported, when this report names none).
    """
    label = _STAGE_LABELS.get(progress.stage, progress.stage)
    parts = [f"{name}: {label}"]
    if progress.position is not None:
        parts.append(f"(position {progress.position})")
    node = progress.node or node
    if node and label == "running":
        parts.append(node)
    if progress.step is not None and progress.total:
        parts.append(f"step {progress.step}/{progress.total} ({progress.fraction or 0.0:.0%})")
    elif progress.message and progress.stage != "done":
        parts.append(progress.message)
    return _dedupe_words(" ".join(parts))


class ProgressLine:
    """A progress callback that shows a generator's progress (``enabled=False``: nothing).

    On a terminal it redraws one line, cut to the terminal's width, e.g.
    ``invokeai: running denoise_latents step 12/30 (40%) 3.1s``; used as a context manager
    it redraws every :data:`TICK_SECONDS` while waiting and clears the line at the end. When
    ``stream`` is not a terminal (a pipe, a log file) it writes a plain line each time the
    stage changes instead, never a carriage return. ``width`` and ``tty`` override what is
    found out from ``stream`` (tests render at a given width).
    """

    def __init__(
        self,
        name: str,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        width: int | None = None,
        tty: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.name = name
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = _isatty(self.stream) if tty is None else tty
        self._clock = clock
        self._started = clock()
        self._status = ""
        self._key: tuple[str, str | None] | None = None
        self._last = ""
        self._node: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        if progress.node:
            self._node = progress.node
        status = describe_progress(self.name, progress, self._node)
        label = _STAGE_LABELS.get(progress.stage, progress.stage)
        self._set(status, (label, self._node if label == "running" else None))

    def show(self, text: str) -> None:
        """Show ``text`` as the stage, e.g. ``canceling job 42`` after Ctrl-C."""
        if self.enabled:
            self._set(f"{self.name}: {text}", (text, None))

    def _set(self, status: str, key: tuple[str, str | None]) -> None:
        with self._lock:
            self._status = status
            changed = key != self._key
            self._key = key
        if self.tty:
            self._draw()
        elif changed:
            self._write_plain()

    def _columns(self) -> int:
        return self.width if self.width is not None else terminal_width(self.stream)

    def _elapsed(self) -> str:
        return f"{self._clock() - self._started:.1f}s"

    def render(self) -> str:
        """The line as it would be drawn now (no carriage return, no padding)."""
        with self._lock:
            return self._render()

    def _render(self) -> str:
        if not self._status:
            return ""
        elapsed = self._elapsed()
        width = self._columns()
        room = width - len(elapsed) - 1
        if room >= 12:  # keep the time visible; cut the status
            return f"{fit(self._status, room)} {elapsed}"
        return fit(f"{self._status} {elapsed}", width)

    def _write_plain(self) -> None:
        with self._lock:
            line = self._render()
            if line:
                self.stream.write(line + "\n")
                self.stream.flush()

    def _draw(self) -> None:
        with self._lock:
            line = self._render()
            if not line:
                return
            # Every line fits, so padding to the previous one's length fits too.
            pad = max(0, len(self._last) - len(line))
            self.stream.write("\r" + line + " " * pad)
            self.stream.flush()
            self._last = line

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self._draw()

    def __enter__(self) -> ProgressLine:
        if self.enabled and self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress-line", daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        """Stop redrawing and clear the line (the context manager's exit does this)."""
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()
        with self._lock:
            if self.enabled and self._last:
                self.stream.write("\r" + " " * len(self._last) + "\r")
                self.stream.flush()
                self._last = ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- batch ------------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``0:07``, ``12:05``, ``1:02:03``: minutes and seconds, hours when there are some."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def format_summary(
    total: int,
    done: int,
    failed: int,
    skipped: int,
    elapsed: float,
    *,
    not_run: int = 0,
) -> str:
    """``25 images: 23 done, 2 failed (see below), 0 skipped in 41.2s``.

    ``(see below)`` follows a failure count that is not zero (the failures are listed after
    the summary); ``N not run`` is added after an interruption.
    """
    noun = "image" if total == 1 else "images"
    parts = [f"{done} done", f"{failed} failed" + (" (see below)" if failed else "")]
    parts.append(f"{skipped} skipped")
    if not_run:
        parts.append(f"{not_run} not run")
    return f"{total} {noun}: {', '.join(parts)} in {elapsed:.1f}s"


@dataclass
class _Flight:
    """A job in flight: since when, and what it is doing."""

    started: float
    state: str = "queued"


class BatchDisplay:
    """What a batch's progress display shows, computed from events (no output of its own).

    Call :meth:`start` when a job is handed to a generator, :meth:`update` with its progress
    reports, and :meth:`finish` when it is done, failed or skipped (from any thread). Then
    :meth:`status_line` gives the line to draw, :meth:`eta` the time left, and
    :meth:`summary` the last line.

    ``workers`` is how many jobs run at once (servers x jobs in flight per server): the ETA
    is the mean time of the jobs that ran, times the jobs still to run, over ``workers``,
    less what the jobs in flight have already done. Skipped jobs take no time and are not
    counted in the mean. ``clock`` gives the time in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        *,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.workers = max(1, workers)
        self.done = 0
        self.failed = 0
        self.skipped = 0
        self._clock = clock
        self._started = clock()
        self._durations: list[float] = []
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    # -- events ----------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Job ``name`` was handed to a generator (it is queued until it reports more)."""
        with self._lock:
            self._flights[name] = _Flight(self._clock())

    def update(self, name: str, progress: Progress) -> None:
        """Job ``name`` reported ``progress``; a job not yet started starts now."""
        with self._lock:
            flight = self._flights.setdefault(name, _Flight(self._clock()))
            flight.state = _job_state(progress)

    def finish(self, name: str, status: str, seconds: float | None = None) -> None:
        """Job ``name`` ended: ``status`` is ``done``, ``failed`` or ``skipped``.

        ``seconds`` is how long it took (default: since :meth:`start`); skipped jobs take
        none and do not count towards the ETA.
        """
        with self._lock:
            flight = self._flights.pop(name, None)
            if status == "skipped":
                self.skipped += 1
                return
            if status == "canceled":  # not run after all: neither done nor failed
                return
            if status == "failed":
                self.failed += 1
            else:
                self.done += 1
            if seconds is None and flight is not None:
                seconds = self._clock() - flight.started
            if seconds is not None:
                self._durations.append(max(0.0, seconds))

    # -- what to show ---------------------------------------------------------------------

    @property
    def finished(self) -> int:
        """Jobs done, failed or skipped."""
        return self.done + self.failed + self.skipped

    @property
    def running(self) -> int:
        """Jobs in flight now."""
        with self._lock:
            return len(self._flights)

    def elapsed(self) -> float:
        """Seconds since the display was made."""
        return self._clock() - self._started

    def mean_job_seconds(self) -> float | None:
        """The mean time of the jobs that ran (done or failed), or ``None`` before the first."""
        with self._lock:
            if not self._durations:
                return None
            return sum(self._durations) / len(self._durations)

    def eta(self) -> float | None:
        """Seconds left, or ``None`` while no job has finished (nothing to go by)."""
        mean = self.mean_job_seconds()
        with self._lock:
            flying = list(self._flights.values())
            waiting = max(0, self.total - self.finished - len(flying))
        if waiting + len(flying) == 0:
            return 0.0
        if mean is None:
            return None
        now = self._clock()
        credit = sum(min(now - f.started, mean) for f in flying)
        lanes = max(1, min(self.workers, waiting + len(flying)))
        return max(0.0, (mean * (waiting + len(flying)) - credit) / lanes)

    def in_flight(self, limit: int = 3) -> str:
        """``3 in flight: scene-04 step 12/30, scene-05 queued, +1 more`` (``""`` for none).

        The jobs that started first come first; at most ``limit`` are named.
        """
        with self._lock:
            items = sorted(self._flights.items(), key=lambda kv: kv[1].started)
        if not items:
            return ""
        shown = [f"{name} {flight.state}" for name, flight in items[: max(0, limit)]]
        more = len(items) - len(shown)
        if more:
            shown.append(f"+{more} more")
        return f"{len(items)} in flight: " + ", ".join(shown)

    def counts(self) -> str:
        """``[12/25] 10 done, 2 failed, 1 skipped`` (zero counts other than done left out)."""
        parts = [f"{self.done} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        width = len(str(self.total))
        return f"[{self.finished:>{width}}/{self.total}] " + ", ".join(parts)

    def status_line(self, width: int) -> str:
        """The whole line, cut to ``width`` columns: counts, ETA, then the jobs in flight.

        The jobs in flight are the first to go when the line is too long.
        """
        eta = self.eta()
        head = f"{self.counts()} | ETA {format_duration(eta) if eta is not None else '--'}"
        for limit in (3, 2, 1, 0):
            flights = self.in_flight(limit)
            line = f"{head} | {flights}" if flights else head
            if len(line) <= width - 1:
                return line
        return fit(head, width)

    def summary(self, *, not_run: int = 0, elapsed: float | None = None) -> str:
        """The last line: ``25 images: 23 done, 2 failed (see below), 0 skipped in 41.2s``."""
        return format_summary(
            self.total,
            self.done,
            self.failed,
            self.skipped,
            self.elapsed() if elapsed is None else elapsed,
            not_run=not_run,
        )


def _job_state(progress: Progress) -> str:
    """A job's state in a few words: ``queued``, ``step 12/30``, ``running``, ``saving``."""
    if progress.step is not None and progress.total:
        return f"step {progress.step}/{progress.total}"
    if progress.stage == "queued" and progress.position is not None:
        return f"queued #{progress.position}"
    if progress.stage in {"submitted", "queued"}:
        return "queued"
    if progress.stage == "downloading":
        return "saving"
    return _STAGE_LABELS.get(progress.stage, progress.stage)
