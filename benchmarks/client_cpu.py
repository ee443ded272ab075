"""The client's CPU time per image: ``imagegen batch`` of N jobs against fake servers.

The fake servers run in a process of their own, so the figure is the client's alone:
user + system CPU of the ``imagegen batch`` process (``RUSAGE_CHILDREN``) for N jobs,
minus that of the same command with ``--dry-run`` (start-up, config, reading the jobs),
divided by N. Each fake makes an image in ``--seconds`` (default 0.02 s).

Two costs that are the machine's, not the client's, are kept out, as for an installed copy:
the checkout's modules are compiled to bytecode first (``pip install`` does that; under
``PYTHONDONTWRITEBYTECODE`` every run would compile them again), and every run's images
are kept, in a folder named on stderr at the end (deleting thousands of files makes the
next thousand file creations cost the kernel up to 1 ms each for minutes, on ext4: the
clean-up of one run, or of the last script, would be billed to the next run's client).

    python benchmarks/client_cpu.py [--jobs 200] [--servers 1] [--backends comfyui,invokeai,mock]
    python benchmarks/client_cpu.py --jobs 1000 --servers 4 --driver both   # issue 11's figures
    python benchmarks/client_cpu.py --jobs 1000 --servers 4 --driver both --repeat 3
    python benchmarks/client_cpu.py --gather 20 --seconds 0.2               # 20 agenerate_image
    python benchmarks/client_cpu.py --src /path/to/another/checkout   # the same, for its code

``--src`` runs the client from another checkout's ``src`` folders (``git worktree add``
an older commit there), so that before and after are measured by the same script and
fakes. Prints one line per backend and driver, next to the figures before the async work.

``--driver`` picks how ``imagegen batch`` runs the jobs: ``threads`` (a thread per job in
flight), ``async`` (one event loop), ``both``, or ``default`` (no ``--driver``: what an
older checkout does, or ``auto``). ``--driver api`` measures :func:`run_batch_async` from
a script instead, minus that script's own dry run. Each line prints issue 11's goal
(<= 4 ms an image, a dry run of 1,000 jobs under 0.5 s of CPU) next to the figures when
the issue was filed; ``--repeat N`` measures N times and prints the least and the median
(the machine's other load only ever adds CPU time). ``--gather N`` runs N concurrent
``agenerate_image`` calls through ``asyncio.gather`` against one fake server, and prints
how busy the server was (its own start and end times of each image) and the client's
thread count before and at its peak (the fake runs in another process).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _serve(backend: str, count: int, seconds: float) -> None:
    """Run ``count`` fake servers here and print their addresses; when stdin closes, print
    when each image ran and the seed it was made with (two JSON lines), and stop."""
    sys.path.insert(0, str(HERE / "fakes"))
    urls: list[str] = []
    if backend == "invokeai":
        from invokeai_server import FakeInvokeAI

        fakes = [FakeInvokeAI(seconds).__enter__() for _ in range(count)]
        urls = [f.url for f in fakes]
    elif backend == "comfyui":
        from comfyui_server import timed_fake_class

        cls = timed_fake_class(seconds)
        cls.instances = [cls().start() for _ in range(count)]
        urls = [f.url for f in cls.instances]
    print(json.dumps(urls), flush=True)
    sys.stdin.read()
    times: dict[str, list[float]] = {}
    seeds: dict[str, object] = {}
    if backend == "invokeai":
        times = {k: [t.started, t.finished] for f in fakes for k, t in f.times.items()}
        seeds = {k: v for f in fakes for k, v in f.seeds.items()}
    elif backend == "comfyui":
        times = {k: list(v) for f in cls.instances for k, v in f.times.items()}
        seeds = {k: v for f in cls.instances for k, v in f.seeds.items()}
    print(json.dumps(times), flush=True)
    print(json.dumps(seeds), flush=True)


def _config(backend: str, urls: list[str], work: Path) -> str:
    if backend == "mock":
        return "generators:\n  bench:\n    class: mock\n    delay: 0\n"
    if backend == "invokeai":
        key, extra = "base_url", {"default_model": "sdxl-base-1.0", "map_sdxl_resolution": False}
    else:
        sys.path.insert(0, str(HERE / "fakes"))
        from comfyui_server import WORKFLOW

        template = work / "workflow.json"
        template.write_text(json.dumps(WORKFLOW), encoding="utf-8")
        key, extra = "server_address", {"workflow_template": str(template)}
    entry: dict[str, object] = {"class": backend, **extra}
    if len(urls) == 1:
        entry[key] = urls[0]
    else:
        entry["servers"] = urls
    return json.dumps({"generators": {"bench": entry}})  # JSON is YAML


#: Every run's folder (its 1,000 images) is kept, in one folder, after the script ends; it is
#: named on stderr. Deleting thousands of files makes the next thousand creations cost
#: ~0.3-1 ms of kernel CPU each for up to five minutes (ext4 skips recently deleted inodes
#: one by one when it allocates a new one), which one run's clean-up would bill to the next
#: run's client, in this script or the next one started.
_KEEP: Path | None = None


def _kept() -> Path:
    global _KEEP
    if _KEEP is None:
        _KEEP = Path(tempfile.mkdtemp(prefix="client_cpu-"))
        atexit.register(
            lambda: print(
                f"(the runs' images are kept in {_KEEP}: deleting them slows file creation "
                "for minutes, so delete them when you are done measuring)",
                file=sys.stderr,
            )
        )
    return _KEEP


def compile_sources(src: Path) -> None:
    """Compile the checkout's modules to bytecode once, as ``pip install`` does: with
    ``PYTHONDONTWRITEBYTECODE`` set, every run would otherwise compile ~150 modules anew
    (~0.15 s of CPU), which is start-up a user's installed copy never pays."""
    import compileall

    for folder in _source_paths(src):
        compileall.compile_dir(folder, quiet=1)


def _source_paths(src: Path) -> list[Path]:
    return [src / "src", *(src / "plugins" / p / "src" for p in ("mock", "invokeai", "comfyui"))]


def _cpu_of(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """The user and the system CPU of ``command`` (seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


class Measured(NamedTuple):
    """One run: CPU per image (ms) and its system part, the dry run's CPU (s), the batch's
    wall time (s), the images made."""

    per_image: float
    dry: float
    wall: float
    made: int
    system_per_image: float


#: Client CPU per image before the async work (ms; 200 jobs, 1 server, 0.02 s an image),
#: and issue 11's figures when it was filed (1,000 jobs, 4 servers): "today's".
BASELINE = {"mock": 5.65, "comfyui": 13.19, "invokeai": 11.74}
ISSUE_11 = {"comfyui": 13.8, "invokeai": 8.5}
#: Issue 11's goals: client CPU per image (ms), and a dry run of 1,000 jobs (s of CPU).
GOAL_PER_IMAGE, GOAL_DRY_RUN = 4.0, 0.5

#: The async driver's client: the jobs file into a folder with run_batch_async.
ASYNC_CLIENT = """
import asyncio, sys
from degrees37_imagegen import GeneratorRegistry, load_jobs, run_batch_async
jobs_file, config, name, out, dry = sys.argv[1:6]
generator = GeneratorRegistry(config).get_generator(name)
jobs = load_jobs(jobs_file)
async def main():
    async with generator:
        done = 0
        async for result in run_batch_async(jobs, generator, out):
            done += result.status == "done"
    print(done)
if dry != "dry":
    asyncio.run(main())
"""


def measure(
    backend: str, jobs: int, servers: int, seconds: float, src: Path, driver: str = "threads"
) -> Measured:
    """One run (see :class:`Measured`)."""
    server = None
    urls: list[str] = []
    if backend != "mock":
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                backend,
                "--servers",
                str(servers),
                "--seconds",
                str(seconds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        urls = json.loads(server.stdout.readline())
    try:
        work = Path(tempfile.mkdtemp(dir=_kept()))  # kept: see _KEEP
        (work / "generators.yaml").write_text(_config(backend, urls, work), encoding="utf-8")
        lines = [
            json.dumps({"prompt": f"scene {i}", "width": 64, "height": 64, "seed": i})
            for i in range(jobs)
        ]
        (work / "jobs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths = _source_paths(src)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
        if driver == "api":
            base = [sys.executable, "-c", ASYNC_CLIENT, str(work / "jobs.jsonl")]
            base += [str(work / "generators.yaml"), "bench"]
            dry = _cpu_of([*base, str(work / "dry"), "dry"], env)
            started = time.perf_counter()
            full = _cpu_of([*base, str(work / "out"), "run"], env)
        else:  # the issue's measurement: imagegen batch, and the same with --dry-run
            base = [sys.executable, "-c", "from degrees37_imagegen.cli import main; main()"]
            base += ["batch", str(work / "jobs.jsonl"), "-c", str(work / "generators.yaml")]
            base += ["-g", "bench", "--json"]
            if driver != "default":
                base += ["--driver", driver]
            dry = _cpu_of([*base, "--dry-run", "-o", str(work / "dry")], env)
            started = time.perf_counter()
            full = _cpu_of([*base, "-o", str(work / "out")], env)
        wall = time.perf_counter() - started
        made = len(list((work / "out").glob("*.png")))
    finally:
        if server is not None:
            server.communicate("")
    per_image = (sum(full) - sum(dry)) / jobs * 1000
    return Measured(per_image, sum(dry), wall, made, (full[1] - dry[1]) / jobs * 1000)


def report(
    backend: str,
    jobs: int,
    servers: int,
    seconds: float,
    src: Path,
    driver: str = "threads",
    repeat: int = 1,
) -> str:
    """One backend's line: CPU per image and the dry run's CPU (least and median of
    ``repeat`` runs), next to issue 11's goal and the figures when it was filed."""
    runs = [measure(backend, jobs, servers, seconds, src, driver) for _ in range(repeat)]
    per_image = sorted(r.per_image for r in runs)
    dry = sorted(r.dry for r in runs)
    wall, made = runs[-1].wall, min(r.made for r in runs)
    system = min(runs, key=lambda r: r.per_image).system_per_image

    def figure(values: list[float], fmt: str) -> str:
        if len(values) == 1:
            return format(values[0], fmt)
        return f"{format(values[0], fmt)} (median {format(statistics.median(values), fmt)})"

    then = f"before the async work: {BASELINE[backend]:.2f} at 200/1"
    if backend in ISSUE_11:
        then = f"today (issue 11): {ISSUE_11[backend]:.1f} at 1000/4"
    goal = "met" if per_image[0] <= GOAL_PER_IMAGE else "NOT met"
    dry_goal = "met" if dry[0] < GOAL_DRY_RUN * jobs / 1000 else "NOT met"
    return (
        f"{backend:9} {driver:7} {figure(per_image, '.2f')} ms CPU/image "
        f"(system {system:.2f}) "
        f"[goal <= {GOAL_PER_IMAGE:g}: {goal}; {then}]  dry run {figure(dry, '.2f')} s CPU "
        f"[goal < {GOAL_DRY_RUN * jobs / 1000:g}: {dry_goal}]  ({jobs} jobs, {made} made, "
        f"{servers} server(s), {seconds} s an image, batch {wall:.1f} s wall)"
    )


#: The client of ``--gather``: N concurrent agenerate_image against one server.
GATHER_CLIENT = """
import asyncio, json, sys, threading, time
from degrees37_imagegen import GeneratorRegistry
config, count = sys.argv[1], int(sys.argv[2])
generator = GeneratorRegistry(config).get_generator("bench")
async def main():
    async with generator:
        await generator.agenerate_image("warm up", width=64, height=64, seed=0)
        before = peak = threading.active_count()
        async def one(i):
            nonlocal peak
            image_id = await generator.agenerate_image(f"p{i}", width=64, height=64, seed=i + 1)
            peak = max(peak, threading.active_count())
            return image_id
        started = time.perf_counter()
        ids = await asyncio.gather(*(one(i) for i in range(count)))
        print(json.dumps({"ids": ids, "before": before, "peak": peak,
                          "wall": time.perf_counter() - started}))
asyncio.run(main())
"""


def gather(backend: str, count: int, seconds: float, src: Path) -> str:
    """``count`` concurrent agenerate_image against one fake: busy fraction and threads."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", backend, "--servers", "1", "--seconds",
         str(seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    urls = json.loads(server.stdout.readline())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "generators.yaml").write_text(_config(backend, urls, work), encoding="utf-8")
            paths = [src / "src", *(src / "plugins" / p / "src" for p in ("invokeai", "comfyui"))]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
            done = subprocess.run(
                [sys.executable, "-c", GATHER_CLIENT, str(work / "generators.yaml"), str(count)],
                env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
    finally:
        out, _ = server.communicate("")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    times = json.loads(out.strip().splitlines()[-2])
    spans = sorted(tuple(times[i]) for i in map(str, report["ids"]) if str(i) in times)
    busy = sum(end - start for start, end in spans) / (spans[-1][1] - spans[0][0])
    return (
        f"{backend:9} gather {count}: server busy {busy:.1%} from its first image to its last "
        f"({len(spans)} images, {seconds} s each, {report['wall']:.2f} s wall); client "
        f"threads {report['before']} before, {report['peak']} at the peak"
    )


def main() -> None:
    """Parse the arguments; serve fakes or measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=0.02)
    parser.add_argument("--backends", default="mock,comfyui,invokeai")
    parser.add_argument("--src", type=Path, default=ROOT, help="checkout whose code to run")
    parser.add_argument(
        "--driver", choices=("threads", "async", "both", "default", "api"), default="both"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per line (least, median)")
    parser.add_argument("--gather", type=int, default=0, help="N concurrent agenerate_image")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.servers, args.seconds)
        return
    if args.gather:
        for backend in args.backends.split(","):
            if backend != "mock":
                print(gather(backend, args.gather, args.seconds, args.src.resolve()), flush=True)
        return
    compile_sources(args.src.resolve())
    print(f"client CPU per image, code from {args.src}")
    drivers = ("threads", "async") if args.driver == "both" else (args.driver,)
    for backend in args.backends.split(","):
        for driver in drivers:
            line = report(
                backend,
                args.jobs,
                args.servers,
                args.seconds,
                args.src.resolve(),
                driver,
                args.repeat,
            )
            print(line, flush=True)


if __name__ == "__main__":
    main()
