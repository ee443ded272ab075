"""Batch throughput against fake queue servers that make one image at a time, T s each.

For each backend, in one run:

- naive loop, one server, 40 jobs: submit, wait, download, next (``generate_to_file`` in
  a loop): the baseline;
- batch runner, one server, 40 jobs (``--concurrency 2``);
- batch runner, a pool of four servers (``--pool N``), 80 jobs (``--jobs4``).

Issue 11's pool targets: 4 servers at 0.2 s an image >= 3.9x one server's throughput, 16
at 0.4 s >= 15.5x, every image its own job's and none made twice (the fakes record the
seed each image was made with: each result's image must be its job's seed, and each seed
made once)::

    python benchmarks/batch_throughput.py --seconds 0.2 --pool 4 --driver async
    python benchmarks/batch_throughput.py --seconds 0.4 --pool 16 --jobs4 320 --no-naive

``--fakes-process`` runs the fake servers in a process of their own (``client_cpu.py
--serve``), so that they take neither the client's CPU nor its GIL.

Each run starts its clock after ``test_connection()``, which ``imagegen batch`` also calls
before its first job (it opens the HTTP clients: about 20 ms each with httpx). Figures:
wall time (to the last file in place), throughput, the servers' busy fraction (time spent
making images over the time from the first start to the last finish, per server; the
lowest is shown), the client's overhead per image (from the server finishing an image to
its file being in place: median and 90th percentile), the lead-in (clock start to the first
image starting) and tail (last image finished to the client done), images per server.

Backends: ``invokeai`` (the InvokeAI plugin against ``fakes/invokeai_server.py``, which
pushes socket.io events as the real server does; ``--invokeai-events off`` makes the plugin
poll instead), ``comfyui`` (the ComfyUI plugin against its tests' fake, timed by
``fakes/comfyui_server.py``), and ``simulated`` (an in-process generator holding a lock for
T s: no HTTP at all).

    python benchmarks/batch_throughput.py [--seconds 0.2] [--backends invokeai,comfyui]

Targets: one server busy >= 97% of the time; four servers >= 3.8x the throughput of one;
median client overhead <= 10 ms with one server (with four, eight client threads and four
fake servers share this one process and its CPUs, which inflates it). Exits 1 if a target
is missed, 2 if a backend cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent / "fakes"))

from degrees37_imagegen import (
    BaseImageGenerator,
    GeneratorRegistry,
    ImageInfo,
    generate_to_file,
    write_image_atomically,
)
from degrees37_imagegen.batch import (
    BatchEvent,
    BatchRunner,
    GeneratorPool,
    Job,
    parse_jobs,
)

BUSY_TARGET = 0.97
SPEEDUP_TARGET = 3.8
#: Issue 11's speedup targets by pool size (others: 97% of the pool's size).
POOL_TARGETS = {4: 3.9, 16: 15.5}
OVERHEAD_TARGET = 0.010

#: Server id of an image -> (started, finished), perf_counter seconds.
Times = dict[str, tuple[float, float]]


@dataclass
class Servers:
    """Running fake servers: their addresses and, once they ran, when each image ran."""

    urls: list[str]
    times: Callable[[], Times]
    #: Server id of an image -> the seed it was made with.
    seeds: Callable[[], dict[str, Any]] = dict


@dataclass
class Backend:
    """How to start ``n`` fake servers and make a generator for a list of them."""

    name: str
    start: Callable[[int, float], contextlib.AbstractContextManager[Servers]]
    generator: Callable[[list[str]], BaseImageGenerator]
    note: str = ""


@dataclass
class Run:
    """One measured run."""

    label: str
    jobs: int
    servers: int
    wall: float
    busy: list[float]
    overheads: list[float] = field(default_factory=list)
    failed: int = 0
    #: From the client's start to the first image starting on a server.
    lead_in: float = 0.0
    #: From the last image finishing on a server to the client being done.
    tail: float = 0.0
    #: Images per server.
    per_server: list[int] = field(default_factory=list)
    #: Results whose image is not their job's (by the seed the server made it with).
    not_own: int = 0
    #: Images made more than once (jobs made twice on the servers).
    twice: int = 0

    @property
    def throughput(self) -> float:
        """Images per second."""
        return self.jobs / self.wall

    def row(self) -> list[str]:
        """The figures as table cells."""
        over = sorted(self.overheads)
        median = statistics.median(over) * 1000 if over else float("nan")
        p90 = over[int(0.9 * (len(over) - 1))] * 1000 if over else float("nan")
        return [
            self.label,
            str(self.jobs),
            str(self.servers),
            f"{self.wall:.2f}",
            f"{self.throughput:.2f}",
            f"{min(self.busy):.1%}",
            f"{median:.1f}",
            f"{p90:.1f}",
            f"{self.lead_in * 1000:.0f}",
            f"{self.tail * 1000:.0f}",
            "/".join(str(n) for n in self.per_server),
            str(self.failed),
            str(self.not_own),
            str(self.twice),
        ]


# -- backends --------------------------------------------------------------------------------


def _registry() -> GeneratorRegistry:
    return GeneratorRegistry(config={})


def _pool_or_one(cls_name: str, key: str, settings: dict[str, Any]) -> Callable[..., Any]:
    def make(urls: list[str]) -> BaseImageGenerator:
        if len(urls) == 1:
            return _registry().get_generator(cls_name, {**settings, key: urls[0]})
        _, reg, _ = _registry().resolve(cls_name)
        return GeneratorPool.from_settings(
            reg.resolve(), {**settings, "servers": urls}, name=f"{cls_name}-pool"
        )

    return make


def invokeai_backend(poll_interval: float | None, events: bool = True) -> Backend:
    from invokeai_server import FakeInvokeAI

    @contextlib.contextmanager
    def start(n: int, seconds: float) -> Iterator[Servers]:
        with contextlib.ExitStack() as stack:
            fakes = [stack.enter_context(FakeInvokeAI(seconds)) for _ in range(n)]

            def times() -> Times:
                return {name: (t.started, t.finished) for f in fakes for name, t in f.times.items()}

            def seeds() -> dict[str, Any]:
                return {k: v for f in fakes for k, v in f.seeds.items()}

            yield Servers([f.url for f in fakes], times, seeds)

    settings: dict[str, Any] = {
        "default_model": "sdxl-base-1.0",
        "map_sdxl_resolution": False,
        "events": events,
    }
    if poll_interval is not None:
        settings["poll_interval"] = poll_interval
    interval = f"{poll_interval}s" if poll_interval is not None else "its default poll_interval"
    if events:
        note = f"InvokeAI plugin (socket.io events + GET of the item; polling <= {interval} "
        note += "only without the socket)"
    else:
        note = f"InvokeAI plugin, events off, polling every <= {interval}"
    return Backend("invokeai", start, _pool_or_one("invokeai", "base_url", settings), note)


def comfyui_backend(workdir: Path) -> Backend | None:
    from comfyui_server import WORKFLOW, timed_fake_class

    template = workdir / "comfyui_workflow.json"
    template.write_text(json.dumps(WORKFLOW), encoding="utf-8")

    @contextlib.contextmanager
    def start(n: int, seconds: float) -> Iterator[Servers]:
        cls = timed_fake_class(seconds)
        fakes = [cls().start() for _ in range(n)]
        try:

            def times() -> Times:
                return {pid: t for f in fakes for pid, t in f.times.items()}

            def seeds() -> dict[str, Any]:
                return {pid: v for f in fakes for pid, v in f.seeds.items()}

            yield Servers([f.url for f in fakes], times, seeds)
        finally:
            for fake in fakes:
                fake.stop()

    if timed_fake_class(0.0) is None:
        return None
    settings = {"workflow_template": str(template)}
    make = _pool_or_one("comfyui", "server_address", settings)
    return Backend("comfyui", start, make, "ComfyUI plugin (WebSocket + /history)")


class _SimServer:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.times: Times = {}
        self.seeds: dict[str, Any] = {}


_SIM: dict[str, _SimServer] = {}


class SimulatedGenerator(BaseImageGenerator):
    """A server in-process: one image at a time (a lock), ``seconds`` each, no HTTP."""

    default_settings: ClassVar[dict[str, Any]] = {"url": "sim://0"}
    server_setting: ClassVar[str] = "url"

    def test_connection(self) -> bool:
        return True

    def generate_image(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 1080,
        height: int = 1920,
        seed: int = -1,
        **kwargs: Any,
    ) -> str | None:
        server = _SIM[self.config["url"]]
        with server.lock:
            started = time.perf_counter()
            time.sleep(server.seconds)
            image_id = uuid.uuid4().hex
            server.times[image_id] = (started, time.perf_counter())
            server.seeds[image_id] = seed
        info = ImageInfo(image_id, self.name, prompt, negative_prompt, width, height, seed)
        self.record_image(info)
        return image_id

    def download_image(self, image_id: str, output_path: str | Path) -> bool:
        info = self.image_info(image_id)
        assert info is not None
        write_image_atomically(output_path, _png(info.width, info.height))
        return True


_PNGS: dict[tuple[int, int], bytes] = {}


def _png(width: int, height: int) -> bytes:
    if (width, height) not in _PNGS:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (30, 144, 255)).save(buffer, "PNG")
        _PNGS[(width, height)] = buffer.getvalue()
    return _PNGS[(width, height)]


def simulated_backend() -> Backend:
    @contextlib.contextmanager
    def start(n: int, seconds: float) -> Iterator[Servers]:
        urls = [f"sim://{uuid.uuid4().hex[:8]}" for _ in range(n)]
        for url in urls:
            _SIM[url] = _SimServer(seconds)

        def times() -> Times:
            return {k: v for url in urls for k, v in _SIM[url].times.items()}

        def seeds() -> dict[str, Any]:
            return {k: v for url in urls for k, v in _SIM[url].seeds.items()}

        yield Servers(urls, times, seeds)

    def make(urls: list[str]) -> BaseImageGenerator:
        if len(urls) == 1:
            return SimulatedGenerator({"url": urls[0]}, name="simulated")
        return GeneratorPool.from_settings(SimulatedGenerator, {"servers": urls}, name="sim")

    return Backend("simulated", start, make, "in-process generator, no HTTP")


def in_a_process(backend: Backend) -> Backend:
    """``backend`` with its fake servers in a process of their own (``client_cpu.py
    --serve``): their threads then take neither the client's GIL nor its CPU."""

    @contextlib.contextmanager
    def start(n: int, seconds: float) -> Iterator[Servers]:
        command = [sys.executable, str(Path(__file__).resolve().parent / "client_cpu.py")]
        command += ["--serve", backend.name, "--servers", str(n), "--seconds", str(seconds)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        ran: dict[str, Any] = {}

        def finish() -> dict[str, Any]:
            if not ran:
                out, _ = proc.communicate("", timeout=60)
                times, seeds = out.strip().splitlines()[-2:]
                ran["times"] = {k: (v[0], v[1]) for k, v in json.loads(times).items()}
                ran["seeds"] = json.loads(seeds)
            return ran

        try:
            yield Servers(urls, lambda: finish()["times"], lambda: finish()["seeds"])
        finally:
            if proc.poll() is None:
                finish()

    return Backend(backend.name, start, backend.generator, backend.note + ", fakes in a process")


# -- measuring -------------------------------------------------------------------------------


def make_jobs(n: int) -> list[Job]:
    return parse_jobs(
        [{"prompt": f"scene {i}: the keeper climbs", "seed": i} for i in range(1, n + 1)],
        defaults={"width": 1080, "height": 1920},
    )


def busy_fractions(times: Times, by_server: Sequence[set[str]]) -> list[float]:
    fractions = []
    for ids in by_server:
        spans = [times[i] for i in ids if i in times]
        if not spans:
            continue
        window = max(f for _, f in spans) - min(s for s, _ in spans)
        fractions.append(sum(f - s for s, f in spans) / window)
    return fractions


def run_naive(backend: Backend, seconds: float, n: int, out: Path) -> Run:
    with backend.start(1, seconds) as servers:
        generator = backend.generator(servers.urls)
        done: dict[str, float] = {}
        failed = 0
        with generator:
            generator.test_connection()  # as imagegen batch does before it starts
            started = time.perf_counter()
            for job in make_jobs(n):
                try:
                    result = generate_to_file(
                        generator,
                        out / job.filename,
                        job.prompt,
                        width=job.width,
                        height=job.height,
                        seed=job.seed,
                    )
                except Exception as exc:
                    failed += 1
                    print(f"  naive: job {job.index} failed: {exc}", file=sys.stderr)
                    continue
                done[result.image_id] = time.perf_counter()
            ended = time.perf_counter()
        times = servers.times()
    overheads = [done[i] - times[i][1] for i in done if i in times]
    busy = busy_fractions(times, [set(times)])
    lead_in, tail = _edges(times, started, ended)
    return Run("naive loop", n, 1, ended - started, busy, overheads, failed, lead_in, tail, [n])


def _edges(times: Times, started: float, ended: float) -> tuple[float, float]:
    first = min(s for s, _ in times.values())
    last = max(f for _, f in times.values())
    return first - started, ended - last


def run_batch(
    backend: Backend,
    seconds: float,
    n: int,
    n_servers: int,
    out: Path,
    concurrency: int,
    driver: str = "auto",
) -> Run:
    with backend.start(n_servers, seconds) as servers:
        generator = backend.generator(servers.urls)
        done: dict[str, float] = {}
        where: dict[str, str] = {}

        def on_progress(event: BatchEvent) -> None:
            if event.kind == "finished" and event.result and event.result.image_id:
                done[event.result.image_id] = time.perf_counter()
                where[event.result.image_id] = event.result.server or servers.urls[0]

        with generator:
            runner = BatchRunner(
                generator,
                out,
                concurrency=concurrency,
                on_progress=on_progress,
                driver=driver,  # type: ignore[arg-type]
            )
            generator.test_connection()  # as imagegen batch does before it starts
            started = time.perf_counter()
            results = list(runner.run(make_jobs(n)))
            ended = time.perf_counter()
        times = servers.times()
        seeds = servers.seeds()
    failed = [r for r in results if r.status == "failed"]
    made = [r for r in results if r.status == "done"]
    not_own = sum(seeds.get(str(r.image_id)) != r.job.seed for r in made)
    twice = len(seeds) - len(set(seeds.values()))
    for r in failed[:3]:
        print(f"  batch: job {r.job.index} failed: {r.error}", file=sys.stderr)
    overheads = [done[i] - times[i][1] for i in done if i in times]
    groups: dict[str, set[str]] = {}
    for image_id, server in where.items():
        groups.setdefault(server, set()).add(image_id)
    busy = busy_fractions(times, list(groups.values()))
    label = "batch runner" + (f" (pool of {n_servers})" if n_servers > 1 else "")
    lead_in, tail = _edges(times, started, ended)
    per_server = [len(groups.get(url, ())) for url in servers.urls]
    return Run(
        label,
        n,
        n_servers,
        ended - started,
        busy,
        overheads,
        len(failed),
        lead_in,
        tail,
        per_server,
        not_own,
        twice,
    )


def table(rows: list[list[str]]) -> str:
    headers = [
        "run",
        "jobs",
        "servers",
        "wall s",
        "img/s",
        "busy",
        "ovh med ms",
        "ovh p90 ms",
        "lead-in ms",
        "tail ms",
        "per server",
        "failed",
        "not own",
        "twice",
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def bench(
    backend: Backend,
    seconds: float,
    jobs1: int,
    jobs4: int,
    concurrency: int,
    pool: int = 4,
    driver: str = "auto",
    naive_loop: bool = True,
) -> list[str]:
    """Run the measurements for ``backend``; print them; return the missed targets."""
    print(
        f"\n== {backend.name}: {backend.note}; T = {seconds}s per image, 1080x1920, "
        f"concurrency {concurrency}, driver {driver}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        naive = run_naive(backend, seconds, jobs1, base / "naive") if naive_loop else None
        one = run_batch(backend, seconds, jobs1, 1, base / "one", concurrency, driver)
        four = run_batch(backend, seconds, jobs4, pool, base / "four", concurrency, driver)
    runs = [r for r in (naive, one, four) if r is not None]
    print(table([r.row() for r in runs]))
    speedup = four.throughput / one.throughput
    target = POOL_TARGETS.get(pool, SPEEDUP_TARGET if pool == 4 else 0.97 * pool)
    median = statistics.median(one.overheads)
    median4 = statistics.median(four.overheads)
    versus = ""
    if naive is not None:
        versus = (
            f" (naive loop {min(naive.busy):.1%}); {one.throughput / naive.throughput:.2f}x "
            "the naive loop on one server"
        )
    print(
        f"one server busy {min(one.busy):.1%} (target >= {BUSY_TARGET:.0%}){versus}; "
        f"{pool} servers {speedup:.2f}x one server's throughput (target >= {target}); "
        f"median client overhead {median * 1000:.1f} ms with one server "
        f"(target <= {OVERHEAD_TARGET * 1000:.0f} ms; {median4 * 1000:.1f} ms with {pool}); "
        f"images not their job's: {one.not_own + four.not_own}, made twice: "
        f"{one.twice + four.twice}"
    )
    missed = []
    if min(one.busy) < BUSY_TARGET:
        missed.append(f"{backend.name}: one server busy {min(one.busy):.1%} < {BUSY_TARGET:.0%}")
    if speedup < target:
        missed.append(f"{backend.name}: {pool} servers {speedup:.2f}x < {target}x")
    if median > OVERHEAD_TARGET:
        missed.append(f"{backend.name}: median overhead {median * 1000:.1f} ms > 10 ms")
    if any(r.failed for r in runs):
        missed.append(f"{backend.name}: some jobs failed")
    if any(r.not_own or r.twice for r in runs):
        missed.append(f"{backend.name}: an image not its job's, or one made twice")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="time per image (T)")
    parser.add_argument("--backends", default="invokeai,comfyui")
    parser.add_argument("--jobs1", type=int, default=40)
    parser.add_argument("--jobs4", type=int, default=80)
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight per server")
    parser.add_argument("--pool", type=int, default=4, help="servers in the pool run")
    parser.add_argument("--driver", choices=("auto", "threads", "async"), default="auto")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument(
        "--fakes-process", action="store_true", help="fake servers in a process of their own"
    )
    parser.add_argument(
        "--invokeai-poll-interval",
        type=float,
        default=None,
        help="the InvokeAI plugin's poll_interval setting [default: the plugin's]",
    )
    parser.add_argument(
        "--invokeai-events",
        choices=("on", "off"),
        default="on",
        help="the InvokeAI plugin's events setting (off: follow items by polling only)",
    )
    args = parser.parse_args()
    missed: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
            try:
                if name == "invokeai":
                    backend: Backend | None = invokeai_backend(
                        args.invokeai_poll_interval, args.invokeai_events == "on"
                    )
                elif name == "comfyui":
                    backend = comfyui_backend(Path(workdir))
                elif name == "simulated":
                    backend = simulated_backend()
                else:
                    parser.error(f"unknown backend {name!r}")
                if backend is None:
                    raise RuntimeError("its fake server is not in this checkout")
                if args.fakes_process and name != "simulated":
                    backend = in_a_process(backend)
                missed += bench(
                    backend,
                    args.seconds,
                    args.jobs1,
                    args.jobs4,
                    args.concurrency,
                    args.pool,
                    args.driver,
                    not args.no_naive,
                )
            except Exception as exc:
                print(f"\n== {name}: cannot run: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 2
    if missed:
        print("\nMISSED: " + "; ".join(missed))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
