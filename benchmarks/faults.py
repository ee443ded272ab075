"""Fault and load scenarios against the fake ComfyUI: images, duplicates, retries, RSS, fds.

    python benchmarks/faults.py [--jobs 40] [--servers 1]

Scenarios: ``mix`` (submit 500s, dropped POSTs, download 500s, dropped and truncated
downloads, about one request in three of each kind until 10% of the jobs have met each),
``restart`` (queue and history wiped a third of the way in). With ``--servers 4`` the jobs
go to a pool of four fakes, all faults on.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "batch"))
sys.path.insert(0, str(ROOT / "tests" / "plugins" / "comfyui"))

from test_fault_acceptance import SEEDS, CountingFake, generator  # noqa: E402

from degrees37_imagegen.batch import BatchRunner, GeneratorPool, parse_jobs  # noqa: E402

KINDS = ("post_500", "post_drop", "view_500", "view_drop", "view_truncated")


def fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def scenario(name: str, jobs: int, servers: int) -> None:
    fakes = [CountingFake().start() for _ in range(servers)]
    for fake in fakes:
        fake.fault_spacing = 3
        fake.spread_faults = True
        fake.faults = dict.fromkeys(KINDS, max(1, jobs // servers // 10))
    seeds = [1000 + 7919 * i for i in range(1, jobs + 1)] if jobs != 40 else SEEDS
    batch = parse_jobs(
        [{"prompt": f"scene {i}", "seed": s} for i, s in enumerate(seeds, 1)],
        defaults={"width": 64, "height": 64},
    )
    gens = [generator(f) for f in fakes]
    gen = gens[0] if servers == 1 else GeneratorPool(gens, name="pool")
    if name == "restart":

        def restart() -> None:
            while sum(fakes[0].made.values()) < jobs // 3 // servers:
                time.sleep(0.005)
            fakes[0].restart()

        threading.Thread(target=restart, daemon=True).start()
    fd0, threads0 = fds(), threading.active_count()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        runner = BatchRunner(gen, out, concurrency=2, retry_base_delay=0.01)
        results = list(runner.run(batch))
        leftovers = len(list(Path(out).glob(".*.part")))
    elapsed = time.perf_counter() - t0
    gen.close()
    for fake in fakes:
        fake.stop()
    made = sum((f.made for f in fakes), start=type(fakes[0].made)())
    done = sum(r.status == "done" for r in results)
    dupes = sum(n - 1 for n in made.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{name:8} servers={servers} images={done}/{jobs} duplicates={dupes} "
        f"retries={dict(sorted(runner.retries.items()))} leftovers={leftovers} "
        f"peak_rss={rss:.0f}MB (+{rss - rss0:.0f}) fds={fd0}->{fds()} "
        f"threads={threads0}->{threading.active_count()} {elapsed:.1f}s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--servers", type=int, default=1)
    args = parser.parse_args()
    for name in ("mix", "restart"):
        scenario(name, args.jobs, args.servers)


if __name__ == "__main__":
    main()
