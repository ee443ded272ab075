"""Issue 9's acceptance against the fake ComfyUI with faults injected: a fault mix, a server
restart mid-batch, and a SIGKILL then a rerun. Every image whole and its own job's (the
colour of each image is its job's seed), none made twice."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("degrees37_imagegen_comfyui")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "comfyui"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from batch_acceptance import SEEDS, jobs, kill_then_rerun
from comfyui_fake import FakeComfyUI

from degrees37_imagegen.batch import BatchRunner
from degrees37_imagegen_comfyui import ComfyUIGenerator

#: EmptyImage into SaveImage; the seed is the colour, so each image says whose it is.
WORKFLOW: dict[str, Any] = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {
            "width": "{{width}}",
            "height": "{{height}}",
            "batch_size": 1,
            "color": "{{seed}}",
        },
    },
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "acc"}},
}


class CountingFake(FakeComfyUI):
    """Counts the images made per colour, and takes a little while per image."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.made: Counter[int] = Counter()
        self.seconds = 0.01

    def _execute(self, item: Any) -> Any:
        time.sleep(self.seconds)
        result = super()._execute(item)
        color = item.prompt["1"]["inputs"]["color"]
        with self.lock:
            self.made[int(color)] += 1
        return result


@pytest.fixture
def fake() -> Iterator[CountingFake]:
    server = CountingFake().start()
    try:
        yield server
    finally:
        server.stop()


def generator(fake: FakeComfyUI) -> ComfyUIGenerator:
    gen = ComfyUIGenerator(
        {
            "server_address": fake.url,
            "workflow_template": WORKFLOW,
            "timeout": 30,
            "request_timeout": 5,
            "connect_timeout": 2,
            "poll_interval": 0.05,
        },
        name="comfyui",
    )
    gen.retry_base_delay = 0.01
    return gen


def check_images(out: Path) -> None:
    for i, seed in enumerate(SEEDS, 1):
        (path,) = out.glob(f"{i:03}-*.png")
        with Image.open(path) as image:
            image.load()  # whole
            r, g, b = image.convert("RGB").getpixel((0, 0))
        assert (r << 16) | (g << 8) | b == seed, path  # its own job's image
    assert not list(out.glob(".*.part"))


def test_the_fault_mix_gives_40_of_40_none_twice(fake: CountingFake, tmp_path: Path) -> None:
    fake.fault_spacing = 3  # about one request in three of each kind until 4 have failed
    fake.spread_faults = True  # as independent faults: not all on one job's retries
    fake.faults = {
        k: 4 for k in ("post_500", "post_drop", "view_500", "view_drop", "view_truncated")
    }
    with generator(fake) as gen:
        runner = BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(jobs()))
    failed = [(r.job.name, r.error) for r in results if r.status != "done"]
    assert not failed, (failed, runner.retries)
    assert fake.faults == {k: 0 for k in fake.faults}  # every fault was hit
    assert fake.made == dict.fromkeys(SEEDS, 1)  # every image made once
    check_images(tmp_path)


@pytest.mark.parametrize(
    "seconds",
    [
        0.03,
        # Quicker images: the restart also wipes the history of the image just made and
        # not yet downloaded, which the socket's messages named (done, not lost).
        0.01,
    ],
)
def test_a_restart_mid_batch_gives_40_of_40(
    fake: CountingFake, tmp_path: Path, seconds: float
) -> None:
    fake.seconds = seconds

    def restart_once() -> None:
        # Mid-image, as a restart 3 s into a real batch is: once the 13th image is running,
        # not in the instant the 12th is being written into the history.
        while sum(fake.made.values()) < 12:
            time.sleep(0.005)
        while fake.running is None or sum(fake.made.values()) < 12:
            time.sleep(0.001)
        time.sleep(fake.seconds / 2)
        fake.restart()

    thread = threading.Thread(target=restart_once, daemon=True)
    thread.start()
    with generator(fake) as gen:
        runner = BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(jobs()))
    thread.join(5)
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    assert len(fake.made) == 40
    twice = [seed for seed, n in fake.made.items() if n > 1]
    assert len(twice) <= 1, fake.made  # at most the job that was running
    check_images(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_then_rerun_makes_nothing_twice(fake: CountingFake, tmp_path: Path) -> None:
    fake.seconds = 0.05
    (tmp_path / "workflow.json").write_text(json.dumps(WORKFLOW), encoding="utf-8")
    kill_then_rerun(
        tmp_path,
        "comfy",
        "generators:\n  comfy:\n    class: comfyui\n"
        f"    server_address: {fake.url}\n    workflow_template: workflow.json\n",
        SEEDS,
    )
    # Each job is journaled with its key before it is sent: a kill at any moment, even
    # between the server's accepting a job and the client's hearing of it, costs nothing.
    assert fake.made == dict.fromkeys(SEEDS, 1)
    check_images(tmp_path / "book")


def test_jobs_journaled_before_sending_are_found_not_made_again(
    fake: CountingFake, tmp_path: Path
) -> None:
    """A run killed after each server accepted its job but before the client heard of it
    leaves only the records written before sending: the rerun finds every job by its key."""
    with generator(fake) as gen:
        list(BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01).run(jobs()))
    manifest = tmp_path / "manifest.jsonl"
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    before_sending = [
        r for r in records if r["status"] == "submitted" and r["handle"]["id"] is None
    ]
    assert len(before_sending) == 40
    manifest.write_text("".join(json.dumps(r) + "\n" for r in before_sending))
    for image in tmp_path.glob("*.png"):
        image.unlink()
    posts = sum(r.method == "POST" and r.path == "/prompt" for r in fake.requests)
    with generator(fake) as gen:
        results = list(BatchRunner(gen, tmp_path, concurrency=2).run(jobs()))
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    assert sum(r.method == "POST" and r.path == "/prompt" for r in fake.requests) == posts
    assert fake.made == dict.fromkeys(SEEDS, 1)
    check_images(tmp_path)
