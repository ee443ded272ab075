"""Fault and load scenarios against the fake ComfyUI and the fake InvokeAI: images,
duplicates, retries, RSS, descriptors and threads.

    python benchmarks/faults.py [--plugin comfyui|invokeai|both] [--jobs 40] [--servers 1]
                                [--scenarios mix,restart,load]

Scenarios: ``mix`` (every fault of the plugin's fake, one request in three of each kind
(``--spacing``) until 10% of the jobs have met each: ComfyUI's submit 500s, dropped POSTs,
download 500s, dropped and truncated downloads; InvokeAI's enqueue 500s, enqueues dropped before and
after queuing, image 500s, dropped and truncated downloads, items pruned as they finish),
``restart`` (the server restarted a third of the way in), ``load`` (``--jobs`` over
``--servers`` fakes in a pool, all faults on, InvokeAI's socket.io drops too unless
``--no-events-drop``; try ``--jobs 1000 --servers 4``). Each line: images made whole,
duplicates (images a server made more than once for one job), the runner's retries,
leftover ``.part`` files, peak RSS and its growth over the run, RSS before, after and at
each quarter of the jobs, descriptors and threads before and after, then the errors of the
jobs that failed (out of retries).
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "batch"))
sys.path.insert(0, str(ROOT / "tests" / "plugins" / "comfyui"))

from degrees37_imagegen.base import BaseImageGenerator  # noqa: E402
from degrees37_imagegen.batch import BatchRunner, GeneratorPool, parse_jobs  # noqa: E402

COMFYUI_KINDS = ("post_500", "post_drop", "view_500", "view_drop", "view_truncated")


@dataclass
class Backend:
    """How to run one plugin's fakes: start one, make its generator, count what it made."""

    name: str
    start: Callable[[], Any]
    generator: Callable[[Any], BaseImageGenerator]
    made: Callable[[Any], Counter[int]]
    finished: Callable[[Any], int]
    kinds: tuple[str, ...]
    #: Drop what the fake records for tests (every request, message...), so that the
    #: process's memory is the client's and the servers' state, not the fake's logs.
    forget: Callable[[Any], None]


def comfyui() -> Backend:
    from test_fault_acceptance import CountingFake, generator

    def made(fake: Any) -> Counter[int]:
        return Counter(fake.made)

    def forget(fake: Any) -> None:
        with fake.lock:
            del fake.requests[:], fake.sent[:], fake.events[:], fake.ws_headers[:]

    return Backend(
        "comfyui",
        lambda: CountingFake().start(),
        generator,
        made,
        lambda fake: sum(fake.made.values()),
        COMFYUI_KINDS,
        forget,
    )


def invokeai() -> Backend:
    from test_fault_acceptance_invokeai import generator

    from degrees37_imagegen_invokeai.testing import REQUEST_FAULTS, ServedInvokeAI

    def made(fake: Any) -> Counter[int]:
        with fake.lock:
            images = list(fake.images.values())
        seeds: Counter[int] = Counter()
        for png in images:
            with Image.open(io.BytesIO(png)) as image:
                seeds[int(json.loads(image.info["invokeai_metadata"])["seed"])] += 1
        return seeds

    def forget(fake: Any) -> None:
        with fake.lock:
            del fake.calls[:]
            fake.router.reset()
        with fake.sio.lock:
            del fake.sio.emitted[:]
            fake.sio.connections[:] = [c for c in fake.sio.connections if not c.closed]

    return Backend(
        "invokeai",
        lambda: ServedInvokeAI(seconds=0.01).start(),
        generator,
        made,
        lambda fake: len(fake.images),
        REQUEST_FAULTS,
        forget,
    )


def fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def rss_now() -> float:
    """Resident memory now, in MB (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def settle(threads: int, timeout: float = 5.0) -> None:
    """Give the stopped fakes' and clients' threads a moment to end."""
    end = time.monotonic() + timeout
    while threading.active_count() > threads and time.monotonic() < end:
        time.sleep(0.05)
    gc.collect()


def scenario(
    backend: Backend,
    name: str,
    jobs: int,
    servers: int,
    *,
    events_drop: bool = True,
    spacing: int = 3,
) -> None:
    gc.collect()
    fd0, threads0, rss0 = fds(), threading.active_count(), rss_now()
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fakes = [backend.start() for _ in range(servers)]
    for fake in fakes:
        fake.fault_spacing = spacing
        if backend.name == "comfyui":
            fake.spread_faults = True  # a kind hits each job once at most, as in the tests
        count = max(1, jobs // servers // 10)
        if name in ("mix", "load"):
            fake.faults = dict.fromkeys(backend.kinds, count)
        if name == "load" and backend.name == "invokeai" and events_drop:
            fake.faults["events_drop"] = count
    seeds = [1000 + 7919 * i for i in range(1, jobs + 1)]
    batch = parse_jobs(
        [{"prompt": f"scene {i}", "seed": s} for i, s in enumerate(seeds, 1)],
        defaults={"width": 64, "height": 64},
    )
    gens = [backend.generator(f) for f in fakes]
    gen = gens[0] if servers == 1 else GeneratorPool(gens, name="pool")
    if name == "restart":
        first = fakes[0]

        def restart() -> None:
            # Mid-image: once a third of the jobs are made and one is running.
            while backend.finished(first) < jobs // 3 // servers or first.running is None:
                time.sleep(0.001)
            time.sleep(first.seconds / 2)  # half-way through the image, as the tests do
            first.restart()

        threading.Thread(target=restart, daemon=True).start()
    t0 = time.perf_counter()
    quarters: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        runner = BatchRunner(gen, out, concurrency=2, retry_base_delay=0.01)
        results = []
        for result in runner.run(batch):
            results.append(result)
            if len(results) % 50 == 0:
                for fake in fakes:
                    backend.forget(fake)
            if len(results) % max(1, jobs // 4) == 0:
                quarters.append(rss_now())
        leftovers = len(list(Path(out).glob(".*.part")))
    elapsed = time.perf_counter() - t0
    gen.close()
    made: Counter[int] = Counter()
    for fake in fakes:
        made.update(backend.made(fake))
        fake.stop()
    fakes.clear()
    gens.clear()
    del gen
    settle(threads0)
    done = sum(r.status == "done" for r in results)
    dupes = sum(n - 1 for n in made.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{backend.name:8} {name:7} servers={servers} images={done}/{jobs} duplicates={dupes} "
        f"retries={dict(sorted(runner.retries.items()))} leftovers={leftovers} "
        f"peak_rss={peak:.0f}MB (+{peak - peak0:.0f}) rss={rss0:.0f}->{rss_now():.0f}MB "
        f"(by quarter: {'/'.join(f'{q:.0f}' for q in quarters)}) "
        f"fds={fd0}->{fds()} threads={threads0}->{threading.active_count()} "
        f"{elapsed:.1f}s ({jobs / elapsed:.0f} jobs/s)",
        flush=True,
    )
    for error in Counter(str(r.error)[:150] for r in results if r.status != "done"):
        print(f"    failed: {error}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--plugin", choices=("comfyui", "invokeai", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--scenarios", default="mix,restart")
    parser.add_argument(
        "--no-events-drop",
        action="store_true",
        help="load: leave InvokeAI's socket.io connections up",
    )
    parser.add_argument(
        "--spacing", type=int, default=3, help="one request in N of each kind fails"
    )
    args = parser.parse_args()
    plugins = ("comfyui", "invokeai") if args.plugin == "both" else (args.plugin,)
    for plugin in plugins:
        backend = comfyui() if plugin == "comfyui" else invokeai()
        for name in args.scenarios.split(","):
            scenario(
                backend,
                name.strip(),
                args.jobs,
                args.servers,
                events_drop=not args.no_events_drop,
                spacing=args.spacing,
            )


if __name__ == "__main__":
    main()
