"""Issue 9's acceptance against the fake InvokeAI with faults injected, served on a
loopback port and running its queue as the real server does: a fault mix, a server restart
mid-batch, and a SIGKILL then a rerun. Every image whole and its own job's (the server's
own PNG text, ``invokeai_metadata``, holds the seed the job's graph carried), none made
twice."""

from __future__ import annotations

import asyncio
import io
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

pytest.importorskip("degrees37_imagegen_invokeai")
pytest.importorskip("respx")

from degrees37_imagegen import run_batch_async
from degrees37_imagegen.batch import BatchRunner
from degrees37_imagegen_invokeai import InvokeAIGenerator
from degrees37_imagegen_invokeai.testing import BLANK_TEMPLATE, REQUEST_FAULTS, ServedInvokeAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batch_acceptance import SEEDS, jobs, kill_then_rerun

#: One blank_image whose metadata is the seed: InvokeAI writes a node's metadata into the
#: image's PNG text, so each image says whose it is.
TEMPLATE: dict[str, Any] = {
    **BLANK_TEMPLATE,
    "id": "acceptance",
    "nodes": {
        "blank": {**BLANK_TEMPLATE["nodes"]["blank"], "metadata": {"seed": "{{seed}}"}},
    },
}
#: The issue's mix, four of each: enqueue 500s, enqueues dropped before and after queuing,
#: image downloads answering 500, dropped and cut short, items pruned as they finish.
MIX = REQUEST_FAULTS


def seed_of(png: bytes) -> int:
    """The seed in the server's own PNG text."""
    with Image.open(io.BytesIO(png)) as image:
        return int(json.loads(image.info["invokeai_metadata"])["seed"])


def made(fake: ServedInvokeAI) -> Counter[int]:
    """How many images the server made for each seed."""
    with fake.lock:
        images = list(fake.images.values())
    return Counter(seed_of(png) for png in images)


@pytest.fixture
def fake() -> Iterator[ServedInvokeAI]:
    server = ServedInvokeAI(seconds=0.01).start()
    try:
        yield server
    finally:
        server.stop()


def generator(fake: ServedInvokeAI) -> InvokeAIGenerator:
    gen = InvokeAIGenerator(
        {
            "base_url": fake.url,
            "graph_template": TEMPLATE,
            "timeout": 5,
            "poll_interval": 0.05,
        },
        name="invokeai",
    )
    gen.retry_base_delay = 0.01
    return gen


def check_images(out: Path) -> None:
    for i, seed in enumerate(SEEDS, 1):
        (path,) = out.glob(f"{i:03}-*.png")
        with Image.open(path) as image:
            image.load()  # whole
            text = image.info["invokeai_metadata"]
        assert json.loads(text)["seed"] == seed, path  # its own job's image
    assert not list(out.glob(".*.part"))


def test_the_fault_mix_gives_40_of_40_none_twice(fake: ServedInvokeAI, tmp_path: Path) -> None:
    # One request in five of each kind until 4 have failed: three kinds hit the enqueue,
    # and one in three of each would leave a job more faults in a row than its 3 retries.
    fake.fault_spacing = 5
    fake.faults = dict.fromkeys(MIX, 4)
    with generator(fake) as gen:
        runner = BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(jobs()))
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    assert fake.faults == dict.fromkeys(MIX, 0), fake.faults  # every fault was hit
    counts = made(fake)
    assert sorted(counts) == sorted(SEEDS)
    assert [seed for seed, n in counts.items() if n > 1] == [], counts
    check_images(tmp_path)


def test_socketio_drops_with_the_http_faults_give_40_of_40_none_twice(
    fake: ServedInvokeAI, tmp_path: Path
) -> None:
    # Not with prune_after_finish: an item pruned while the socket is down, before any poll
    # saw it finish, leaves nothing that names its image (no client can tell it from an
    # item that never ran), so it is made again.
    kinds = (*(k for k in MIX if k != "prune_after_finish"), "events_drop")
    fake.fault_spacing = 5
    fake.faults = dict.fromkeys(kinds, 4)
    with generator(fake) as gen:
        runner = BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(jobs()))
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    assert fake.faults == dict.fromkeys(kinds, 0), fake.faults
    counts = made(fake)
    assert sorted(counts) == sorted(SEEDS)
    assert [seed for seed, n in counts.items() if n > 1] == [], counts
    check_images(tmp_path)


@pytest.mark.parametrize("memory_db", [False, True], ids=["database", "memory_db"])
def test_a_restart_mid_batch_gives_40_of_40(
    fake: ServedInvokeAI, tmp_path: Path, memory_db: bool
) -> None:
    fake.seconds = 0.03

    def restart_once() -> None:
        # Mid-image, as a restart a few seconds into a real batch is: once the 13th image
        # is running.
        while len(fake.images) < 12 or fake.running is None:
            time.sleep(0.001)
        time.sleep(fake.seconds / 2)
        fake.restart(memory_db=memory_db)

    thread = threading.Thread(target=restart_once, daemon=True)
    thread.start()
    with generator(fake) as gen:
        runner = BatchRunner(gen, tmp_path, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(jobs()))
    thread.join(5)
    assert fake.restarts == 1
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    counts = made(fake)
    assert sorted(counts) == sorted(SEEDS)
    # The running item dies with the server, unfinished: at most it is made twice.
    assert len([seed for seed, n in counts.items() if n > 1]) <= 1, counts
    check_images(tmp_path)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_then_rerun_makes_nothing_twice(fake: ServedInvokeAI, tmp_path: Path) -> None:
    fake.seconds = 0.05
    (tmp_path / "graph.json").write_text(json.dumps(TEMPLATE), encoding="utf-8")
    kill_then_rerun(
        tmp_path,
        "invoke",
        "generators:\n  invoke:\n    class: invokeai\n"
        f"    base_url: {fake.url}\n    graph_template: graph.json\n",
        SEEDS,
    )
    counts = made(fake)
    assert sorted(counts) == sorted(SEEDS)
    # Each job is journaled with its key (in its destination) before it is enqueued: a kill
    # at any moment, even between InvokeAI's accepting a job and the client's hearing of
    # it, costs nothing.
    assert counts == dict.fromkeys(SEEDS, 1), counts
    check_images(tmp_path / "book")


def test_items_pruned_as_they_finish_are_downloaded_by_the_async_driver_too(
    fake: ServedInvokeAI, tmp_path: Path
) -> None:
    fake.fault_spacing = 3
    fake.faults = {"prune_after_finish": 8}

    async def run() -> list[Any]:
        async with generator(fake) as gen:
            runner = BatchRunner(gen, tmp_path, concurrency=2)
            return [r async for r in run_batch_async(jobs(), gen, tmp_path, runner=runner)]

    results = asyncio.run(run())
    assert [r.status for r in results].count("done") == 40, [r.error for r in results]
    assert fake.faults == {"prune_after_finish": 0}
    counts = made(fake)
    assert sorted(counts) == sorted(SEEDS)
    assert [seed for seed, n in counts.items() if n > 1] == [], counts
    check_images(tmp_path)
